"""Fixtures for the data-lake tests: real bars from ../shared/data, small temporary lakes, a CLI runner."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from datalake_helpers import BTC_1M, BTC_1M_OCT, put_dataset, read_arrays, slice_bars


@pytest.fixture(scope="session")
def oct_bars() -> dict[str, np.ndarray]:
    """The real Binance BTC/USDT 1m bars of 2025-10-15 → 2025-11-04."""
    return read_arrays(BTC_1M_OCT)


@pytest.fixture(scope="session")
def btc_bars() -> dict[str, np.ndarray]:
    """The real Binance BTC/USDT 1m bars of 2025-05-20 → 2025-08-18."""
    return read_arrays(BTC_1M)


@pytest.fixture
def small_lake(tmp_path: Path, oct_bars) -> Path:
    """A lake with one 3-day dataset (2025-10-30 → 2025-11-02, across a month boundary)."""
    root = tmp_path / "lake"
    start = int(np.searchsorted(oct_bars["ts"], 1761782400000))  # 2025-10-30T00:00Z
    put_dataset(root, "btc_small", slice_bars(oct_bars, start, start + 3 * 1440))
    return root


@pytest.fixture
def run_data(capsys):
    """Run ``tradelab data ARGS`` through the real dispatcher; returns (exit code, stdout, stderr)."""
    from tradelab_jax.cli import main

    def run(*args: str) -> tuple[int, str, str]:
        try:
            rc = main(["data", *map(str, args)])
        except SystemExit as exc:  # argparse usage errors
            rc = exc.code
        out, err = capsys.readouterr()
        assert "Traceback" not in out + err
        return rc, out, err

    return run
