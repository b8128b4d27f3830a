"""Fixtures for the UI tests: a temporary outputs root, a job queue driving the fake trainer, run builders."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from tradelab_jax.ui.forms import LaunchPlan
from tradelab_jax.ui.jobs import JobQueue

FAKE_TRAIN = Path(__file__).with_name("fake_train.py")


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    out = tmp_path / "outputs"
    out.mkdir()
    return out


def plan(tag: str = "t", points: int = 1) -> LaunchPlan:
    axes = {"env.risk_pct": [0.01 * (i + 1) for i in range(points)]} if points > 1 else {}
    overrides = ["data=binance_btcusdt_1m", f"run.tag={tag}"]
    if axes:
        overrides.append("sweep.env.risk_pct=[" + ",".join(repr(v) for v in axes["env.risk_pct"]) + "]")
    return LaunchPlan(overrides=tuple(overrides), tag=tag, points=points, axes=axes)


@pytest.fixture
def make_queue(outputs: Path) -> Callable[..., JobQueue]:
    made: list[JobQueue] = []

    def make(mode: str = "ok", kill_after_s: float = 5.0, **env: str) -> JobQueue:
        environ = {**os.environ, "FAKE_TRAIN_MODE": mode, **env}
        q = JobQueue(
            outputs,
            command=[sys.executable, str(FAKE_TRAIN)],
            kill_after_s=kill_after_s,
            poll_s=0.05,
            env=environ,
        )
        made.append(q)
        return q

    yield make
    for q in made:  # never leave a fake trainer behind
        q.stop_worker()
        for job in q.list():
            if job.state == "running" and job.pid:
                q._signal(job, 9)


@pytest.fixture
def wait_until(wait_for) -> Callable[..., None]:
    """``wait_until(queue, predicate, what)``: drive the queue (tick) until ``predicate()`` holds.

    The fake trainer takes well under a second per job; 20 s on an idle machine (scaled for the load, see
    tests/conftest.py) only says when a job that never gets there is a hang.
    """

    def until(queue: JobQueue, predicate: Callable[[], bool], what: str = "the jobs", timeout: float = 20.0):
        def ticked() -> bool:
            queue.tick()
            return predicate()

        try:
            wait_for(ticked, what, timeout)
        except AssertionError as err:
            raise AssertionError(f"{err}; jobs: {[(j.id, j.state) for j in queue.list()]}") from None

    return until


@pytest.fixture
def gate(tmp_path: Path) -> Path:
    """The fake trainer's ``FAKE_TRAIN_GATE``: it holds after its first chunk until this file exists."""
    return tmp_path / "gate-open"
