"""`tradelab data import`: common file shapes come in exactly; broken files are refused, lake untouched."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from datalake_helpers import BTC_5M, slice_bars, snapshot

import tradelab_jax.data as data

N = 2000


@pytest.fixture
def bars(oct_bars) -> dict[str, np.ndarray]:
    return slice_bars(oct_bars, 0, N)


def frame(bars: dict[str, np.ndarray]) -> pd.DataFrame:
    return pd.DataFrame(bars)


def write_csv(path: Path, df: pd.DataFrame) -> Path:
    df.to_csv(path, index=False)
    return path


def write_parquet(path: Path, df: pd.DataFrame) -> Path:
    df.to_parquet(path, index=False)
    return path


def imp(run_data, path, lake, *extra):
    return run_data(
        "import",
        path,
        "--exchange",
        "binance",
        "--symbol",
        "BTC/USDT",
        "--timeframe",
        "1m",
        "--lake",
        lake,
        *extra,
    )


def assert_same_bars(lake: Path, dataset_id: str, bars: dict[str, np.ndarray]) -> None:
    market = data.load(dataset_id, lake=lake)
    for name in ("ts", "open", "high", "low", "close", "volume"):
        np.testing.assert_array_equal(market.bars[name], bars[name], err_msg=name)


# ----------------------------------------------------------------------------------------- good files


def test_csv_in_ms_comes_in_exactly(run_data, tmp_path, bars):
    lake = tmp_path / "lake"
    rc, out, err = imp(run_data, write_csv(tmp_path / "bars.csv", frame(bars)), lake)
    assert rc == 0, err
    assert "binance_btcusdt_1m: 2,000 bars 2025-10-15T00:00:00Z" in out  # the derived default id
    assert_same_bars(lake, "binance_btcusdt_1m", bars)
    m = json.loads((lake / "manifests" / "binance_btcusdt_1m.json").read_text())
    assert m["provenance"]["sources"][0]["file"] == "bars.csv"
    assert "Imported with `tradelab data import` from `bars.csv`" in m["provenance"]["text"]
    rc, _, _ = run_data("validate", "--lake", lake)
    assert rc == 0


def test_csv_and_parquet_give_identical_bytes(run_data, tmp_path, bars):
    lake = tmp_path / "lake"
    imp(run_data, write_csv(tmp_path / "a.csv", frame(bars)), lake, "--dataset-id", "a")
    imp(run_data, write_parquet(tmp_path / "b.parquet", frame(bars)), lake, "--dataset-id", "b")
    sha = {i: [f["sha256"] for f in data.load(i, lake=lake).manifest["files"]] for i in ("a", "b")}
    assert sha["a"] == sha["b"]


@pytest.mark.parametrize(
    "name,convert",
    [
        ("timestamp", lambda ts: ts // 1000),  # seconds
        ("open_time", lambda ts: ts * 1000),  # microseconds (Binance's 2025 dumps)
        ("date", lambda ts: pd.to_datetime(ts, unit="ms", utc=True).strftime("%Y-%m-%dT%H:%M:%SZ")),
        ("Date", lambda ts: pd.to_datetime(ts, unit="ms").strftime("%Y-%m-%d %H:%M:%S")),  # naive = UTC
        ("time", lambda ts: ts * 1_000_000),  # nanoseconds
    ],
)
def test_time_columns_and_units(run_data, tmp_path, bars, name, convert):
    df = frame(bars).rename(columns={"ts": name})
    df[name] = convert(bars["ts"])
    df = df.rename(columns={"open": "Open", "close": "CLOSE"})
    lake = tmp_path / "lake"
    rc, _, err = imp(run_data, write_csv(tmp_path / "x.csv", df), lake)
    assert rc == 0, err
    assert_same_bars(lake, "binance_btcusdt_1m", bars)


def test_parquet_with_datetime_column(run_data, tmp_path, bars):
    df = frame(bars)
    df.insert(0, "date", pd.to_datetime(df.pop("ts"), unit="ms", utc=True))
    lake = tmp_path / "lake"
    rc, _, err = imp(run_data, write_parquet(tmp_path / "x.parquet", df), lake)
    assert rc == 0, err
    assert_same_bars(lake, "binance_btcusdt_1m", bars)


def test_headerless_binance_klines_keep_taker_volume(run_data, tmp_path, bars):
    ts = bars["ts"] * 1000  # microseconds, as in data.binance.vision since 2025
    taker_buy = np.round(bars["volume"] * 0.4, 5)
    rows = np.column_stack(
        [
            ts,
            bars["open"],
            bars["high"],
            bars["low"],
            bars["close"],
            bars["volume"],
            ts + 59_999_999,
            bars["volume"] * bars["close"],
            np.full(N, 42),
            taker_buy,
            taker_buy * bars["close"],
            np.zeros(N),
        ]
    )
    path = tmp_path / "BTCUSDT-1m-2025-10.csv"
    pd.DataFrame(rows).astype({0: "int64", 6: "int64", 8: "int64", 11: "int64"}).to_csv(
        path, header=False, index=False
    )
    lake = tmp_path / "lake"
    rc, _, err = imp(run_data, path, lake, "--dataset-id", "klines")
    assert rc == 0, err
    assert "dropped column(s) close_time, ignore" in err
    market = data.load("klines", lake=lake)
    assert market.columns == (
        "ts",
        "open",
        "high",
        "low",
        "close",
        "volume",
        "quote_volume",
        "trades",
        "taker_buy_volume",
        "taker_buy_quote_volume",
        "taker_sell_volume",
    )
    np.testing.assert_array_equal(market.bars["taker_buy_volume"], taker_buy)
    np.testing.assert_allclose(market.bars["taker_sell_volume"], bars["volume"] - taker_buy)
    np.testing.assert_array_equal(market.bars["close"], bars["close"])


def test_gap_is_imported_and_reported(run_data, tmp_path, bars):
    keep = np.ones(N, bool)
    keep[500:530] = False
    lake = tmp_path / "lake"
    rc, _, err = imp(run_data, write_csv(tmp_path / "g.csv", frame(bars)[keep]), lake)
    assert rc == 0
    assert "warning: 1 gap(s), 30 missing bar(s): 2025-10-15T08:20:00Z → 2025-10-15T08:49:00Z (30)" in err
    m = data.load(lake=lake).manifest
    assert m["gaps"][0]["missing_bars"] == 30 and m["rows"] == N - 30 and m["expected_rows"] == N


def test_unsorted_file_imports_with_sort(run_data, tmp_path, bars):
    df = frame(bars).sample(frac=1.0, random_state=0)
    lake = tmp_path / "lake"
    rc, _, err = imp(run_data, write_csv(tmp_path / "u.csv", df), lake, "--sort")
    assert rc == 0, err
    assert_same_bars(lake, "binance_btcusdt_1m", bars)


def test_existing_dataset_needs_replace(run_data, tmp_path, bars):
    lake = tmp_path / "lake"
    path = write_csv(tmp_path / "a.csv", frame(bars))
    assert imp(run_data, path, lake)[0] == 0
    before = snapshot(lake)
    rc, _, err = imp(run_data, path, lake)
    assert rc == 2 and "already exists" in err and "--replace" in err
    assert snapshot(lake) == before
    shorter = write_csv(tmp_path / "b.csv", frame(slice_bars(bars, 0, 100)))
    rc, _, _ = imp(run_data, shorter, lake, "--replace")
    assert rc == 0 and len(data.load(lake=lake)) == 100


def test_replace_into_other_month_removes_old_files(run_data, tmp_path, oct_bars):
    lake = tmp_path / "lake"
    imp(run_data, write_csv(tmp_path / "oct.csv", frame(slice_bars(oct_bars, 0, 100))), lake)
    nov = slice_bars(oct_bars, len(oct_bars["ts"]) - 100, len(oct_bars["ts"]))
    assert imp(run_data, write_csv(tmp_path / "nov.csv", frame(nov)), lake, "--replace")[0] == 0
    files = sorted(p.name for p in (lake / "lake").rglob("*.parquet"))
    assert files == ["2025-11.parquet"]
    assert run_data("validate", "--lake", lake)[0] == 0


# ----------------------------------------------------------------------------------------- broken files


def _csv(df_fn):
    def make(tmp: Path, bars) -> Path:
        return write_csv(tmp / "in.csv", df_fn(frame(bars)))

    return make


def _edit(column: str, row: int, value):
    def fn(df: pd.DataFrame) -> pd.DataFrame:
        df = df.copy()
        if isinstance(value, str):
            df[column] = df[column].astype(object)
        df.loc[row, column] = value
        return df

    return fn


def _raw(name: str, content: bytes):
    def make(tmp: Path, bars) -> Path:
        path = tmp / name
        path.write_bytes(content)
        return path

    return make


def _truncated_parquet(tmp: Path, bars) -> Path:
    path = write_parquet(tmp / "in.parquet", frame(bars))
    path.write_bytes(path.read_bytes()[:3000])
    return path


def _parquet_string_close(tmp: Path, bars) -> Path:
    df = frame(bars)
    df["close"] = df["close"].astype(str)
    df.loc[3, "close"] = "n/a"
    return write_parquet(tmp / "in.parquet", df)


def _five_minute(tmp: Path, bars) -> Path:
    df = pd.read_parquet(BTC_5M).iloc[:500]
    return write_csv(tmp / "in.csv", df)


BROKEN = {
    # name: (make the file, text expected in the error)
    "duplicate timestamps": (_csv(_edit("ts", 10, 1760486940000)), "1 duplicate timestamp(s), first at"),
    "unsorted timestamps": (_csv(lambda df: df.iloc[::-1]),
                            "nothing was imported; pass --sort to sort the rows by time"),
    "NaN close": (_csv(_edit("close", 5, np.nan)), "column 'close' has 1 NaN/infinite value(s)"),
    "inf volume": (_csv(_edit("volume", 5, np.inf)), "column 'volume' has 1 NaN/infinite value(s)"),
    "high below low": (_csv(_edit("high", 5, 1.0)), "bar(s) have high < max(open, close)"),
    "negative volume": (_csv(_edit("volume", 5, -2.0)), "bar(s) have volume < 0"),
    "zero price": (
        _csv(lambda df: _edit("low", 5, 0.0)(_edit("open", 5, 0.0)(df))),
        "bar(s) have a price <= 0",
    ),
    "text in a price column": (
        _csv(_edit("close", 7, "abc")),
        "column 'close' has the non-numeric value 'abc' at data row 8",
    ),
    "text prices in parquet": (
        _parquet_string_close,
        "column 'close' has the non-numeric value 'n/a' at data row 4",
    ),
    "off-grid times": (
        _csv(lambda df: df.assign(ts=df.ts + 7)),
        "timestamp(s) are not on the 60s grid",
    ),
    "5m data said to be 1m": (_five_minute, "usually 300s apart, not 60s"),
    "bad time text": (
        _csv(lambda df: df.assign(ts=["yesterday"] * len(df))),
        "value 'yesterday' is not a time",
    ),
    "empty time cell": (_csv(_edit("ts", 3, np.nan)), "empty time at data row 4"),
    "no time column": (_csv(lambda df: df.drop(columns="ts")), "has no time column"),
    "no volume column": (_csv(lambda df: df.drop(columns="volume")), "has no 'volume' column"),
    "truncated parquet": (_truncated_parquet, "is not a readable Parquet file; it may be truncated"),
    "not parquet": (
        _raw("in.parquet", b"ts,open\n1,2\n"),
        "is not a Parquet file (it does not start with PAR1)",
    ),
    "empty file": (_raw("in.csv", b""), "is empty (0 bytes)"),
    "header only": (_raw("in.csv", b"ts,open,high,low,close,volume\n"), "has a header but no rows"),
    "binary junk": (_raw("in.csv", bytes(range(256)) * 4), "is neither Parquet nor UTF-8 CSV text"),
    "headerless odd columns": (_raw("in.csv", b"1,2,3\n4,5,6\n"), "has no header and 3 columns"),
    "missing file": (lambda tmp, bars: tmp / "does-not-exist.csv", "does not exist"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_broken_input_is_refused_and_lake_untouched(run_data, tmp_path, small_lake, bars, case):
    make, text = BROKEN[case]
    path = make(tmp_path, bars)
    before = snapshot(small_lake)
    # Try to replace an existing dataset: a refused file must leave it exactly as it was.
    rc, out, err = imp(run_data, path, small_lake, "--dataset-id", "btc_small", "--replace")
    assert rc in (2, 3), (case, out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert text in err, err
    assert str(path.name) in err
    assert snapshot(small_lake) == before
    assert data.load("btc_small", lake=small_lake).manifest["rows"] == 3 * 1440


def test_bad_flags_are_refused(run_data, tmp_path, bars):
    path = write_csv(tmp_path / "a.csv", frame(bars))
    lake = tmp_path / "lake"
    good = {"--exchange": "binance", "--symbol": "BTC/USDT", "--timeframe": "1m"}
    cases = [
        ({"--timeframe": "7x"}, "invalid timeframe '7x'"),
        ({"--symbol": "BTCUSDT"}, "invalid symbol 'BTCUSDT'"),
        ({"--exchange": "Bin ance"}, "invalid exchange"),
        ({"--dataset-id": "../escape"}, "invalid dataset id"),
        ({"--provenance": str(tmp_path / "nope.md")}, "provenance file"),
    ]
    for flags, text in cases:
        argv = ["import", path, "--lake", lake]
        for key, value in {**good, **flags}.items():
            argv += [key, value]
        rc, _, err = run_data(*argv)
        assert rc == 2 and text in err, (flags, err)
    assert not lake.exists()
