"""Helpers shared by the data-lake tests (plain functions; the fixtures are in conftest.py)."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from tradelab_jax.data.lake import Lake, write_dataset

SHARED = Path(__file__).resolve().parents[3] / "shared" / "data"
BTC_1M = SHARED / "binance_spot_btcusdt_1m_2025-05-20_2025-08-18" / "btcusdt_1m.parquet"
BTC_1M_OCT = SHARED / "binance_spot_btcusdt_1m_2025-10-15_2025-11-04" / "btcusdt_1m.parquet"
BTC_5M = SHARED / "binance_spot_btcusdt_5m_2024-12-31_2026-02-19" / "btcusdt_5m.parquet"
KRAKEN_TRADES = SHARED / "kraken_spot_btcusdt_trades_2023-11-17_2023-11-22" / "btcusdt_trades.parquet"
REPO_LAKE = Path(__file__).resolve().parents[2] / "data"


def read_arrays(path: Path) -> dict[str, np.ndarray]:
    table = pq.read_table(path)
    return {name: table.column(name).to_numpy() for name in table.column_names}


def slice_bars(bars: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    return {k: v[start:stop].copy() for k, v in bars.items()}


def put_dataset(lake_root: Path, dataset_id: str, bars: dict[str, np.ndarray], **kw) -> dict:
    """Write ``bars`` as a dataset of a temporary lake (Binance BTC/USDT 1m unless told otherwise)."""
    return write_dataset(
        Lake(lake_root),
        dataset_id=dataset_id,
        exchange=kw.pop("exchange", "binance"),
        symbol=kw.pop("symbol", "BTC/USDT"),
        timeframe=kw.pop("timeframe", "1m"),
        bars=bars,
        provenance_text=kw.pop("provenance_text", f"# {dataset_id}\n\ntest data\n"),
        sources=kw.pop("sources", []),
        **kw,
    )


def snapshot(root: Path) -> dict[str, str]:
    """sha256 of every file under ``root`` (to prove a command left the lake untouched)."""
    if not root.exists():
        return {}
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }
