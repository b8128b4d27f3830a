"""Experiment tracking: writers fed from the same per-chunk records as ``metrics.jsonl``.

``run.loggers`` names them (default ``[tensorboard]``; ``mlflow`` and ``wandb`` on request). The host loop
only hands each record over: every logger kind works on its own background thread (:class:`Worker`), so a
slow store, server or start-up delays the logger, never the next chunk. A writer that raises prints one
warning line on stderr and is switched off for the rest of the run; one that has not caught up
``FLUSH_TIMEOUT_S`` after training is left behind with one warning line: tracking never fails or stalls
training. Secrets (``MLFLOW_TRACKING_PASSWORD``, ``WANDB_API_KEY``...) are read by the libraries from the
environment only; nothing here writes them anywhere.
"""

from __future__ import annotations

import copy
import importlib
import json
import queue
import sys
import threading
import time
from pathlib import Path
from typing import Any, Protocol

from tradelab_jax import io as tl_io
from tradelab_jax.errors import UserError

NAMES = ("tensorboard", "mlflow", "wandb")
DEFAULT = ["tensorboard"]
# Where each logger lives (module, class); a module may define ``prepare(config=..., outputs=...)``: the
# slow part of its start-up that creates no run (imports, a local store's schema), done while the run
# builds its env and compiles.
LOGGERS = {"tensorboard": ("tradelab_jax.tracking.tensorboard", "TensorBoardLogger"),
           "mlflow": ("tradelab_jax.tracking.mlflow", "MLflowLogger"),
           "wandb": ("tradelab_jax.tracking.wandb", "WandbLogger")}
TB_DIR = "tb"  # TensorBoard event files inside each run directory
TRACKING_FILE = "tracking.json"  # the MLflow run id / W&B id, so a resume continues the same run
# metrics.jsonl fields that are no curves (the step itself, the clock time, the point count).
SKIP_FIELDS = ("env_steps", "time", "points")
# After training, the host waits at most this long for the loggers to write what they still hold (a hung
# server must not keep a finished run's process alive); a logger still busy then is left behind.
FLUSH_TIMEOUT_S = 60.0
_TRACKING_LOCK = threading.Lock()  # tracking.json is read, merged and rewritten by several logger threads


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
    with _TRACKING_LOCK:
        data = {**read_tracking(run_dir), **entries}
        tl_io.atomic_write_text(Path(run_dir) / TRACKING_FILE, json.dumps(data, indent=2) + "\n")


def _warn(name: str, why: str, stream=None) -> None:
    print(f"warning: {name} logger disabled for this run: {why}", file=stream or sys.stderr)


def _describe(err: BaseException) -> str:
    return " ".join(f"{type(err).__name__}: {err}".split())[:300]


class Worker:
    """One background thread running one logger kind's calls for every point of a run, in the order they
    were handed over (so one sqlite store or service process sees one caller, and a point's records stay
    in step order)."""

    def __init__(self, name: str):
        self.name = name
        self.timed_out = False
        self._queue: queue.SimpleQueue = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._loop, name=f"tradelab-{name}-logger", daemon=True)
        self._thread.start()

    def submit(self, fn) -> threading.Event:
        """Queue ``fn``; the event is set once it (and everything queued before it) has run."""
        done = threading.Event()
        self._queue.put((fn, done))
        return done

    def stop(self) -> None:
        """End the thread after what is queued (a thread left behind by a timeout ends when it gets here)."""
        self._queue.put(None)

    def _loop(self) -> None:
        while (item := self._queue.get()) is not None:
            fn, done = item
            try:
                fn()
            except BaseException:  # calls are guarded already; nothing may end the thread early
                pass
            finally:
                done.set()


class Guarded:
    """Wraps a logger: its calls run on a :class:`Worker`, its first exception becomes one warning line and
    switches it off.

    The logger is made on its first record, not when the run starts: a run refused before it trains (a
    resume whose checkpoint is unreadable, a compile error) leaves no event file or remote run behind.
    ``waited_s`` is what the host loop paid (handing records over, and the flush at close); ``busy_s`` what
    the logger itself took on its thread, overlapping training, and ``cpu_s`` the CPU time of that (what it
    can take from training on a machine with few cores; a library's own helper process, e.g. W&B's service,
    is not in it).
    """

    def __init__(self, name: str, make, stream=None, worker: Worker | None = None):
        self.name, self.stream = name, stream
        self.inner, self._make = None, make
        self._own = worker is None  # a worker of its own ends when this logger closes
        self.worker = Worker(name) if worker is None else worker
        self.waited_s = 0.0
        self.busy_s = self.cpu_s = 0.0
        self.started = False  # a record was handed over: the logger is (being) made
        self._last: threading.Event | None = None  # set when everything handed over so far has run

    def _submit(self, fn, *, start: bool = True) -> None:
        t0 = time.perf_counter()
        if self.name is not None and (start or self.started):
            self.started = True
            self._last = self.worker.submit(lambda: self._run(fn))
        self.waited_s += time.perf_counter() - t0

    def _run(self, fn) -> None:  # on the worker's thread
        if self.name is None:
            return
        t0, c0 = time.perf_counter(), time.thread_time()
        try:
            if self.inner is None:
                self.inner = self._make()
            fn()
        except Exception as err:  # a tracking failure must never end training
            name, self.name, self.inner = self.name, None, None
            if name is not None:  # None: already given up on at close, and said so
                _warn(name, _describe(err), self.stream)
        finally:
            self.busy_s += time.perf_counter() - t0
            self.cpu_s += time.thread_time() - c0

    def prepare(self, fn) -> None:
        """Run ``fn`` (start-up work that creates no run) on the worker now; its errors are left to the
        logger's own start-up, which does the same work again and reports them."""
        def run():
            t0, c0 = time.perf_counter(), time.thread_time()
            try:
                fn()
            except Exception:  # reported by the logger's own start-up, if it fails too
                pass
            finally:
                self.busy_s += time.perf_counter() - t0
                self.cpu_s += time.thread_time() - c0

        self._last = self.worker.submit(run)

    def log_chunk(self, rec):
        rec = dict(rec)  # written later, on the worker's thread
        self._submit(lambda: self.inner.log_chunk(rec))

    def log_final(self, summary, hparams, run_dir):
        summary, hparams = copy.deepcopy(summary), dict(hparams)
        self._submit(lambda: self.inner.log_final(summary, hparams, run_dir))

    def close(self, timeout: float = FLUSH_TIMEOUT_S):
        """Close and wait for everything handed over, at most ``timeout`` seconds."""
        self._submit(lambda: self.inner.close(), start=False)
        self.flush(time.monotonic() + timeout, timeout)
        if self._own:
            self.worker.stop()

    def flush(self, deadline: float, timeout: float) -> bool:
        """Wait (the host loop) until what was handed over has run, or ``deadline`` (``time.monotonic``)
        passes: then the logger is left behind, with one warning line per worker. False if it ran out."""
        if self._last is None:
            return True
        t0 = time.perf_counter()
        ok = self._last.wait(max(0.0, deadline - time.monotonic()))
        self.waited_s += time.perf_counter() - t0
        if not ok:
            name, self.name = self.name, None
            if name is not None and self.started and not self.worker.timed_out:
                self.worker.timed_out = True
                _warn(name, f"it had not finished {timeout:g} s after training (tracking.FLUSH_TIMEOUT_S); "
                      "its last records may be missing", self.stream)
        return ok

    @property
    def active(self) -> bool:
        return self.name is not None


def _logger_class(name: str):
    module, attr = LOGGERS[name]
    return getattr(importlib.import_module(module), attr)


def make_loggers(config: dict[str, Any], run_dir: Path, *, values: dict[str, Any] | None = None,
                 sweep_dir: Path | None = None, resume: bool = False, outputs: Path | None = None,
                 stream=None, workers: dict[str, Worker] | None = None) -> list[Guarded]:
    """The loggers of one point (``values``: its sweep-axis values; ``sweep_dir``: a packed sweep's
    directory, which groups the points; ``workers``: the threads shared with the other points, by logger
    name; without them each logger gets a thread of its own)."""
    run = config.get("run", {})
    names = check_names(run.get("loggers", DEFAULT))
    ctx = {"config": config, "run_dir": Path(run_dir), "values": values or {}, "sweep_dir": sweep_dir,
           "resume": resume, "outputs": outputs}
    return [Guarded(name, lambda name=name: _logger_class(name)(**ctx), stream=stream,
                    worker=(workers or {}).get(name)) for name in names]


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


def open_sweep(plan: Any, stream=None) -> str | None:
    """The sweep-level records, created now and synchronously: with ``mlflow`` among the loggers and a
    sweep directory, the parent run, its id written to the sweep directory's ``tracking.json`` (a resume
    marks it running again). Idempotent; the points' loggers take the same path (they find the id). Process
    0 of a multi-process run calls it before the other processes start their loggers. Returns the parent
    run id, or None (no sweep, no mlflow, or a failure: one warning line, the points' loggers try again)."""
    if plan.root is None or "mlflow" not in check_names(plan.base["run"].get("loggers", DEFAULT)):
        return None
    from tradelab_jax.tracking import mlflow as tl_mlflow

    try:
        return tl_mlflow.open_parent(plan.base, Path(plan.root), resume=plan.resume)[0]
    except Exception as err:  # a tracking failure must never end training
        _warn("mlflow", f"the sweep's parent run was not created: {_describe(err)}", stream)
        return None


def for_plan(plan: Any) -> list[list[Guarded]]:
    """One list of loggers per point of a run plan, one worker thread per logger name, each starting its
    ``prepare`` at once (overlapping the env build and the compile)."""
    names = check_names(plan.base["run"].get("loggers", DEFAULT))
    workers = {name: Worker(name) for name in names}
    loggers = [make_loggers(p.config, p.dir, values=p.values, sweep_dir=plan.root, resume=plan.resume,
                            workers=workers) for p in plan.points]
    if loggers:
        for name, lg in zip(names, loggers[0], strict=True):
            lg.prepare(lambda name=name: _prepare(name, plan.base))
    return loggers


def _prepare(name: str, config: dict[str, Any]) -> None:
    prepare = getattr(importlib.import_module(LOGGERS[name][0]), "prepare", None)
    if prepare is not None:
        prepare(config=config, outputs=None)


def start(loggers: list[list[Guarded]]) -> None:
    """Make every logger now (on its thread) instead of at its first record: for a caller that knows the
    run trains (its compile is done), so the start-up also overlaps the first chunk."""
    for point in loggers:
        for lg in point:
            lg._submit(lambda: None)


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


def close_all(loggers: list[list[Guarded]], timeout: float = FLUSH_TIMEOUT_S) -> None:
    """Close every logger and wait for them all, ``timeout`` seconds at most together; then end their
    threads (one still busy ends when it gets to the end of its queue)."""
    lgs = [lg for point in loggers for lg in point]
    for lg in lgs:
        lg._submit(lambda lg=lg: lg.inner.close(), start=False)
    deadline = time.monotonic() + timeout
    for lg in lgs:
        lg.flush(deadline, timeout)
    for worker in {id(lg.worker): lg.worker for lg in lgs}.values():
        worker.stop()


def record_cost(plan: Any, loggers: list[list[Guarded]]) -> None:
    """Each point's tracking cost in its ``tracking.json`` (``tradelab bench tracking``): ``logging_s``, the
    seconds the host loop waited on its loggers (handing records over, the flush after training: what the
    run paid); ``logger_busy_s``, the seconds its loggers worked on their threads (start-up, every record,
    closing; the first point's also the shared ``prepare``), mostly overlapping training; ``logger_cpu_s``,
    the CPU time of that work."""
    for point, lgs in zip(plan.points, loggers, strict=True):
        if lgs:
            write_tracking(point.dir, logging_s=round(sum(lg.waited_s for lg in lgs), 4),
                           logger_busy_s=round(sum(lg.busy_s for lg in lgs), 4),
                           logger_cpu_s=round(sum(lg.cpu_s for lg in lgs), 4),
                           loggers=[lg.name or "disabled" for lg in lgs])
