"""`tradelab data validate`: a corpus of broken lakes, each reported clearly with a non-zero exit."""

from __future__ import annotations

import hashlib
import io
import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from datalake_helpers import snapshot

from tradelab_jax.data.lake import Lake, find_gaps
from tradelab_jax.data.validate import validate_dataset

DS = "btc_small"


def manifest_of(lake: Path) -> dict:
    return json.loads((lake / "manifests" / f"{DS}.json").read_text())


def save_manifest(lake: Path, manifest: dict) -> None:
    (lake / "manifests" / f"{DS}.json").write_text(json.dumps(manifest, indent=2))


def first_file(lake: Path) -> Path:
    return lake / manifest_of(lake)["files"][0]["path"]


def rewrite_first_file(lake: Path, mutate, *, fix_manifest: bool = True) -> None:
    """Replace the first month file by ``mutate(table)``; by default the manifest follows (sha, rows)."""
    path = first_file(lake)
    table = mutate(pq.read_table(path))
    buf = io.BytesIO()
    pq.write_table(table, buf)
    path.write_bytes(buf.getvalue())
    if fix_manifest:
        m = manifest_of(lake)
        m["files"][0].update(
            sha256=hashlib.sha256(buf.getvalue()).hexdigest(), bytes=len(buf.getvalue()), rows=table.num_rows
        )
        save_manifest(lake, m)


def set_column(table: pa.Table, name: str, values) -> pa.Table:
    return table.set_column(table.schema.get_field_index(name), name, pa.array(values))


def with_value(name: str, row: int, value: float):
    def mutate(table: pa.Table) -> pa.Table:
        col = table.column(name).to_numpy().copy()
        col[row] = value
        return set_column(table, name, col)

    return mutate


def validate(run_data, lake: Path, *extra: str) -> tuple[int, str, dict]:
    before = snapshot(lake)
    rc, out, _ = run_data("validate", DS, "--lake", lake, *extra)
    rc_json, out_json, _ = run_data("validate", DS, "--json", "--lake", lake)
    assert rc_json == rc
    assert snapshot(lake) == before  # validation never changes the lake
    return rc, out, json.loads(out_json)["datasets"][0]


def test_clean_dataset_is_ok(run_data, small_lake):
    rc, out, report = validate(run_data, small_lake)
    assert rc == 0, out
    assert report["status"] == "ok" and report["rows"] == 3 * 1440 and report["errors"] == []
    assert "OK" in out and "4,320" in out


CORPUS = {
    # name: (how to break the lake, check, text expected in the message)
    "checksum mismatch": (
        lambda lake: rewrite_first_file(lake, with_value("volume", 5, 1.5), fix_manifest=False),
        "checksum",
        "the manifest records",
    ),
    "missing file": (lambda lake: first_file(lake).unlink(), "files", "does not exist"),
    "manifest pointing nowhere": (
        lambda lake: save_manifest(
            lake,
            {
                **manifest_of(lake),
                "files": [
                    {**f, "path": f["path"].replace("btc_small/", "elsewhere/")}
                    for f in manifest_of(lake)["files"]
                ],
            },
        ),
        "files",
        "lake/binance/BTC-USDT/1m/elsewhere/2025-10.parquet listed in the manifest does not exist",
    ),
    "manifest path outside the lake": (
        lambda lake: save_manifest(
            lake,
            {
                **manifest_of(lake),
                "files": [{**manifest_of(lake)["files"][0], "path": "../../../etc/passwd"}],
            },
        ),
        "files",
        "outside",
    ),
    "truncated parquet": (
        lambda lake: first_file(lake).write_bytes(first_file(lake).read_bytes()[:5000]),
        "schema",
        "is not a readable Parquet file",
    ),
    "not parquet at all": (
        lambda lake: first_file(lake).write_text("ts,open,high,low,close,volume\n1,2,3,4,5,6\n"),
        "schema",
        "is not a readable Parquet file",
    ),
    "empty file": (
        lambda lake: first_file(lake).write_bytes(b""),
        "schema",
        "is not a readable Parquet file",
    ),
    "wrong dtype": (
        lambda lake: rewrite_first_file(
            lake, lambda t: set_column(t, "close", t.column("close").to_numpy().astype("float32"))
        ),
        "schema",
        "column 'close' has type float, expected double",
    ),
    "ts as float": (
        lambda lake: rewrite_first_file(
            lake, lambda t: set_column(t, "ts", t.column("ts").to_numpy().astype("float64"))
        ),
        "schema",
        "column 'ts' has type double, expected int64",
    ),
    "missing column": (
        lambda lake: rewrite_first_file(lake, lambda t: t.drop_columns(["volume"])),
        "schema",
        "has no column 'volume'",
    ),
    "duplicate timestamps": (
        lambda lake: rewrite_first_file(lake, with_value("ts", 10, 1761782400000 + 9 * 60_000)),
        "unique",
        "1 duplicate timestamp(s), first at 2025-10-30T00:09:00Z (data row 11)",
    ),
    "unsorted timestamps": (
        lambda lake: rewrite_first_file(lake, with_value("ts", 10, 1761782400000 + 3 * 60_000)),
        "order",
        "timestamps are not increasing",
    ),
    "off the grid": (
        lambda lake: rewrite_first_file(lake, with_value("ts", 10, 1761782400000 + 10 * 60_000 + 7)),
        "grid",
        "not on the 60s grid",
    ),
    "NaN": (lambda lake: rewrite_first_file(lake, with_value("close", 7, np.nan)), "finite", "is NaN"),
    "inf": (lambda lake: rewrite_first_file(lake, with_value("volume", 7, np.inf)), "finite", "infinite"),
    "high below close": (
        lambda lake: rewrite_first_file(lake, with_value("high", 3, 1.0)),
        "ohlc",
        "high < max(open, close), first at 2025-10-30T00:03:00Z",
    ),
    "low above open": (
        lambda lake: rewrite_first_file(lake, with_value("low", 4, 1e9)),
        "ohlc",
        "low > min(open, close)",
    ),
    "non-positive price": (
        lambda lake: rewrite_first_file(
            lake,
            lambda t: with_value("open", 2, 0.0)(with_value("low", 2, 0.0)(t)),
        ),
        "prices",
        "price <= 0",
    ),
    "negative volume": (
        lambda lake: rewrite_first_file(lake, with_value("volume", 2, -1.0)),
        "volume",
        "volume < 0",
    ),
    "gap not in manifest": (
        lambda lake: rewrite_first_file(lake, lambda t: t.filter(pa.array(np.arange(t.num_rows) != 20))),
        "manifest",
        "the manifest is out of date",
    ),
    "row count wrong": (
        lambda lake: save_manifest(lake, {**manifest_of(lake), "rows": 1}),
        "manifest",
        "manifest field 'rows' is 1, the files give 4320",
    ),
    "invalid manifest json": (
        lambda lake: (lake / "manifests" / f"{DS}.json").write_text("{not json"),
        "manifest",
        "is not valid JSON",
    ),
    "manifest without files": (
        lambda lake: save_manifest(lake, {k: v for k, v in manifest_of(lake).items() if k != "files"}),
        "manifest",
        "lacks the field(s) files",
    ),
    "file in the wrong month": (
        lambda lake: save_manifest(
            lake,
            {**manifest_of(lake), "files": [{**manifest_of(lake)["files"][0], "month": "2025-09"}]},
        ),
        "partition",
        "outside its month 2025-09",
    ),
}


@pytest.mark.parametrize("case", sorted(CORPUS))
def test_broken_lake_is_reported(run_data, small_lake, case):
    breaker, check, text = CORPUS[case]
    breaker(small_lake)
    rc, out, report = validate(run_data, small_lake)
    assert rc == 3, out
    assert report["status"] == "error"
    messages = [e["message"] for e in report["errors"] if e["check"] == check]
    assert any(text in m for m in messages), (case, report["errors"])
    assert "ERROR" in out and text in out


def test_recorded_gap_is_a_warning_not_an_error(run_data, small_lake):
    rewrite_first_file(
        small_lake, lambda t: t.filter(pa.array(~np.isin(np.arange(t.num_rows), [20, 21, 22])))
    )
    m = manifest_of(small_lake)
    bars = Lake(small_lake)
    ts = np.concatenate([pq.read_table(small_lake / f["path"]).column("ts").to_numpy() for f in m["files"]])
    m.update(gaps=find_gaps(ts, 60_000), rows=len(ts))
    save_manifest(small_lake, m)
    rc, out, report = validate(run_data, small_lake)
    assert bars.ids() == [DS]
    assert rc == 0, out
    assert report["status"] == "warning"
    assert report["gaps"] == [
        {
            "from_ts": 1761783600000,
            "to_ts": 1761783720000,
            "missing_bars": 3,
            "from": "2025-10-30T00:20:00Z",
            "to": "2025-10-30T00:22:00Z",
        }
    ]
    assert "1 gap(s), 3 missing bar(s): 2025-10-30T00:20:00Z → 2025-10-30T00:22:00Z (3)" in out


def test_stray_file_is_a_warning(run_data, small_lake):
    (first_file(small_lake).parent / "notes.txt").write_text("hello")
    rc, _out, report = validate(run_data, small_lake)
    assert rc == 0
    assert any("notes.txt" in w["message"] for w in report["warnings"])


def test_validate_all_and_unknown(run_data, small_lake):
    rc, out, _ = run_data("validate", "--lake", small_lake)
    assert rc == 0 and "1 dataset(s) checked, 0 with errors" in out
    rc, out, _ = run_data("validate", "nope", "--lake", small_lake)
    assert rc == 3 and "no dataset 'nope'" in out
    rc, _, err = run_data("validate", "--lake", small_lake / "nothing")
    assert rc == 2 and err.startswith("error: lake") and "has no datasets" in err


def test_one_bad_dataset_fails_validate_all(run_data, small_lake):
    first_file(small_lake).unlink()
    rc, out, _ = run_data("validate", "--all", "--lake", small_lake)
    assert rc == 3 and "1 with errors" in out
    assert validate_dataset(Lake(small_lake), DS).ok is False
