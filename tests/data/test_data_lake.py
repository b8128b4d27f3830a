"""The embedded lake, the manifest, load() / MarketData / splits, and `tradelab data list`."""

from __future__ import annotations

import hashlib
import itertools
import json
import subprocess
import sys

import numpy as np
import pytest
from datalake_helpers import BTC_1M, BTC_1M_OCT, REPO_LAKE, put_dataset, read_arrays, slice_bars, snapshot

import tradelab_jax.data as data
from tradelab_jax.data.lake import Lake, find_gaps, parquet_bytes
from tradelab_jax.errors import DataError, UserError

SHIPPED = {
    "binance_btcusdt_1m": (BTC_1M, 130_708, "2025-05-20T00:00:00Z", "2025-08-18T18:27:00Z"),
    "binance_btcusdt_1m_2025-10": (BTC_1M_OCT, 29_518, "2025-10-15T00:00:00Z", "2025-11-04T11:57:00Z"),
}


@pytest.mark.parametrize("dataset_id", sorted(SHIPPED))
def test_shipped_dataset_equals_the_shared_source(dataset_id):
    source, rows, first, last = SHIPPED[dataset_id]
    market = data.load(dataset_id, lake=REPO_LAKE)
    expected = read_arrays(source)
    assert len(market) == rows
    assert market.columns == ("ts", "open", "high", "low", "close", "volume")
    assert market.bars["ts"].dtype == np.int64
    for name, values in expected.items():
        assert market.bars[name].dtype == values.dtype
        np.testing.assert_array_equal(market.bars[name], values)
    m = market.manifest
    assert (m["id"], m["exchange"], m["symbol"], m["timeframe"]) == (dataset_id, "binance", "BTC/USDT", "1m")
    assert (m["rows"], m["first_bar"], m["last_bar"], m["gaps"]) == (rows, first, last, [])
    # The last bar may have been forming when the source was downloaded: kept, and said so.
    assert m["unconfirmed_ts"] == [int(expected["ts"][-1])]
    assert "Imported into the tradelab lake" in m["provenance"]["text"]
    assert "## Source" in m["provenance"]["text"]  # the original PROVENANCE.md is kept whole
    prov = (REPO_LAKE / m["provenance"]["file"]).read_text()
    assert prov == m["provenance"]["text"]
    assert m["provenance"]["sources"][0]["sha256"] == hashlib.sha256(source.read_bytes()).hexdigest()


def test_shipped_layout_and_checksums():
    for dataset_id in SHIPPED:
        m = json.loads((REPO_LAKE / "manifests" / f"{dataset_id}.json").read_text())
        months = [f["month"] for f in m["files"]]
        assert months == sorted(months)
        assert sum(f["rows"] for f in m["files"]) == m["rows"]
        for f in m["files"]:
            assert f["path"] == f"lake/binance/BTC-USDT/1m/{dataset_id}/{f['month']}.parquet"
            blob = (REPO_LAKE / f["path"]).read_bytes()
            assert hashlib.sha256(blob).hexdigest() == f["sha256"]
            assert len(blob) == f["bytes"]
        assert [c["name"] for c in m["columns"]] == ["ts", "open", "high", "low", "close", "volume"]


def test_month_files_are_deterministic(btc_bars):
    """Same bars -> same bytes: re-serialising a shipped month reproduces its manifest checksum."""
    m = json.loads((REPO_LAKE / "manifests" / "binance_btcusdt_1m.json").read_text())
    june = m["files"][1]
    ts = btc_bars["ts"]
    mask = (ts >= june["first_ts"]) & (ts <= june["last_ts"])
    blob = parquet_bytes({k: v[mask] for k, v in btc_bars.items()})
    assert hashlib.sha256(blob).hexdigest() == june["sha256"]
    assert parquet_bytes({k: v[mask] for k, v in btc_bars.items()}) == blob


def test_default_dataset_and_load_range():
    assert data.DEFAULT_DATASET == "binance_btcusdt_1m"
    day = data.load(start="2025-06-01", end="2025-06-02", lake=REPO_LAKE)
    assert len(day) == 1440
    assert day.ts[0] == 1748736000000 and day.ts[-1] == 1748736000000 + 1439 * 60_000
    assert day.manifest["selection"]["rows"] == 1440
    # epoch-ms bounds and datetimes mean the same
    import datetime as dt

    same = data.load(
        "binance_btcusdt_1m",
        start=dt.datetime(2025, 6, 1, tzinfo=dt.UTC),
        end=1748736000000 + 86_400_000,
        lake=REPO_LAKE,
    )
    np.testing.assert_array_equal(same.bars["close"], day.bars["close"])


def test_load_errors_name_the_problem(tmp_path):
    # The repo's lake may also hold what a user added (the README's `data resample ... --to 1h`): the
    # sentence must name the shipped datasets among the known ones, whatever else is there.
    with pytest.raises(DataError, match=r"no dataset 'nope'.*known datasets: ") as err:
        data.load("nope", lake=REPO_LAKE)
    known = str(err.value).split("known datasets: ", 1)[1].rstrip(")").split(", ")
    assert set(SHIPPED) <= set(known)
    with pytest.raises(UserError, match="invalid dataset id"):
        data.load("../etc", lake=REPO_LAKE)
    with pytest.raises(DataError, match="no bars between"):
        data.load("binance_btcusdt_1m", start="2030-01-01", lake=REPO_LAKE)
    with pytest.raises(UserError, match="must be before"):
        data.load("binance_btcusdt_1m", start="2025-07-01", end="2025-06-01", lake=REPO_LAKE)
    with pytest.raises(UserError, match="invalid start"):
        data.load("binance_btcusdt_1m", start="yesterday", lake=REPO_LAKE)


def test_load_honours_the_env_lake(monkeypatch, small_lake):
    monkeypatch.setenv("TRADELAB_LAKE", str(small_lake))
    assert len(data.load("btc_small")) == 3 * 1440


@pytest.mark.parametrize("n", [0, 1, 2, 3, 7, 10, 99, 130_708])
def test_split_bounds_tile_the_bars(n):
    fractions = (0.7, 0.15, 0.15)
    try:
        parts = [data.split_bounds(n, name, fractions) for name in ("train", "val", "test")]
    except UserError:
        assert n < 7  # too few bars for three non-empty parts
        return
    assert parts[0][0] == 0 and parts[-1][1] == n
    for (_, stop), (start, _) in itertools.pairwise(parts):
        assert stop == start
    assert all(a < b for a, b in parts)
    assert parts[0] == (0, round(n * 0.7))


def test_split_bounds_refuses_bad_input():
    with pytest.raises(UserError, match="invalid split 'dev'"):
        data.split_bounds(100, "dev")
    with pytest.raises(UserError, match="add up to 1"):
        data.split_bounds(100, "train", (0.5, 0.2, 0.2))
    with pytest.raises(UserError, match="three numbers"):
        data.split_bounds(100, "train", (0.5, 0.5))
    with pytest.raises(UserError, match="is empty"):
        data.split_bounds(100, "test", (0.8, 0.2, 0.0))


def test_market_data_splits_by_fraction_and_date():
    market = data.load(lake=REPO_LAKE)
    parts = [market.split(name) for name in ("train", "val", "test")]
    assert sum(map(len, parts)) == len(market)
    np.testing.assert_array_equal(np.concatenate([p.ts for p in parts]), market.ts)
    assert parts[0].ts[-1] < parts[1].ts[0] < parts[1].ts[-1] < parts[2].ts[0]
    assert parts[1].manifest["selection"]["split"] == "val"
    assert "selection" not in market.manifest  # the parent's manifest is not touched
    by_date = [market.split(n, dates=("2025-07-01", "2025-08-01")) for n in ("train", "val", "test")]
    assert by_date[0].ts[-1] == 1751327940000  # 2025-06-30T23:59Z
    assert by_date[1].ts[0] == 1751328000000 and len(by_date[1]) == 31 * 1440
    assert sum(map(len, by_date)) == len(market)
    with pytest.raises(UserError, match="is empty"):
        market.split("test", dates=("2025-07-01", "2026-01-01"))
    with pytest.raises(UserError, match="in order"):
        market.split("val", dates=("2025-08-01", "2025-07-01"))
    sub = market.between("2025-06-01", "2025-06-01T01:00")
    assert len(sub) == 60 and sub.split("train", (0.5, 0.25, 0.25)).ts[-1] == sub.ts[29]


def test_find_gaps_reports_inclusive_missing_ranges():
    ts = np.array([0, 60_000, 240_000, 300_000, 420_000], dtype="int64")
    gaps = find_gaps(ts, 60_000)
    assert [(g["from_ts"], g["to_ts"], g["missing_bars"]) for g in gaps] == [
        (120_000, 180_000, 2),
        (360_000, 360_000, 1),
    ]
    assert gaps[0]["from"] == "1970-01-01T00:02:00Z"


def test_list_shows_shipped_datasets(run_data):
    before = snapshot(REPO_LAKE)
    rc, out, _ = run_data("list", "--lake", REPO_LAKE)
    assert rc == 0
    assert "binance_btcusdt_1m " in out and "130,708" in out and "29,518" in out
    rc, out, _ = run_data("list", "--json", "--lake", REPO_LAKE)
    items = {i["id"]: i for i in json.loads(out)["datasets"]}
    assert items["binance_btcusdt_1m"]["rows"] == 130_708
    assert items["binance_btcusdt_1m"]["status"] == "ok"
    assert items["binance_btcusdt_1m_2025-10"]["first_bar"] == "2025-10-15T00:00:00Z"
    assert data.list_datasets(REPO_LAKE) == list(items.values())
    assert snapshot(REPO_LAKE) == before


def test_list_flags_a_broken_dataset(run_data, small_lake):
    m = json.loads((small_lake / "manifests" / "btc_small.json").read_text())
    (small_lake / m["files"][0]["path"]).write_bytes(b"PAR1 not really")
    rc, out, _ = run_data("list", "--lake", small_lake)
    assert rc == 3 and "checksum mismatch" in out
    rc, out, _ = run_data("list", "--lake", small_lake / "empty")
    assert rc == 0 and "no datasets" in out


def test_validate_passes_on_the_shipped_lake(run_data):
    rc, out, _ = run_data("validate", "--all", "--lake", REPO_LAKE)
    assert rc == 0, out
    assert "binance_btcusdt_1m " in out and "0 with errors" in out
    assert "may not be final (2025-08-18T18:27:00Z)" in out


def test_rewrite_with_gap_and_month_boundary(tmp_path, oct_bars):
    bars = slice_bars(oct_bars, 0, 300)
    keep = np.ones(300, bool)
    keep[100:110] = False
    manifest = put_dataset(tmp_path, "gappy", {k: v[keep] for k, v in bars.items()})
    assert manifest["gaps"] == [
        {
            "from_ts": int(bars["ts"][100]),
            "to_ts": int(bars["ts"][109]),
            "missing_bars": 10,
            "from": "2025-10-15T01:40:00Z",
            "to": "2025-10-15T01:49:00Z",
        }
    ]
    assert manifest["expected_rows"] == 300 and manifest["rows"] == 290
    assert len(data.load("gappy", lake=tmp_path)) == 290
    assert Lake(tmp_path).ids() == ["gappy"]


def test_data_package_does_not_import_jax(scaled):
    code = (
        "import sys, tradelab_jax.data as d;"
        "d.load('binance_btcusdt_1m', start='2025-06-01', end='2025-06-02');"
        "import tradelab_jax.data.cli, tradelab_jax.data.ingest, tradelab_jax.data.resample;"
        "assert 'jax' not in sys.modules, 'jax imported'"
    )
    env_lake = {"TRADELAB_LAKE": str(REPO_LAKE)}
    import os

    subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, **env_lake},
                   timeout=scaled(120))


def test_help_of_every_command(run_data):
    rc, out, _ = run_data("--help")
    assert rc == 0 and "ingest" in out and "trades-to-bars" in out
    for sub in ("ingest", "import", "validate", "list", "resample", "trades-to-bars"):
        rc, out, _ = run_data(sub, "--help")
        assert rc == 0 and "--lake" in out, sub
