"""Fixtures shared by every test package."""

from __future__ import annotations

from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
BTC_1M_SHARED = SHARED_DATA / "binance_spot_btcusdt_1m_2025-05-20_2025-08-18" / "btcusdt_1m.parquet"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real market data beside the clone (CI lays ../shared next to it)."""
    assert SHARED_DATA.is_dir(), f"expected the shared real data at {SHARED_DATA}"
    return SHARED_DATA


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT
