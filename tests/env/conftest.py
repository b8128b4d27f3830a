"""Real BTC bars for the environment tests (read with pandas until the data package's loader lands)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"
DATASETS = {
    "btc_1m": SHARED / "binance_spot_btcusdt_1m_2025-05-20_2025-08-18" / "btcusdt_1m.parquet",
    "btc_1m_oct": SHARED / "binance_spot_btcusdt_1m_2025-10-15_2025-11-04" / "btcusdt_1m.parquet",
}


def read_bars(name: str) -> dict[str, np.ndarray]:
    frame = pd.read_parquet(DATASETS[name])
    return {col: frame[col].to_numpy() for col in ("ts", "open", "high", "low", "close", "volume")}


@pytest.fixture(scope="session")
def btc_bars() -> dict[str, np.ndarray]:
    """All 130,708 bars of Binance BTC/USDT 1m, 2025-05-20 -> 2025-08-18."""
    return read_bars("btc_1m")


@pytest.fixture(scope="session")
def btc_oct_bars() -> dict[str, np.ndarray]:
    """All 29,518 bars of Binance BTC/USDT 1m, 2025-10-15 -> 2025-11-04 (a volatile month)."""
    return read_bars("btc_1m_oct")
