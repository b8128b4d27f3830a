"""The suite's one way to wait (tests/conftest.py): budgets stretch with the load and the env variable."""

from __future__ import annotations

import os
import time

import pytest


@pytest.fixture
def machine(monkeypatch):
    """Set the 1-minute load average and core count the scale reads."""

    def set_to(load: float, cores: int = 2) -> None:
        monkeypatch.setattr(os, "getloadavg", lambda: (load, 0.0, 0.0))
        monkeypatch.setattr(os, "cpu_count", lambda: cores)

    monkeypatch.delenv("TRADELAB_TEST_TIME_SCALE", raising=False)
    return set_to


def test_an_idle_machine_keeps_the_budget_and_a_busy_one_stretches_it_up_to_four_times(machine, scaled):
    machine(0.3)
    assert scaled(10) == 10
    machine(5.0)  # two trainings beside us on 2 cores: 2.5 runnable processes per core
    assert scaled(10) == 25
    machine(40.0)
    assert scaled(10) == 40


def test_the_env_variable_multiplies_the_load_factor(machine, scaled, monkeypatch):
    machine(4.0)
    monkeypatch.setenv("TRADELAB_TEST_TIME_SCALE", "3")
    assert scaled(10) == 60


def test_a_wait_returns_the_predicates_value_as_soon_as_it_holds(machine, wait_for):
    machine(0.0)
    calls = []
    third = lambda: calls.append(1) or (len(calls) >= 3 and "ready")
    assert wait_for(third, "three calls", 5, poll_s=0) == "ready"
    assert len(calls) == 3


def test_a_timeout_names_what_was_awaited_and_runs_its_hook(machine, wait_for):
    machine(0.0)
    hooked = []
    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"waiting for the moon \(an idle machine's budget of 0.2s x1.0"):
        wait_for(lambda: False, "the moon", 0.2, poll_s=0.01, on_timeout=lambda: hooked.append(True))
    assert hooked == [True] and 0.2 <= time.monotonic() - start < 5


def test_a_machine_that_gets_busy_mid_wait_gets_the_longer_budget(machine, wait_for, monkeypatch):
    loads = iter([0.0] * 3 + [8.0] * 10_000)  # idle at the start, then 4 processes per core
    monkeypatch.setattr(os, "getloadavg", lambda: (next(loads), 0.0, 0.0))
    start = time.monotonic()
    with pytest.raises(AssertionError, match=r"x4\.0"):
        wait_for(lambda: False, "never", 0.1, poll_s=0.01)
    assert time.monotonic() - start >= 0.4


def test_a_bad_scale_is_refused_in_one_sentence(machine, scaled, monkeypatch):
    monkeypatch.setenv("TRADELAB_TEST_TIME_SCALE", "fast")
    with pytest.raises(pytest.UsageError, match="TRADELAB_TEST_TIME_SCALE='fast' must be a positive number"):
        scaled(1)
