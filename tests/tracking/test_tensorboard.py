"""TensorBoard events read back with tensorboard's own EventAccumulator, against metrics.jsonl."""

from __future__ import annotations

import pytest
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

from tests.train.helpers import TINY_GYMNAX, only_child
from tradelab_jax import runs, tracking, train


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    outputs = tmp_path_factory.mktemp("outputs")
    assert train.main([*TINY_GYMNAX, f"run.outputs={outputs}", "run.tag=tb"]) == 0
    return only_child(outputs)


def test_every_metrics_scalar_is_in_the_event_files(run_dir):
    acc = EventAccumulator(str(run_dir / tracking.TB_DIR), size_guidance={"scalars": 0})
    acc.Reload()
    metrics = runs.read_metrics(run_dir)
    assert metrics
    expected = {k for m in metrics for k in tracking.scalars(m)}
    assert {f"train/{k}" for k in expected} <= set(acc.Tags()["scalars"])
    for key in expected:
        events = acc.Scalars(f"train/{key}")
        want = [(m["env_steps"], m[key]) for m in metrics if isinstance(m.get(key), (int, float))]
        assert [e.step for e in events] == [s for s, _ in want]
        assert [e.value for e in events] == pytest.approx([v for _, v in want], rel=1e-6)
    summary = runs.read_eval_summary(run_dir)
    assert acc.Scalars("eval/mean_episode_return")[-1].value == pytest.approx(summary["mean_episode_return"])


def test_the_run_records_what_its_loggers_cost(run_dir):
    t = tracking.read_tracking(run_dir)
    wall = runs.read_eval_summary(run_dir)["run"]["wall_s"]
    assert t["loggers"] == ["tensorboard"] and 0.0 < t["logging_s"] < wall
    assert 0.0 < t["logger_busy_s"] < wall  # on the logger's thread: the start-up, every record, closing
    assert t["logger_cpu_s"] > 0.0


def test_a_failing_logger_is_one_warning_and_off(capsys):
    def boom():
        raise RuntimeError("server down")

    lg = tracking.Guarded("mlflow", boom)
    lg.log_chunk({"env_steps": 1})
    lg.close()
    err = capsys.readouterr().err
    assert err.count("warning: mlflow logger disabled") == 1 and not lg.active


def test_a_logger_is_made_on_its_first_record_so_a_refused_run_leaves_nothing():
    made = []
    lg = tracking.Guarded("tensorboard", lambda: made.append(1) or object())
    lg.close()  # a run that never trained: nothing made, nothing written
    assert made == [] and lg.active


def test_unknown_logger_name_is_one_sentence():
    with pytest.raises(Exception, match="valid: tensorboard"):
        tracking.check_names(["tensorbored"])


def test_a_resume_purges_the_steps_logged_after_its_checkpoint(tmp_path):
    """A kill between a chunk's metrics/event write and its checkpoint leaves a step the resume redoes: the
    resumed run's event files, read by TensorBoard, hold each step once, with the resumed values."""
    import json

    from tensorboardX import SummaryWriter

    from tradelab_jax.training import session
    from tradelab_jax.training.compose import register, to_plain

    cut = tmp_path / "cut"
    from hydra import compose, initialize_config_dir

    from tradelab_jax import paths

    register()
    with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
        plain = to_plain(compose("config", overrides=[*TINY_GYMNAX, f"run.outputs={tmp_path}"]))
    assert session.train_config(plain, cut, should_stop=lambda update: update >= 2)["status"] == "cancelled"
    last = runs.read_metrics(cut)[-1]
    ghost = {**last, "update": last["update"] + 2, "env_steps": last["env_steps"] * 2, "loss": 1e6}
    with open(cut / runs.METRICS_FILE, "a", encoding="utf-8") as f:
        f.write(json.dumps(ghost) + "\n")
    w = SummaryWriter(str(cut / tracking.TB_DIR))  # in the same second as the cut run's own writer
    w.add_scalar("train/loss", 1e6, ghost["env_steps"])
    w.close()
    assert train.main([f"run.resume={cut}"]) == 0
    acc = EventAccumulator(str(cut / tracking.TB_DIR), size_guidance={"scalars": 0})
    acc.Reload()
    metrics = runs.read_metrics(cut)
    assert 1e6 not in [m["loss"] for m in metrics]
    events = acc.Scalars("train/loss")
    assert [e.step for e in events] == [m["env_steps"] for m in metrics]
    assert [e.value for e in events] == pytest.approx([m["loss"] for m in metrics], rel=1e-6)
    assert len(list((cut / tracking.TB_DIR).iterdir())) == 3  # the cut run's, the ghost's, the resume's


@pytest.mark.parametrize("override, match", [
    ("run.loggers=[tensorbored]", r"run\.loggers: 'tensorbored' is not a logger; valid: tensorboard, "
                                  "mlflow, wandb"),
    ("run.mlflow_uri=http://ann:hunter2@127.0.0.1:5000", r"run\.mlflow_uri holds a password"),
])
def test_a_bad_logger_setting_is_refused_before_the_run_starts(override, match, tmp_path):
    import re
    import subprocess
    import sys

    proc = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "train", *TINY_GYMNAX, override,
                           f"run.outputs={tmp_path}"], capture_output=True, text=True, timeout=300)
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and re.search(match, lines[0]), proc.stderr
    assert "hunter2" not in proc.stderr.replace(lines[0], "") and not any(tmp_path.iterdir())
