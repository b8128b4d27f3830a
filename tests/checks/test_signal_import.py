"""A user's signal column survives `tradelab data import` (Parquet files and manifest) and a `column`
feature reads it, lag and all (issue 14 item 3)."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from tradelab_jax import cli, data
from tradelab_jax import features as fs

N = 3000


def test_imported_signal_columns_reach_the_lake_and_the_column_feature(tmp_path):
    source = data.load("binance_btcusdt_1m_2025-10").bars
    rng = np.random.default_rng(7)
    frame = pd.DataFrame({k: source[k][:N] for k in ("ts", "open", "high", "low", "close", "volume")})
    frame["Funding Rate"] = np.round(rng.normal(0, 1e-4, N), 8)  # a user's name, cleaned to funding_rate
    frame["my_forecast"] = rng.normal(0, 1, N)
    frame["note"] = "text"  # not numeric: dropped, and said so
    path = tmp_path / "bars.csv"
    frame.to_csv(path, index=False)
    lake = tmp_path / "lake"
    assert cli.main(["data", "import", str(path), "--exchange", "binance", "--symbol", "BTC/USDT",
                     "--timeframe", "1m", "--lake", str(lake), "--dataset-id", "signals"]) == 0

    manifest = json.loads((lake / "manifests" / "signals.json").read_text())
    assert {"funding_rate", "my_forecast"} <= {c["name"] for c in manifest["columns"]}
    assert "note" not in {c["name"] for c in manifest["columns"]}
    stored = pd.concat([pq.read_table(lake / f["path"]).to_pandas() for f in manifest["files"]])
    np.testing.assert_array_equal(stored["my_forecast"].to_numpy(), frame["my_forecast"].to_numpy())
    np.testing.assert_array_equal(stored["funding_rate"].to_numpy(), frame["Funding Rate"].to_numpy())

    bars = data.load("signals", lake=lake).bars
    specs = fs.parse_specs([{"kind": "column", "column": "my_forecast"},
                            {"kind": "column", "column": "funding_rate", "lag": 2}])
    values = np.asarray(fs.compute_features(bars, specs).values)
    np.testing.assert_array_equal(values[:, 0], frame["my_forecast"].to_numpy(np.float32))
    np.testing.assert_array_equal(values[2:, 1], frame["Funding Rate"].to_numpy(np.float32)[:-2])
    assert np.isnan(values[:2, 1]).all()
