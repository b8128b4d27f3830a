"""Fixtures for the UI tests: a temporary outputs root, a job queue driving the fake trainer, run builders."""

from __future__ import annotations

import os
import sys
import time
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


def wait_until(queue: JobQueue, predicate: Callable[[], bool], timeout: float = 20.0) -> None:
    """Drive the queue (tick) until ``predicate()`` holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        queue.tick()
        if predicate():
            return
        time.sleep(0.05)
    raise AssertionError(f"timed out after {timeout}s; jobs: {[(j.id, j.state) for j in queue.list()]}")
