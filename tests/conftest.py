"""Fixtures shared by every test package, and the one way tests wait on wall-clock time.

A test that needs a process, a server or a page to reach some state waits on that state with
:func:`wait_for` (the ``wait_for`` fixture); a deadline that must stay (a subprocess timeout, Playwright's
default timeout) is :func:`scaled` (the ``scaled`` fixture). Both stretch an idle machine's budget by
:func:`time_scale`, so the suite holds on a 2-core machine that runs other trainings beside it. Whatever a
budget stretches to, pytest-timeout's per-test backstop (pyproject) still ends a test that hangs.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
BTC_1M_SHARED = SHARED_DATA / "binance_spot_btcusdt_1m_2025-05-20_2025-08-18" / "btcusdt_1m.parquet"

TIME_SCALE_ENV = "TRADELAB_TEST_TIME_SCALE"
# Past four runnable processes per core the machine is too busy for any deadline to mean much; the cap also
# keeps the largest in-test wait (180 s idle, x4) under the per-test backstop (pytest-timeout, pyproject).
MAX_LOAD_FACTOR = 4.0

T = TypeVar("T")


def env_time_scale() -> float:
    """``$TRADELAB_TEST_TIME_SCALE`` (default 1): a slow machine, an emulator or a debugger asks for more."""
    text = os.environ.get(TIME_SCALE_ENV, "").strip()
    try:
        scale = float(text) if text else 1.0
    except ValueError:
        scale = float("nan")
    if not scale > 0:
        raise pytest.UsageError(f"{TIME_SCALE_ENV}={text!r} must be a positive number (1 = an idle machine)")
    return scale


def load_factor() -> float:
    """Runnable processes per core now (1-minute load average / cores), between 1 and MAX_LOAD_FACTOR."""
    try:
        load = os.getloadavg()[0]
    except OSError:  # no load average on this platform
        return 1.0
    return min(max(load / (os.cpu_count() or 1), 1.0), MAX_LOAD_FACTOR)


def time_scale() -> float:
    """How many times an idle machine's time budget a wait may take now."""
    return env_time_scale() * load_factor()


def scaled(seconds: float) -> float:
    """An idle machine's deadline of ``seconds``, stretched for the machine as it is now."""
    return seconds * time_scale()


def wait_for(
    predicate: Callable[[], T],
    what: str,
    timeout: float,
    *,
    poll_s: float = 0.05,
    on_timeout: Callable[[], object] | None = None,
) -> T:
    """Poll ``predicate()`` until it returns something truthy, and return that.

    ``timeout`` is the budget in seconds on an idle machine: it says how long the state may take to come
    before we call it a hang. The wait allows ``timeout * time_scale()`` and re-reads the load while it
    waits (the deadline only grows), so a machine that gets busy mid-wait still gets its share. On a
    timeout, ``on_timeout()`` runs (a screenshot, say) and the AssertionError names ``what``.
    """
    start = time.monotonic()
    scale = time_scale()
    while True:
        value = predicate()
        if value:
            return value
        elapsed = time.monotonic() - start
        scale = max(scale, time_scale())
        if elapsed > timeout * scale:
            break
        time.sleep(poll_s)
    if on_timeout is not None:
        on_timeout()
    raise AssertionError(
        f"timed out after {elapsed:.0f}s waiting for {what} (an idle machine's budget of {timeout:g}s "
        f"x{scale:.1f} for {TIME_SCALE_ENV} and the load)"
    )


def pytest_configure(config: pytest.Config) -> None:
    env_time_scale()  # a bad value stops the run before any test, in one sentence


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The per-test backstop (pytest-timeout's ``timeout``) stretches with ``$TRADELAB_TEST_TIME_SCALE``
    too, so it never cuts a scaled wait short; it stays as set in pyproject when the variable is unset."""
    scale = env_time_scale()
    try:
        base = float(config.getoption("timeout", None) or config.getini("timeout") or 0)
    except ValueError:  # pytest-timeout is not installed
        return
    if scale == 1.0 or not base:
        return
    for item in items:
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(base * scale))


@pytest.fixture(name="wait_for", scope="session")
def wait_for_fixture() -> Callable[..., object]:
    """:func:`wait_for` for tests (conftest modules are not imported by tests)."""
    return wait_for


@pytest.fixture(name="scaled", scope="session")
def scaled_fixture() -> Callable[[float], float]:
    """:func:`scaled` for tests."""
    return scaled


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real market data beside the clone (CI lays ../shared next to it)."""
    assert SHARED_DATA.is_dir(), f"expected the shared real data at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
