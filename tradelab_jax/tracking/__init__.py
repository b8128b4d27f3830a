"""Experiment tracking: host-loop writers fed from the same per-chunk records as ``metrics.jsonl``.

``run.loggers`` names them (default ``[tensorboard]``; ``mlflow`` and ``wandb`` on request). A writer that
raises prints one warning line on stderr and is switched off for the rest of the run: tracking never fails
or stalls training. Secrets (``MLFLOW_TRACKING_PASSWORD``, ``WANDB_API_KEY``...) are read by the libraries
from the environment only; nothing here writes them anywhere.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any, Protocol

from tradelab_jax import io as tl_io
from tradelab_jax.errors import UserError

NAMES = ("tensorboard", "mlflow", "wandb")
DEFAULT = ["tensorboard"]
TB_DIR = "tb"  # TensorBoard event files inside each run directory
TRACKING_FILE = "tracking.json"  # the MLflow run id / W&B id, so a resume continues the same run
# metrics.jsonl fields that are no curves (the step itself, the clock time, the point count).
SKIP_FIELDS = ("env_steps", "time", "points")


class Logger(Protocol):
    def log_chunk(self, rec: dict[str, Any]) -> None: ...
    def log_final(self, summary: dict[str, Any], hparams: dict[str, Any], run_dir: Path) -> None: ...
    def close(self) -> None: ...


def check_names(names: Any) -> list[str]:
    """``run.loggers`` as a list of known names, or one sentence naming the bad entry."""
    names = [] if names is None else list(names)
    for n in names:
        if n not in NAMES:
            raise UserError(f"run.loggers: {n!r} is not a logger; valid: {', '.join(NAMES)} (a list, e.g. "
                            "run.loggers=[tensorboard,mlflow])")
    return names


def check_uri(uri: Any) -> None:
    """``run.mlflow_uri`` must not carry a password: it is saved in ``config.yaml`` (credentials come from
    ``MLFLOW_TRACKING_USERNAME`` / ``MLFLOW_TRACKING_PASSWORD`` or ``MLFLOW_TRACKING_TOKEN``)."""
    if uri is None:
        return
    from urllib.parse import urlsplit

    parts = urlsplit(str(uri))
    if parts.password:
        raise UserError("run.mlflow_uri holds a password, and config.yaml would keep it; give the URI "
                        "without user:password@ and set MLFLOW_TRACKING_USERNAME / "
                        "MLFLOW_TRACKING_PASSWORD (or MLFLOW_TRACKING_TOKEN) in the environment")


def scalars(rec: dict[str, Any]) -> dict[str, float]:
    """The numeric fields of a metrics record, each a scalar curve at ``env_steps``."""
    return {k: float(v) for k, v in rec.items()
            if k not in SKIP_FIELDS and isinstance(v, (int, float)) and not isinstance(v, bool)}


def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """A nested dict flattened to ``a.b.c`` keys (hparams, params, eval metrics)."""
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(flat(v, key + "."))
        else:
            out[key] = v
    return out


def eval_scalars(summary: dict[str, Any]) -> dict[str, float]:
    """Final evaluation metrics: every numeric entry of ``eval_summary.json`` under ``eval/`` (splits,
    gymnax returns), plus the run's throughput."""
    body = {k: v for k, v in summary.items() if k not in ("run", "policies")}
    out = {f"eval/{k}": float(v) for k, v in flat(body).items()
           if isinstance(v, (int, float)) and not isinstance(v, bool)}
    return {k.replace(".", "/"): v for k, v in out.items()}


def read_tracking(run_dir: Path) -> dict[str, Any]:
    try:
        return json.loads((Path(run_dir) / TRACKING_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def write_tracking(run_dir: Path, **entries: Any) -> None:
    data = {**read_tracking(run_dir), **entries}
    tl_io.atomic_write_text(Path(run_dir) / TRACKING_FILE, json.dumps(data, indent=2) + "\n")


class Guarded:
    """Wraps a logger: its first exception becomes one warning line and switches it off.

    The logger is made on its first record, not when the run starts: a run refused before it trains (a
    resume whose checkpoint is unreadable, a compile error) leaves no event file or remote run behind.
    """

    def __init__(self, name: str, make, stream=None):
        self.name, self.stream = name, stream
        self.inner, self._make = None, make
        self.seconds = 0.0  # wall time spent in this logger (the host loop waits for it between chunks)

    def _call(self, fn, *, start: bool = True) -> None:
        if self.name is None or (self.inner is None and not start):
            return
        t0 = time.perf_counter()
        try:
            if self.inner is None:
                self.inner = self._make()
            fn()
        except Exception as err:  # a tracking failure must never end training
            msg = " ".join(f"{type(err).__name__}: {err}".split())[:300]
            print(f"warning: {self.name} logger disabled for this run: {msg}",
                  file=self.stream or sys.stderr)
            self.name, self.inner = None, None
        finally:
            self.seconds += time.perf_counter() - t0

    def log_chunk(self, rec):
        self._call(lambda: self.inner.log_chunk(rec))

    def log_final(self, summary, hparams, run_dir):
        self._call(lambda: self.inner.log_final(summary, hparams, run_dir))

    def close(self):
        self._call(lambda: self.inner.close(), start=False)

    @property
    def active(self) -> bool:
        return self.name is not None


def make_loggers(config: dict[str, Any], run_dir: Path, *, values: dict[str, Any] | None = None,
                 sweep_dir: Path | None = None, resume: bool = False, outputs: Path | None = None,
                 stream=None) -> list[Guarded]:
    """The loggers of one point (``values``: its sweep-axis values; ``sweep_dir``: a packed sweep's
    directory, which groups the points)."""
    run = config.get("run", {})
    names = check_names(run.get("loggers", DEFAULT))
    ctx = {"config": config, "run_dir": Path(run_dir), "values": values or {}, "sweep_dir": sweep_dir,
           "resume": resume, "outputs": outputs}
    out = []
    for name in names:
        if name == "tensorboard":
            from tradelab_jax.tracking.tensorboard import TensorBoardLogger as cls
        elif name == "mlflow":
            from tradelab_jax.tracking.mlflow import MLflowLogger as cls
        else:
            from tradelab_jax.tracking.wandb import WandbLogger as cls
        out.append(Guarded(name, lambda cls=cls: cls(**ctx), stream=stream))
    return out


def links(run_dir: Path, outputs: Path | None = None) -> list[str]:
    """Markdown lines for the UI: the TensorBoard command and the run's MLflow / W&B run when recorded."""
    run_dir = Path(run_dir)
    lines = [f"TensorBoard: `tensorboard --logdir {outputs or run_dir}`"] if (run_dir / TB_DIR).exists() \
        or outputs else []
    t = read_tracking(run_dir)
    if t.get("mlflow_run_id"):
        uri = str(t.get("mlflow_tracking_uri") or "")
        base = uri.rstrip("/") if uri.startswith("http") else None
        ref = f"#/experiments/{t.get('mlflow_experiment_id')}/runs/{t['mlflow_run_id']}"
        lines.append(f"MLflow run: [{t['mlflow_run_id']}]({base}/{ref})" if base
                     else f"MLflow run: `{t['mlflow_run_id']}` (`mlflow ui --backend-store-uri {uri}`)")
    if t.get("wandb_id"):
        lines.append(f"W&B run: `{t['wandb_id']}`" + (f" ({t['wandb_url']})" if t.get("wandb_url") else ""))
    return lines


def for_plan(plan: Any) -> list[list[Guarded]]:
    """One list of loggers per point of a run plan."""
    return [make_loggers(p.config, p.dir, values=p.values, sweep_dir=plan.root, resume=plan.resume)
            for p in plan.points]


def log_chunks(loggers: list[list[Guarded]], records: list[dict[str, Any]]) -> None:
    for point, rec in zip(loggers, records, strict=True):
        for lg in point:
            lg.log_chunk(rec)


def log_finals(plan: Any, loggers: list[list[Guarded]], summaries: list[dict[str, Any]]) -> None:
    for point, lgs, summary in zip(plan.points, loggers, summaries, strict=True):
        hp = {k: v for k, v in flat(point.config).items() if isinstance(v, (int, float, str, bool))}
        hp.update({f"sweep.{k}": v for k, v in point.values.items()})
        for lg in lgs:
            lg.log_final(summary, hp, point.dir)


def close_all(loggers: list[list[Guarded]]) -> None:
    for point in loggers:
        for lg in point:
            lg.close()


def record_cost(plan: Any, loggers: list[list[Guarded]]) -> None:
    """Each point's seconds spent in its loggers (creation, every chunk, the final metrics, closing), as
    ``logging_s`` in its ``tracking.json``: what tracking cost the run (``tradelab bench tracking``)."""
    for point, lgs in zip(plan.points, loggers, strict=True):
        if lgs:
            write_tracking(point.dir, logging_s=round(sum(lg.seconds for lg in lgs), 4),
                           loggers=[lg.name or "disabled" for lg in lgs])
