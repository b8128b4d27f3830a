"""Loggers work on background threads: a slow start-up never holds the host loop, the flush after training
is bounded (one warning line), a run refused before it trains leaves nothing, and ``open_sweep`` creates a
sweep's MLflow parent run once, the one its points' runs are nested under."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
from mlflow.tracking import MlflowClient
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.train.helpers import TINY_GYMNAX, only_child
from tradelab_jax import runs, tracking, train
from tradelab_jax.tracking import mlflow as tl_mlflow
from tradelab_jax.tracking.tensorboard import TensorBoardLogger

BLOCKED: list[float] = []  # seconds each SlowTensorBoard waited in its start-up


class SlowTensorBoard(TensorBoardLogger):
    """The TensorBoard logger behind a start-up that only ends once training has written its last chunk:
    that can happen only if the host loop went on without waiting for it."""

    def __init__(self, *, run_dir, **kw):
        t0 = time.perf_counter()
        while True:
            st = runs.read_status(run_dir) or {}
            if st.get("num_updates") and st.get("update") == st["num_updates"]:
                break
            if time.perf_counter() - t0 > 120:
                raise RuntimeError("training did not go on while this logger was starting")
            time.sleep(0.01)
        BLOCKED.append(time.perf_counter() - t0)
        super().__init__(run_dir=run_dir, **kw)


def test_a_slow_logger_start_up_does_not_hold_the_chunks(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(tracking.LOGGERS, "tensorboard", (__name__, "SlowTensorBoard"))
    BLOCKED.clear()
    assert train.main([*TINY_GYMNAX, f"run.outputs={tmp_path}", "run.tag=slow"]) == 0
    assert "logger disabled" not in capsys.readouterr().err
    run_dir = only_child(tmp_path)
    # Every chunk's scalars still reach the event files, in step order, after the late start-up.
    acc = EventAccumulator(str(run_dir / tracking.TB_DIR), size_guidance={"scalars": 0})
    acc.Reload()
    metrics = runs.read_metrics(run_dir)
    assert len(metrics) == 4 and len(BLOCKED) == 1
    assert [e.step for e in acc.Scalars("train/loss")] == [m["env_steps"] for m in metrics]
    assert [e.value for e in acc.Scalars("train/loss")] == pytest.approx([m["loss"] for m in metrics])
    t = tracking.read_tracking(run_dir)
    assert t["loggers"] == ["tensorboard"] and t["logger_busy_s"] >= BLOCKED[0]


class Recorder:
    def __init__(self):
        self.records, self.closed = [], False

    def log_chunk(self, rec):
        self.records.append(rec["env_steps"])

    def close(self):
        self.closed = True


def test_records_are_handed_over_without_waiting_and_written_in_order():
    started, gate, made = threading.Event(), threading.Event(), []

    def make():
        started.set()
        gate.wait(30)
        made.append(Recorder())
        return made[-1]

    lg = tracking.Guarded("slow", make)
    for step in (1, 2, 3):
        lg.log_chunk({"env_steps": step})
    assert started.wait(30) and made == []  # the host loop went on while the start-up is blocked
    time.sleep(1.0)
    gate.set()
    lg.close()
    assert made[0].records == [1, 2, 3] and made[0].closed
    assert lg.busy_s >= 1.0 > lg.waited_s  # the blocked second was the logger's, not the host loop's


def test_a_logger_still_busy_after_the_flush_timeout_is_one_warning_line(capsys):
    gate = threading.Event()

    class Late(Recorder):
        def log_chunk(self, rec):
            raise RuntimeError("a late error is not a second line")

    def make():
        gate.wait(30)
        return Late()

    worker = tracking.Worker("slow")
    loggers = [[tracking.Guarded("slow", make, worker=worker)] for _ in range(2)]
    tracking.log_chunks(loggers, [{"env_steps": 1}, {"env_steps": 1}])
    t0 = time.perf_counter()
    tracking.close_all(loggers, timeout=0.2)
    assert time.perf_counter() - t0 < 10
    gate.set()
    worker._thread.join(30)
    assert not worker._thread.is_alive()  # it ended after its queue
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert lines == ["warning: slow logger disabled for this run: it had not finished 0.2 s after training "
                     "(tracking.FLUSH_TIMEOUT_S); its last records may be missing"]
    assert not any(lg.active for point in loggers for lg in point)


def _plan(tmp_path, loggers, extra=()):
    from hydra import compose, initialize_config_dir

    from tradelab_jax import paths
    from tradelab_jax.training import compose as tl_compose
    from tradelab_jax.training.plan import plan_run

    tl_compose.register()
    with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
        plain = tl_compose.to_plain(compose("config", overrides=[
            *TINY_GYMNAX, f"run.loggers=[{','.join(loggers)}]", f"run.outputs={tmp_path}", *extra]))
    plan = plan_run(plain, tmp_path / "sweep")
    for d in plan.dirs:
        d.mkdir(parents=True)
    return plan


@pytest.fixture
def no_uri(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")


def test_a_run_refused_before_it_trains_leaves_no_run_behind(tmp_path, no_uri):
    """for_plan starts each logger's prepare at once; closed without a record (the run was refused), no
    event file, W&B run or MLflow run exists."""
    plan = _plan(tmp_path, ["tensorboard", "mlflow", "wandb"], ["sweep.seed=[0,1]"])
    loggers = tracking.for_plan(plan)
    tracking.close_all(loggers)
    for d in plan.dirs:
        assert list(d.iterdir()) == []
    assert not (plan.root / tracking.TRACKING_FILE).exists()
    client = MlflowClient(tracking_uri=tl_mlflow.tracking_uri(plan.base))
    assert client.search_experiments() == [] or client.search_runs(
        [e.experiment_id for e in client.search_experiments()]) == []


def test_open_sweep_creates_the_parent_run_once_and_the_points_nest_under_it(tmp_path, no_uri):
    plan = _plan(tmp_path, ["mlflow"], ["sweep.seed=[0,1]"])
    parent = tracking.open_sweep(plan)
    assert parent and tracking.open_sweep(plan) == parent
    assert tracking.read_tracking(plan.root)["mlflow_run_id"] == parent
    loggers = tracking.for_plan(plan)
    tracking.log_chunks(loggers, [{"env_steps": 32, "loss": 1.0}, {"env_steps": 32, "loss": 2.0}])
    tracking.close_all(loggers)
    client = MlflowClient(tracking_uri=tl_mlflow.tracking_uri(plan.base))
    exp = tracking.read_tracking(plan.root)["mlflow_experiment_id"]
    every = client.search_runs([exp])
    assert len(every) == 3  # the parent and one run per point
    children = {r.info.run_id for r in every if r.data.tags.get("mlflow.parentRunId") == parent}
    assert children == {tracking.read_tracking(d)["mlflow_run_id"] for d in plan.dirs}
    assert client.get_run(parent).info.status == "KILLED"  # closed without final metrics, like a cancel
    # A resume finds the same parent and marks it running again; still one parent.
    assert tracking.open_sweep(dataclasses.replace(plan, resume=True)) == parent
    assert client.get_run(parent).info.status == "RUNNING" and len(client.search_runs([exp])) == 3


def test_open_sweep_without_a_sweep_or_mlflow_does_nothing(tmp_path, no_uri):
    single = _plan(tmp_path / "a", ["mlflow"])
    assert single.root is None and tracking.open_sweep(single) is None
    sweep = _plan(tmp_path / "b", ["tensorboard"], ["sweep.seed=[0,1]"])
    assert tracking.open_sweep(sweep) is None and not (sweep.root / tracking.TRACKING_FILE).exists()
    assert not (tmp_path / "a" / "mlruns").exists()
