"""Fixtures for the streaming tests: real BTC/USDT and ETH/USDT 1m bars from ../shared/data."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from datalake_helpers import SHARED, read_arrays

BTC = SHARED / "binance_spot_btcusdt_1m_2025-05-20_2025-08-18" / "btcusdt_1m.parquet"
ETH = SHARED / "binance_spot_ethusdt_1m_2025-05-20_2025-08-18" / "ethusdt_1m.parquet"
WINDOW_START = 1748728800000  # 2025-05-31T22:00Z: the window crosses into June (two month files)


def window(path: Path, n: int) -> dict[str, np.ndarray]:
    bars = read_arrays(path)
    i = int(np.searchsorted(bars["ts"], WINDOW_START))
    return {k: v[i : i + n].copy() for k, v in bars.items()}


@pytest.fixture(scope="session")
def market() -> dict[str, dict[str, np.ndarray]]:
    """400 real bars of each symbol from 2025-05-31T22:00Z, on the same grid (no gaps in this window)."""
    bars = {"BTC/USDT": window(BTC, 400), "ETH/USDT": window(ETH, 400)}
    assert np.array_equal(bars["BTC/USDT"]["ts"], bars["ETH/USDT"]["ts"])
    assert np.all(np.diff(bars["BTC/USDT"]["ts"]) == 60_000)
    return bars
