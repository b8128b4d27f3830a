"""`tradelab data resample` on the real data, and `tradelab data trades-to-bars` on real Kraken trades."""

from __future__ import annotations

import shutil
from collections import defaultdict

import numpy as np
import pandas as pd
import pytest
from datalake_helpers import BTC_5M, KRAKEN_TRADES, REPO_LAKE, put_dataset, slice_bars, snapshot

import tradelab_jax.data as data
from tradelab_jax.data.resample import resample_bars


@pytest.fixture
def lake_copy(tmp_path):
    """A writable copy of the shipped lake."""
    root = tmp_path / "lake"
    shutil.copytree(REPO_LAKE, root)
    return root


def test_resample_matches_binance_5m_bars(run_data, lake_copy):
    """1m -> 5m of the shipped series equals Binance's own 5m candles (an independent download)."""
    rc, out, err = run_data("resample", "binance_btcusdt_1m", "--to", "5m", "--lake", lake_copy)
    assert rc == 0, err
    assert "binance_btcusdt_5m: 26,141 bars" in out
    five = data.load("binance_btcusdt_5m", lake=lake_copy)
    ref = pd.read_parquet(BTC_5M)
    ref = ref[ref.ts.isin(five.ts)]
    assert len(ref) == len(five) == 26_141  # 130,708 minutes hold 26,141 complete buckets
    for col in ("ts", "open", "high", "low", "close"):
        np.testing.assert_array_equal(five.bars[col], ref[col].to_numpy(), err_msg=col)
    np.testing.assert_allclose(five.bars["volume"], ref["volume"].to_numpy(), rtol=1e-12)
    m = five.manifest
    assert m["timeframe"] == "5m" and m["timeframe_ms"] == 300_000 and m["gaps"] == []
    # The last 1m bar (18:27, unconfirmed) sits in an incomplete bucket, which is not written.
    assert m["last_bar"] == "2025-08-18T18:20:00Z"
    assert m["provenance"]["sources"][0]["dataset"] == "binance_btcusdt_1m"
    assert "Provenance of the source dataset binance_btcusdt_1m" in m["provenance"]["text"]
    assert run_data("validate", "binance_btcusdt_5m", "--lake", lake_copy)[0] == 0


@pytest.mark.parametrize("to,rule", [("15m", "15min"), ("1h", "1h")])
def test_resample_matches_pandas(run_data, lake_copy, to, rule):
    rc, _, err = run_data("resample", "binance_btcusdt_1m_2025-10", "--to", to, "--lake", lake_copy)
    assert rc == 0, err
    out = data.load(f"binance_btcusdt_{to}_2025-10", lake=lake_copy)
    src = pd.DataFrame(data.load("binance_btcusdt_1m_2025-10", lake=lake_copy).bars)
    src.index = pd.to_datetime(src.ts, unit="ms", utc=True)
    agg = src.resample(rule, label="left", closed="left").agg(
        {"open": "first", "high": "max", "low": "min", "close": "last", "volume": "sum", "ts": "count"}
    )
    per = {"15m": 15, "1h": 60}[to]
    agg = agg[agg.ts == per]
    np.testing.assert_array_equal(out.ts, agg.index.as_unit("ms").asi8)
    for col in ("open", "high", "low", "close"):
        np.testing.assert_array_equal(out.bars[col], agg[col].to_numpy())
    np.testing.assert_allclose(out.bars["volume"], agg["volume"].to_numpy(), rtol=1e-12)


def test_only_complete_buckets(tmp_path, oct_bars):
    bars = slice_bars(oct_bars, 0, 60)  # 00:00 .. 00:59
    keep = np.ones(60, bool)
    keep[7] = False  # the 00:05 bucket loses a bar
    out, dropped = resample_bars({k: v[keep] for k, v in bars.items()}, 60_000, 300_000)
    assert dropped == []
    assert len(out["ts"]) == 11
    assert 1760486700000 not in out["ts"]  # 2025-10-15T00:05Z
    i = 1  # the 00:10 bucket (00:05 is gone)
    sl = slice(10, 15)
    assert out["open"][i] == bars["open"][10] and out["close"][i] == bars["close"][14]
    assert out["high"][i] == bars["high"][sl].max() and out["low"][i] == bars["low"][sl].min()
    assert out["volume"][i] == pytest.approx(bars["volume"][sl].sum(), rel=1e-15)


def test_resample_refuses_bad_targets(run_data, small_lake):
    before = snapshot(small_lake)
    for to, text in [("90s", "whole multiple"), ("1m", "whole multiple"), ("5x", "invalid timeframe")]:
        rc, _, err = run_data("resample", "btc_small", "--to", to, "--lake", small_lake)
        assert rc == 2 and text in err, err
    rc, _, err = run_data("resample", "nope", "--to", "5m", "--lake", small_lake)
    assert rc == 3 and "no dataset 'nope'" in err
    assert run_data("resample", "btc_small", "--to", "5m", "--lake", small_lake)[0] == 0
    rc, _, err = run_data("resample", "btc_small", "--to", "5m", "--lake", small_lake)
    assert rc == 2 and "already exists" in err
    assert set(snapshot(small_lake)) > set(before)


def test_resample_refuses_a_corrupt_source(run_data, small_lake):
    m = data.load("btc_small", lake=small_lake).manifest
    (small_lake / m["files"][0]["path"]).write_bytes(b"garbage")
    before = snapshot(small_lake)
    rc, _, err = run_data("resample", "btc_small", "--to", "5m", "--lake", small_lake)
    assert rc == 3 and "does not match the sha256" in err
    assert snapshot(small_lake) == before


# ----------------------------------------------------------------------------------------- trades


def reference_bars(trades: pd.DataFrame) -> dict[int, tuple]:
    """A slow, obvious model: walk the trades in id order and fold each into its minute."""
    out: dict[int, list] = {}
    buy = defaultdict(float)
    sell = defaultdict(float)
    for row in trades.sort_values("trade_id").itertuples():
        minute = row.ts - row.ts % 60_000
        if minute not in out:
            out[minute] = [row.price, row.price, row.price, row.price, 0.0]
        bar = out[minute]
        bar[1] = max(bar[1], row.price)
        bar[2] = min(bar[2], row.price)
        bar[3] = row.price
        bar[4] += row.amount
        (buy if row.side == "buy" else sell)[minute] += row.amount
    return {m: (*v, buy[m], sell[m]) for m, v in out.items()}


def test_trades_to_bars_on_real_kraken_trades(run_data, tmp_path):
    lake = tmp_path / "lake"
    rc, out, err = run_data(
        "trades-to-bars", KRAKEN_TRADES, "--exchange", "kraken", "--symbol", "BTC/USDT", "--lake", lake
    )
    assert rc == 0, err
    assert "kraken_btcusdt_1m: 7,722 bars 2023-11-17T00:00:00Z → 2023-11-22T08:41:00Z, 0 gap(s)" in out
    assert "26 trade id(s) are missing" in err
    market = data.load("kraken_btcusdt_1m", lake=lake)
    assert market.columns[-2:] == ("taker_buy_volume", "taker_sell_volume")
    trades = pd.read_parquet(KRAKEN_TRADES)
    ref = reference_bars(trades)
    b = market.bars
    index = {int(t): i for i, t in enumerate(b["ts"])}
    for minute, (o, h, lo, c, v, buy, sell) in ref.items():
        i = index[minute]
        assert (b["open"][i], b["high"][i], b["low"][i], b["close"][i]) == (o, h, lo, c)
        assert b["volume"][i] == pytest.approx(v, rel=1e-12)
        assert b["taker_buy_volume"][i] == pytest.approx(buy, rel=1e-12, abs=1e-15)
        assert b["taker_sell_volume"][i] == pytest.approx(sell, rel=1e-12, abs=1e-15)
    empty = np.array([int(t) not in ref for t in b["ts"]])
    assert empty.sum() == 7722 - len(ref) > 0
    # Minutes without trades are flat at the previous close with zero volume.
    for i in np.flatnonzero(empty)[:50]:
        assert b["open"][i] == b["high"][i] == b["low"][i] == b["close"][i] == b["close"][i - 1]
        assert b["volume"][i] == b["taker_buy_volume"][i] == b["taker_sell_volume"][i] == 0
    assert b["volume"].sum() == pytest.approx(trades.amount.sum(), rel=1e-12)
    assert market.manifest["unconfirmed_ts"] == [int(b["ts"][-1])]
    assert run_data("validate", "--lake", lake)[0] == 0


def test_trades_to_bars_skip_leaves_gaps(run_data, tmp_path):
    lake = tmp_path / "lake"
    rc, _out, err = run_data(
        "trades-to-bars", KRAKEN_TRADES, "--exchange", "kraken", "--symbol", "BTC/USDT",
        "--empty", "skip", "--dataset-id", "kraken_sparse", "--lake", lake,
    )  # fmt: skip
    assert rc == 0, err
    m = data.load("kraken_sparse", lake=lake).manifest
    assert m["rows"] + sum(g["missing_bars"] for g in m["gaps"]) == 7722
    assert len(m["gaps"]) > 100


@pytest.mark.parametrize(
    "edit,text",
    [
        (lambda df: df.assign(side="long"), "column 'side' has 'long' at data row 1; expected buy or sell"),
        (lambda df: df.assign(price=-df.price), "column 'price' has the invalid value"),
        (lambda df: df.drop(columns="amount"), "has no amount column"),
        (lambda df: df.iloc[:0], "has no rows"),
    ],
)
def test_broken_trades_are_refused(run_data, tmp_path, small_lake, edit, text):
    path = tmp_path / "trades.parquet"
    edit(pd.read_parquet(KRAKEN_TRADES).iloc[:500]).to_parquet(path)
    before = snapshot(small_lake)
    rc, _, err = run_data(
        "trades-to-bars", path, "--exchange", "kraken", "--symbol", "BTC/USDT", "--lake", small_lake,
        "--dataset-id", "btc_small", "--replace",
    )  # fmt: skip
    assert rc == 3 and err.startswith("error: ") and text in err, err
    assert snapshot(small_lake) == before


def test_put_dataset_helper_round_trip(tmp_path, oct_bars):
    put_dataset(tmp_path, "x", slice_bars(oct_bars, 0, 10))
    assert len(data.load("x", lake=tmp_path)) == 10
