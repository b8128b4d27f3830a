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
