"""`tradelab data ingest` in pieces, without a network: the pure plan, the state's commit, the paging loop."""

from __future__ import annotations

import hashlib
from pathlib import Path

import numpy as np
import pytest
from datalake_helpers import put_dataset, slice_bars

import tradelab_jax.data as data
import tradelab_jax.io as tio
from tradelab_jax.data.ingest import IngestState, fetch_holes, manifest_matches, plan_ingest
from tradelab_jax.data.lake import Lake, parquet_bytes
from tradelab_jax.data.schema import parse_time
from tradelab_jax.errors import UserError

T = parse_time
TF = 60_000
DATASET = "binance_btcusdt_1m"
WHAT = {"dataset_id": DATASET, "exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1m", "tf_ms": TF}


def make_plan(**kw):
    args = {
        **WHAT,
        "until_ms": None,
        "stored_ts": None,
        "manifest": None,
        "api_url": None,
        "ccxt_version": "9.9.9",
        **kw,
    }
    return plan_ingest(**args)


def brute_holes(stored: set[int], since: int, end: int) -> list[tuple[int, int]]:
    """Runs of consecutive grid bars of ``[since, end)`` not in ``stored``, found one bar at a time."""
    runs: list[list[int]] = []
    for t in range(since, end, TF):
        if t in stored:
            continue
        if runs and runs[-1][1] == t:
            runs[-1][1] = t + TF
        else:
            runs.append([t, t + TF])
    return [(a, b) for a, b in runs]


# --------------------------------------------------------------------------------------------- plan


def test_plan_fetches_what_is_missing_or_unconfirmed_up_to_the_last_closed_candle(oct_bars):
    stored = slice_bars(oct_bars, 0, 120)  # 2025-10-15 00:00 → 01:59
    lost = (stored["ts"] >= T("2025-10-15T00:30Z")) & (stored["ts"] < T("2025-10-15T00:40Z"))
    stored_ts = stored["ts"][~lost]
    unconfirmed = T("2025-10-15T01:59Z")
    manifest = {"unconfirmed_ts": [unconfirmed]}
    since = T("2025-10-14T23:50Z")
    plan = make_plan(
        since_ms=since,
        until_ms=T("2025-10-15T02:10:30Z"),  # off the grid: the 02:10 bar opens before it
        now_ms=T("2025-10-15T02:20:15Z"),
        stored_ts=stored_ts,
        manifest=manifest,
    )
    assert plan.end_ms == T("2025-10-15T02:11Z")
    expected = brute_holes(set(stored_ts.tolist()) - {unconfirmed}, since, plan.end_ms)
    assert plan.holes == expected
    assert expected == [
        (since, T("2025-10-15T00:00Z")),
        (T("2025-10-15T00:30Z"), T("2025-10-15T00:40Z")),
        (unconfirmed, plan.end_ms),
    ]
    assert plan.total == sum((b - a) // TF for a, b in expected) == 10 + 10 + 12
    assert plan.unconfirmed == [unconfirmed]

    # The exchange's clock caps the end: the candle that contains "now" is still forming.
    early = make_plan(
        since_ms=since, until_ms=T("2025-10-15T02:10:30Z"), now_ms=T("2025-10-15T02:05:30Z"),
        stored_ts=stored_ts, manifest=manifest,
    )  # fmt: skip
    assert early.end_ms == T("2025-10-15T02:05Z")
    assert early.holes[-1] == (unconfirmed, T("2025-10-15T02:05Z"))
    no_until = make_plan(since_ms=since, now_ms=T("2025-10-15T02:20:15Z"), stored_ts=stored_ts)
    assert no_until.end_ms == T("2025-10-15T02:20Z")
    assert no_until.holes == brute_holes(set(stored_ts.tolist()), since, no_until.end_ms)


def test_plan_refuses_a_range_with_no_closed_candle():
    with pytest.raises(UserError) as err:
        make_plan(since_ms=T("2025-10-15T02:20Z"), now_ms=T("2025-10-15T02:20:15Z"))
    assert str(err.value) == (
        "nothing to fetch: no closed 1m candle between 2025-10-15T02:20:00Z and 2025-10-15T02:20:00Z "
        "(exchange time 2025-10-15T02:20:15Z)"
    )


def test_plan_records_each_run_once_in_the_provenance():
    times = {"since_ms": T("2025-10-20"), "until_ms": T("2025-10-21"), "now_ms": T("2025-11-01")}
    first = make_plan(**times, api_url="http://127.0.0.1:8080")
    line = (
        "- `tradelab data ingest` fetched closed binance BTC/USDT 1m candles for 2025-10-20T00:00:00Z → "
        "2025-10-21T00:00:00Z (exclusive) with ccxt 9.9.9 fetchOHLCV from http://127.0.0.1:8080.\n"
    )
    assert first.provenance_text.startswith(f"# {DATASET}\n\nbinance BTC/USDT 1m candles fetched")
    assert first.provenance_text.endswith("\n\n## Ingested with tradelab\n\n" + line)
    assert first.sources == [
        {
            "kind": "ingest",
            "exchange": "binance",
            "api_url": "http://127.0.0.1:8080",
            "ccxt": "9.9.9",
            "since": "2025-10-20T00:00:00Z",
            "until": "2025-10-21T00:00:00Z",
        }
    ]
    stored = {"provenance": {"text": first.provenance_text, "sources": first.sources}}
    again = make_plan(**times, api_url="http://127.0.0.1:8080", manifest=stored)
    assert (again.provenance_text, again.sources) == (first.provenance_text, first.sources)
    later = make_plan(**{**times, "since_ms": T("2025-10-22"), "until_ms": T("2025-10-23")}, manifest=stored)
    assert later.provenance_text.count("## Ingested with tradelab") == 1
    assert later.provenance_text.startswith(first.provenance_text)
    assert later.provenance_text.count("- `tradelab data ingest` fetched") == 2
    assert later.provenance_text.endswith("with ccxt 9.9.9 fetchOHLCV.\n")  # no api_url this time
    assert later.sources[0] == first.sources[0] and len(later.sources) == 2
    assert first.sources == stored["provenance"]["sources"] and len(first.sources) == 1  # not mutated


# --------------------------------------------------------------------------------------------- state


def start_state(lake_root: Path, stored: dict, *, now: str, unconfirmed: list[int] | None = None):
    manifest = put_dataset(lake_root, DATASET, stored, unconfirmed_ts=unconfirmed or [])
    lake = Lake(lake_root)
    plan = make_plan(
        since_ms=int(stored["ts"][0]), now_ms=T(now), stored_ts=stored["ts"], manifest=manifest
    )
    return lake, IngestState.start(lake, plan, {k: v.copy() for k, v in stored.items()}, manifest)


def month_file(lake_root: Path, month: str) -> Path:
    return next((lake_root / "lake").rglob(f"{month}.parquet"))


def test_commit_deduplicates_a_page_that_overlaps_the_stored_tail(tmp_path, oct_bars):
    start = int(np.searchsorted(oct_bars["ts"], T("2025-10-31T22:00Z")))
    stored = slice_bars(oct_bars, start, start + 180)  # 22:00 → 00:59, across the month boundary
    stored["close"][-1] = stored["open"][-1]  # the last bar was still forming when it was stored
    root = tmp_path / "lake"
    _, state = start_state(root, stored, now="2025-11-02", unconfirmed=[int(stored["ts"][-1])])
    october = month_file(root, "2025-10")
    october_bytes, october_inode = october.read_bytes(), october.stat().st_ino

    page = slice_bars(oct_bars, start + 175, start + 190)  # 5 stored bars again (final values), 10 new
    state.commit(page)

    expected = {k: np.concatenate([stored[k][:175], page[k]]) for k in stored}
    market = data.load(DATASET, lake=root)  # checks every file against the manifest's sha256
    assert len(market) == 190 and len(np.unique(market.bars["ts"])) == 190
    for k in expected:
        np.testing.assert_array_equal(market.bars[k], expected[k], err_msg=k)
        np.testing.assert_array_equal(state.bars[k], expected[k], err_msg=k)
    assert market.bars["close"][179] == oct_bars["close"][start + 179]  # the fetched candle replaced it
    assert state.manifest == market.manifest
    assert market.manifest["unconfirmed_ts"] == [] and state.unconfirmed == []
    assert market.manifest["gaps"] == []
    assert state.new_bars == 15
    # October was not in the page: its file was kept, not rewritten.
    assert october.stat().st_ino == october_inode and october.read_bytes() == october_bytes
    november = month_file(root, "2025-11")
    assert hashlib.sha256(november.read_bytes()).hexdigest() == hashlib.sha256(
        parquet_bytes({k: v[120:] for k, v in expected.items()})
    ).hexdigest()


def test_commit_reports_a_gap(tmp_path, oct_bars):
    stored = slice_bars(oct_bars, 0, 100)
    root = tmp_path / "lake"
    _, state = start_state(root, stored, now="2025-11-01")
    state.commit(slice_bars(oct_bars, 130, 160))  # the exchange had nothing for bars 100-129
    gaps = data.load(DATASET, lake=root).manifest["gaps"]
    assert [(g["from_ts"], g["to_ts"], g["missing_bars"]) for g in gaps] == [
        (int(oct_bars["ts"][100]), int(oct_bars["ts"][129]), 30)
    ]
    assert state.manifest["gaps"] == gaps and state.manifest["rows"] == 130


def test_a_crash_while_writing_the_manifest_leaves_the_old_version_whole_and_a_rebuild_works(
    tmp_path, oct_bars, monkeypatch
):
    stored = slice_bars(oct_bars, 0, 100)
    root = tmp_path / "lake"
    lake, state = start_state(root, stored, now="2025-11-01")
    manifest_path = lake.manifest_path(DATASET)
    before = manifest_path.read_bytes()
    real_replace = tio.os.replace

    def crash_on_manifest(src, dst):
        if Path(dst) == manifest_path:
            raise KeyboardInterrupt  # killed after the month file was renamed into place
        return real_replace(src, dst)

    monkeypatch.setattr(tio.os, "replace", crash_on_manifest)
    with pytest.raises(KeyboardInterrupt):
        state.commit(slice_bars(oct_bars, 100, 150))
    monkeypatch.setattr(tio.os, "replace", real_replace)

    assert manifest_path.read_bytes() == before  # never half-written
    assert not list(root.rglob("*.tmp"))
    old = lake.read_manifest(DATASET)
    # The changed month was written beside the file the manifest reads, so the old version is still whole.
    assert manifest_matches(lake, old, lake.dataset_rel_dir("binance", "BTC/USDT", "1m", DATASET))
    np.testing.assert_array_equal(data.load(DATASET, lake=root).bars["close"], stored["close"])
    # A rebuild from the month files (the checkpoint) still gives a whole dataset, leaving no staged file.
    merged = slice_bars(oct_bars, 0, 150)
    again = IngestState.start(lake, state.plan, merged, old)
    again.rebuild_manifest()
    market = data.load(DATASET, lake=root)
    assert len(market) == 150 and again.manifest == market.manifest
    np.testing.assert_array_equal(market.bars["close"], merged["close"])
    assert not [p for p in root.rglob(".*.parquet")]


# --------------------------------------------------------------------------------------------- paging loop


class Bar:
    def __init__(self) -> None:
        self.done = 0

    def update(self, n: int) -> None:
        self.done += n


def rows_of(bars: dict, mask: np.ndarray, limit: int) -> list[list]:
    idx = np.flatnonzero(mask)[:limit]
    return [[int(bars["ts"][i]), *(float(bars[k][i]) for k in ("open", "high", "low", "close", "volume"))]
            for i in idx]  # fmt: skip


def test_paging_loop_pages_through_holes_and_past_a_gap_at_the_exchange(tmp_path, oct_bars):
    stored = slice_bars(oct_bars, 0, 60)
    root = tmp_path / "lake"
    put_dataset(root, DATASET, stored)
    lake = Lake(root)
    served = slice_bars(oct_bars, 0, 400)
    lacks = (served["ts"] >= served["ts"][200]) & (served["ts"] < served["ts"][250])  # an outage
    served = {k: v[~lacks] for k, v in served.items()}
    plan = make_plan(
        since_ms=int(oct_bars["ts"][0]), until_ms=int(oct_bars["ts"][300]), now_ms=T("2025-11-01"),
        stored_ts=stored["ts"], manifest=lake.read_manifest(DATASET),
    )  # fmt: skip
    asked: list[int] = []

    def fetch(cursor: int) -> list[list]:  # ccxt's `since` semantics: the first bars at or after it
        asked.append(cursor)
        return rows_of(served, served["ts"] >= cursor, 100)

    state = IngestState.start(lake, plan, stored, lake.read_manifest(DATASET))
    bar, warnings = Bar(), []
    fetch_holes(plan, fetch, state, bar, warnings)
    ts = oct_bars["ts"]
    # 100 bars a page from the end of what is stored; the second page holds bars on both sides of the
    # outage and reaches the end of the hole, so the outage costs no request.
    assert asked == [int(ts[60]), int(ts[160])]
    assert bar.done == plan.total == 240 and warnings == []
    market = data.load(DATASET, lake=root)
    expected = {k: v[served["ts"] < ts[300]] for k, v in served.items()}
    np.testing.assert_array_equal(market.bars["ts"], expected["ts"])
    assert [g["missing_bars"] for g in market.manifest["gaps"]] == [50]
    assert state.new_bars == 240 - 50


def test_paging_loop_warns_when_the_exchange_ignores_the_start_time(tmp_path, oct_bars):
    root = tmp_path / "lake"
    put_dataset(root, DATASET, slice_bars(oct_bars, 0, 60))
    lake = Lake(root)
    manifest = lake.read_manifest(DATASET)
    plan = make_plan(
        since_ms=int(oct_bars["ts"][0]), until_ms=int(oct_bars["ts"][120]), now_ms=T("2025-11-01"),
        stored_ts=oct_bars["ts"][:60], manifest=manifest,
    )  # fmt: skip
    state = IngestState.start(lake, plan, slice_bars(oct_bars, 0, 60), manifest)
    bar, warnings = Bar(), []
    fetch_holes(plan, lambda cursor: rows_of(oct_bars, oct_bars["ts"] >= 0, 30), state, bar, warnings)
    assert warnings == [
        "binance returned only bars before 2025-10-15T01:00:00Z when asked from it; "
        "it may not support paging back in time"
    ]
    assert bar.done == plan.total == 60 and state.new_bars == 0 and state.manifest == manifest
