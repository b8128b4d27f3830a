"""MLflow runs through ``MlflowClient`` (no fluent active-run state, so the points of a packed sweep in one
process each keep their own run). One run per point; a packed sweep's points are nested under one parent
run (tag ``mlflow.parentRunId``), created once (:func:`open_parent`: by ``tracking.open_sweep`` or the
first point) and recorded in the sweep directory's ``tracking.json``. The tracking URI:
``run.mlflow_uri``, else ``$MLFLOW_TRACKING_URI``, else a sqlite store
``<outputs>/mlruns/mlflow.db`` with artifacts in ``<outputs>/mlruns/artifacts`` (MLflow 3 refuses the plain
file store). Credentials (``MLFLOW_TRACKING_USERNAME``/``PASSWORD``/``TOKEN``) are read by MLflow from the
environment; the URI recorded in ``tracking.json`` has any ``user:password@`` part removed."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tradelab_jax import tracking

EXPERIMENT = "tradelab"
MAX_PARAM = 6000  # MLflow's limit on a param value's length
BATCH = 100  # MLflow's limit on params per log_batch call
_PARENT_LOCK = threading.Lock()  # one parent run per sweep directory, whichever thread asks first


def tracking_uri(config: dict[str, Any], outputs: Path | None = None) -> str:
    """``run.mlflow_uri``, ``$MLFLOW_TRACKING_URI``, or the local sqlite store under the outputs root."""
    run = config.get("run", {})
    uri = run.get("mlflow_uri") or os.environ.get("MLFLOW_TRACKING_URI")
    if uri:
        return str(uri)
    if outputs is None:
        from tradelab_jax import paths

        outputs = (Path(run["outputs"]).expanduser().resolve() if run.get("outputs")
                   else paths.default_outputs())
    store = Path(outputs) / "mlruns"
    store.mkdir(parents=True, exist_ok=True)
    return f"sqlite:///{store / 'mlflow.db'}"


def public_uri(uri: str) -> str:
    """The URI without a ``user:password@`` part (what may be written to disk or shown)."""
    parts = urlsplit(uri)
    if parts.username is None and parts.password is None:
        return uri
    host = parts.hostname or ""
    netloc = host + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def _experiment_id(client, uri: str) -> str:
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is not None:
        return exp.experiment_id
    kw = {}
    if uri.startswith("sqlite:///"):  # else MLflow puts artifacts in ./mlruns of the current directory
        kw["artifact_location"] = (Path(uri[len("sqlite:///"):]).parent / "artifacts").resolve().as_uri()
    try:
        return client.create_experiment(EXPERIMENT, **kw)
    except Exception:  # another process created it in between
        exp = client.get_experiment_by_name(EXPERIMENT)
        if exp is None:
            raise
        return exp.experiment_id


def _params(flat: dict[str, Any]):
    from mlflow.entities import Param

    return [Param(k, str(v)[:MAX_PARAM]) for k, v in sorted(flat.items())]


def prepare(*, config: dict[str, Any], outputs: Path | None = None, **_: Any) -> None:
    """The slow start-up that creates no run: importing MLflow and, for the local sqlite store, creating it
    and running its schema migrations (MLflow keeps the store per URI, so the loggers' clients reuse it)."""
    from mlflow.entities import Metric, Param  # noqa: F401 - so the first record need not import them
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri=tracking_uri(config, outputs))


def open_parent(config: dict[str, Any], sweep_dir: Path, *, resume: bool, outputs: Path | None = None,
                client=None) -> tuple[str, str]:
    """The sweep's parent run ``(run id, experiment id)``, created on the first call and recorded in the
    sweep directory's ``tracking.json``; later calls (other points, other processes) find it there, a
    resume marks it running again."""
    from mlflow.tracking import MlflowClient

    uri = tracking_uri(config, outputs)
    client = client or MlflowClient(tracking_uri=uri)
    with _PARENT_LOCK:
        known = tracking.read_tracking(sweep_dir)
        if known.get("mlflow_run_id"):
            if resume:
                client.update_run(known["mlflow_run_id"], status="RUNNING")
            return known["mlflow_run_id"], known.get("mlflow_experiment_id")
        exp_id = _experiment_id(client, uri)
        parent = client.create_run(exp_id, run_name=Path(sweep_dir).name,
                                   tags={"tradelab.sweep_dir": str(sweep_dir)})
        tracking.write_tracking(Path(sweep_dir), mlflow_run_id=parent.info.run_id,
                                mlflow_experiment_id=exp_id, mlflow_tracking_uri=public_uri(uri))
        return parent.info.run_id, exp_id


class MLflowLogger:
    def __init__(self, *, config: dict[str, Any], run_dir: Path, values: dict[str, Any],
                 sweep_dir: Path | None, resume: bool, outputs: Path | None = None, **_: Any):
        from mlflow.tracking import MlflowClient

        self.run_dir = Path(run_dir)
        uri = tracking_uri(config, outputs)
        self.client = client = MlflowClient(tracking_uri=uri)
        self.finished = False
        self.parent_id = None
        if sweep_dir is not None:
            self.parent_id = open_parent(config, Path(sweep_dir), resume=resume, outputs=outputs,
                                         client=client)[0]
        known = tracking.read_tracking(self.run_dir)
        if resume and known.get("mlflow_run_id"):
            self.run_id, exp_id = known["mlflow_run_id"], known.get("mlflow_experiment_id")
            client.update_run(self.run_id, status="RUNNING")
        else:
            exp_id = _experiment_id(client, uri)
            tags = {"tradelab.run_dir": str(self.run_dir)}
            if self.parent_id:
                tags["mlflow.parentRunId"] = self.parent_id
            run = client.create_run(exp_id, run_name=self.run_dir.name, tags=tags)
            self.run_id = run.info.run_id
            params = {k: v for k, v in tracking.flat(config).items() if v is not None}
            params.update({f"sweep.{k}": v for k, v in values.items()})
            plist = _params(params)
            for i in range(0, len(plist), BATCH):
                client.log_batch(self.run_id, params=plist[i:i + BATCH])
        tracking.write_tracking(self.run_dir, mlflow_run_id=self.run_id, mlflow_experiment_id=exp_id,
                                mlflow_tracking_uri=public_uri(uri))

    def _metrics(self, values: dict[str, float], step: int) -> None:
        from mlflow.entities import Metric

        now = int(time.time() * 1000)
        ms = [Metric(k, v, now, step) for k, v in values.items()]
        for i in range(0, len(ms), 1000):
            self.client.log_batch(self.run_id, metrics=ms[i:i + 1000])

    def log_chunk(self, rec: dict[str, Any]) -> None:
        self._metrics({f"train/{k}": v for k, v in tracking.scalars(rec).items()}, int(rec["env_steps"]))

    def log_final(self, summary: dict[str, Any], hparams: dict[str, Any], run_dir: Path) -> None:
        self._metrics(tracking.eval_scalars(summary), int(summary.get("run", {}).get("env_steps") or 0))
        for name in ("eval_summary.json", "equity.png"):
            if (Path(run_dir) / name).is_file():
                self.client.log_artifact(self.run_id, str(Path(run_dir) / name))
        self.finished = True

    def close(self) -> None:
        status = "FINISHED" if self.finished else "KILLED"
        self.client.set_terminated(self.run_id, status=status)
        if self.parent_id:
            self.client.set_terminated(self.parent_id, status=status)
