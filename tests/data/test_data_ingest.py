"""`tradelab data ingest` against a loopback Binance that serves the real bars, with faults and a kill."""

from __future__ import annotations

import hashlib
import io
import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datalake_helpers import put_dataset, slice_bars, snapshot
from fake_binance import FakeBinance

import tradelab_jax.data as data
from tradelab_jax.data.ingest import IngestSettings, make_exchange, missing_ranges
from tradelab_jax.data.lake import parquet_bytes
from tradelab_jax.data.schema import month_keys, parse_time

REPO = Path(__file__).resolve().parents[2]
T = parse_time
BASE_ARGS = ("--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1m")


def ingest_args(server: FakeBinance, lake: Path, *extra: str) -> list[str]:
    return ["ingest", *BASE_ARGS, "--api-url", server.url, "--lake", str(lake), *extra]


def assert_bars_equal(actual: dict, expected: dict) -> None:
    assert list(actual) == ["ts", "open", "high", "low", "close", "volume"]
    for name in actual:
        assert actual[name].dtype == expected[name].dtype, name
        np.testing.assert_array_equal(actual[name], expected[name], err_msg=name)


def test_faults_retries_forming_candle_and_unconfirmed_bar(run_data, tmp_path, oct_bars):
    """429s (Retry-After), a 500, a 503 and a dropped connection are retried; the result is exact."""
    lake = tmp_path / "lake"
    # The lake already holds the first day of the default dataset; its last bar was still forming when it
    # was downloaded (a different close and volume than Binance's final candle).
    first_day = slice_bars(oct_bars, 0, 1440)
    first_day["close"][-1] = first_day["open"][-1]
    first_day["volume"][-1] /= 3
    put_dataset(lake, "binance_btcusdt_1m", first_day, unconfirmed_ts=[int(first_day["ts"][-1])])
    now = T("2025-10-18T10:30:30Z")
    faults = [("429", 1), ("429", 1), ("500",), ("ok",), ("503",), ("drop",)]
    config = tmp_path / "ingest.yaml"
    with FakeBinance(oct_bars, now, faults=faults) as server:
        config.write_text(
            f"ingest:\n  api_url: {server.url}\n  backoff_s: 0.01\n  max_backoff_s: 2\n"
            "  exchanges:\n    binance:\n      limit: 1000\n"
        )
        rc, out, err = run_data(
            "ingest", *BASE_ARGS, "--since", "2025-10-15T20:00Z", "--until", "2025-10-19", "--config", config,
            "--lake", lake,
        )  # fmt: skip
        assert rc == 0, err
        klines = server.klines_requests()
        paths = {r["path"] for r in server.log}
    assert paths == {"/api/v3/exchangeInfo", "/api/v3/time", "/api/v3/klines"}
    assert [r["status"] for r in klines[:7]] == [429, 429, 500, 200, 503, "dropped", 200]
    # Retry-After: 1 was honoured between the 429s and their retries.
    assert klines[1]["time"] - klines[0]["time"] >= 0.95
    assert klines[2]["time"] - klines[1]["time"] >= 0.95
    # Only the missing bars were asked for: from the unconfirmed 23:59 bar on, not from 20:00.
    assert klines[0]["query"] == {
        "symbol": "BTCUSDT",
        "interval": "1m",
        "limit": "1000",
        "startTime": str(T("2025-10-15T23:59Z")),
    }
    assert "ingested 3,511 new bar(s)" in out and "(5 retried)" in out
    market = data.load("binance_btcusdt_1m", lake=lake)
    # Exactly what Binance had closed by its clock: the 10:30 candle was still forming and is not stored.
    expected = server.closed_bars(T("2025-10-15"), T("2025-10-19"))
    assert expected["ts"][-1] == T("2025-10-18T10:29Z")
    assert_bars_equal(market.bars, expected)
    m = market.manifest
    assert m["unconfirmed_ts"] == [] and m["gaps"] == []
    assert m["provenance"]["sources"][-1]["kind"] == "ingest"
    assert "`tradelab data ingest` fetched closed binance BTC/USDT 1m candles" in m["provenance"]["text"]
    # Month files are byte-identical to a fresh deterministic write of the served bars.
    for f in m["files"]:
        mask = month_keys(expected["ts"]) == np.datetime64(f["month"])
        assert (
            hashlib.sha256(parquet_bytes({k: v[mask] for k, v in expected.items()})).hexdigest()
            == f["sha256"]
        )
    assert run_data("validate", "--lake", lake)[0] == 0


def test_gaps_are_recorded_and_until_defaults_to_now(run_data, tmp_path, oct_bars):
    lake = tmp_path / "lake"
    put_dataset(lake, "binance_btcusdt_1m", slice_bars(oct_bars, 0, 1440))  # 10-15
    hole = (oct_bars["ts"] >= T("2025-10-17T03:00Z")) & (oct_bars["ts"] < T("2025-10-17T04:30Z"))
    served = {k: v[~hole] for k, v in oct_bars.items()}  # the exchange itself lacks 90 minutes
    with FakeBinance(served, T("2025-10-18T00:00:00Z")) as server:
        rc, _out, err = run_data(*ingest_args(server, lake, "--since", "2025-10-17"))
        assert rc == 0, err
    m = data.load(lake=lake).manifest
    assert m["last_bar"] == "2025-10-17T23:59:00Z"
    assert [(g["from"], g["to"], g["missing_bars"]) for g in m["gaps"]] == [
        ("2025-10-16T00:00:00Z", "2025-10-16T23:59:00Z", 1440),
        ("2025-10-17T03:00:00Z", "2025-10-17T04:29:00Z", 90),
    ]
    assert "2 gap(s), 1530 missing bar(s)" in err


def test_rate_limit_is_respected(run_data, tmp_path, oct_bars):
    lake = tmp_path / "lake"
    with FakeBinance(oct_bars, T("2025-11-01")) as server:
        rc, _, err = run_data(
            *ingest_args(server, lake, "--since", "2025-10-20", "--until", "2025-10-20T16:40Z"),
            "--limit", "200", "--rate-limit-ms", "250",
        )  # fmt: skip
        assert rc == 0, err
        times = [r["time"] for r in server.klines_requests()]
    assert len(times) == 5
    # Binance klines cost 0.4 units in ccxt: ccxt starts requests at least 0.4 x 250 ms apart. Arrival
    # times jitter a little on a busy machine, so check the whole span and a loose per-request bound.
    assert times[-1] - times[0] >= 4 * 0.1 - 0.02
    assert min(np.diff(times)) >= 0.05


def test_gives_up_after_max_retries_and_keeps_pages(run_data, tmp_path, oct_bars):
    lake = tmp_path / "lake"
    faults = [("ok",), ("500",), ("502",), ("503",)]
    with FakeBinance(oct_bars, T("2025-11-01"), faults=faults) as server:
        rc, _, err = run_data(
            *ingest_args(server, lake, "--since", "2025-10-20", "--until", "2025-10-21"),
            "--limit", "500", "--max-retries", "2", "--config", _fast_config(tmp_path),
        )  # fmt: skip
    assert rc == 3
    assert "still failed after 2 retries" in err and "re-run the same command to continue" in err
    assert len(data.load(lake=lake)) == 500  # the first page was committed


def _fast_config(tmp_path: Path) -> Path:
    path = tmp_path / "fast.json"
    path.write_text(json.dumps({"backoff_s": 0.01, "max_backoff_s": 0.05}))
    return path


def test_kill_mid_run_then_resume(tmp_path, oct_bars, wait_for, scaled):
    """SIGKILL a real `tradelab data ingest` process mid-way; re-running it finishes with the exact bars."""
    lake = tmp_path / "lake"
    env = {**os.environ, "PYTHONPATH": str(REPO), "TRADELAB_LAKE": str(tmp_path / "unused")}
    # Three pages are answered, the fourth is held: the kill lands mid-run however slow the machine is.
    with FakeBinance(oct_bars, T("2025-11-01"), hold_after=3) as server:
        cmd = [
            sys.executable, "-m", "tradelab_jax.cli", "data",
            *ingest_args(server, lake, "--since", "2025-10-20", "--until", "2025-10-23"),
            "--limit", "500", "--no-progress",
        ]  # fmt: skip
        proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        manifest = lake / "manifests" / "binance_btcusdt_1m.json"

        def waiting_on_page_four() -> bool:
            assert proc.poll() is None, proc.communicate()
            return server.holding > 0 and manifest.exists()

        # The CLI starts (imports, ccxt's markets) and commits three pages: a few seconds on an idle machine.
        wait_for(waiting_on_page_four, "the ingest to ask for its fourth page", 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=scaled(30))  # a SIGKILLed process: the budget only catches a wedged kernel
        assert proc.returncode == -signal.SIGKILL
        server.release()
        first_run = len(server.klines_requests())
        partial = data.load(lake=lake, verify=False)
        assert 0 < len(partial) < 3 * 1440

        # Each re-run: CLI start-up plus a few pages, ~5 s idle; the timeout only catches a hang.
        done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=scaled(120))
        assert done.returncode == 0, done.stderr
        second = server.klines_requests()[first_run:]
        # It resumed where the committed pages ended instead of starting over.
        assert int(second[0]["query"]["startTime"]) > T("2025-10-20")
        assert int(second[0]["query"]["startTime"]) <= int(partial.ts[-1]) + 60_000
        expected = server.closed_bars(T("2025-10-20"), T("2025-10-23"))

        again = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=scaled(120))
        assert again.returncode == 0 and "ingested 0 new bar(s)" in again.stdout
        assert len(server.klines_requests()) == first_run + len(second)  # nothing left to fetch
    # No temporary file of an interrupted atomic write is left behind.
    assert not [p for p in lake.rglob("*.tmp")]
    market = data.load(lake=lake)
    assert len(market) == 3 * 1440  # no duplicate, no missing bar
    assert_bars_equal(market.bars, expected)
    for f in market.manifest["files"]:
        mask = month_keys(expected["ts"]) == np.datetime64(f["month"])
        assert (
            hashlib.sha256(parquet_bytes({k: v[mask] for k, v in expected.items()})).hexdigest()
            == f["sha256"]
        )


def test_user_errors(run_data, tmp_path, oct_bars, small_lake):
    lake = tmp_path / "fresh"
    before = snapshot(small_lake)
    with FakeBinance(oct_bars, T("2025-11-01")) as server:
        cases = [
            (["--symbol", "ETH/BTC"], 2, "has no market 'ETH/BTC'"),
            (["--exchange", "nosuchexchange"], 2, "unknown exchange 'nosuchexchange'"),
            (["--timeframe", "2m"], 2, "has no '2m' candles"),
            (["--since", "2025-10-20", "--until", "2025-10-19"], 2, "must be after --since"),
            (["--since", "2025-12-01", "--until", "2025-12-02"], 2, "nothing to fetch"),
            (["--since", "soon"], 2, "invalid --since 'soon'"),
            (["--api-url", "ftp://example"], 2, "invalid api_url"),
            (["--limit", "0"], 2, "invalid limit 0"),
            (["--config", str(tmp_path / "none.yaml")], 2, "does not exist"),
        ]
        for flags, code, text in cases:
            args = dict(zip(BASE_ARGS[::2], BASE_ARGS[1::2], strict=True))
            args.update({"--since": "2025-10-20", "--until": "2025-10-21", "--api-url": server.url})
            args.update(dict(zip(flags[::2], flags[1::2], strict=True)))
            argv = ["ingest", "--lake", str(lake)] + [x for kv in args.items() for x in kv]
            rc, _, err = run_data(*argv)
            assert rc == code and err.startswith("error: ") and text in err, (flags, err)
        bad = tmp_path / "bad.yaml"
        bad.write_text("api_ur1: http://127.0.0.1:1\n")
        rc, _, err = run_data(*ingest_args(server, lake, "--since", "2025-10-20", "--config", str(bad)))
        assert rc == 2 and "unknown key(s) api_ur1" in err
        # A dataset id that holds another market is refused.
        rc, _, err = run_data(
            *ingest_args(server, small_lake, "--since", "2025-10-20", "--dataset-id", "btc_small"),
            "--symbol", "ETH/USDT",
        )  # fmt: skip
        assert rc == 2 and "not binance ETH/USDT 1m" in err
    assert not lake.exists()
    assert snapshot(small_lake) == before


def test_unreachable_exchange_is_a_clear_error(run_data, tmp_path):
    rc, _, err = run_data(
        "ingest", *BASE_ARGS, "--since", "2025-10-20", "--api-url", "http://127.0.0.1:9",
        "--max-retries", "1", "--config", _fast_config(tmp_path), "--lake", tmp_path / "lake",
    )  # fmt: skip
    assert rc == 3 and "loadMarkets still failed after 1 retries (NetworkError" in err


def test_api_url_rebases_every_rest_url():
    ex = make_exchange("binance", "BTC/USDT", IngestSettings(api_url="http://127.0.0.1:8080/x"))
    assert ex.urls["api"]["public"] == "http://127.0.0.1:8080/x/api/v3"
    assert ex.urls["api"]["fapiPublic"] == "http://127.0.0.1:8080/x/fapi/v1"
    assert ex.options["fetchMarkets"]["types"] == ["spot"]
    assert ex.enableRateLimit is True
    perp = make_exchange("binance", "BTC/USDT:USDT", IngestSettings())
    assert perp.options["fetchMarkets"]["types"] == ["linear"]
    assert perp.urls["api"]["public"].startswith("https://api.binance.com")


def test_missing_ranges():
    have = np.array([0, 60, 120, 300, 360], dtype="int64") * 1000
    assert missing_ranges(have, 0, 480_000, 60_000) == [(180_000, 300_000), (420_000, 480_000)]
    assert missing_ranges(have, 0, 180_000, 60_000) == []
    assert missing_ranges(np.empty(0, "int64"), 60_000, 120_000, 60_000) == [(60_000, 120_000)]


@pytest.mark.parametrize("exchange", ["binance", "kraken", "bybit", "okx"])
def test_any_ccxt_exchange_with_ohlcv_can_be_set_up(exchange):
    ex = make_exchange(exchange, "BTC/USDT", IngestSettings(api_url="http://127.0.0.1:1"))
    assert ex.has["fetchOHLCV"]
    assert "127.0.0.1:1" in json.dumps(ex.urls["api"])


def test_a_manifest_left_behind_by_a_kill_is_rebuilt(run_data, tmp_path, oct_bars):
    """Killed after a month file was renamed into place but before the manifest: the next run repairs it."""
    lake = tmp_path / "lake"
    put_dataset(lake, "binance_btcusdt_1m", slice_bars(oct_bars, 0, 1000), unconfirmed_ts=[])
    month = next((lake / "lake").rglob("2025-10.parquet"))
    month.write_bytes(parquet_bytes(slice_bars(oct_bars, 0, 1500)))  # the newer file, the old manifest
    assert run_data("validate", "--lake", lake)[0] == 3
    before = snapshot(lake)
    with FakeBinance(oct_bars, T("2025-11-01")) as server:
        rc, _, err = run_data(
            *ingest_args(server, lake, "--since", "2025-10-15", "--until", "2025-10-15T25:00")
        )
        assert rc == 2 and snapshot(lake) == before  # a bad --until is refused before anything changes
        rc, _, err = run_data(
            *ingest_args(server, lake, "--since", "2025-10-15", "--until", "2025-10-16T01:00")
        )
        assert rc == 0, err
    assert "did not match its files" in err and "rebuilt it" in err
    assert run_data("validate", "--lake", lake)[0] == 0
    market = data.load(lake=lake)
    assert_bars_equal(market.bars, server.closed_bars(T("2025-10-15"), T("2025-10-16T01:00")))


def test_progress_bar_on_a_terminal(monkeypatch, tmp_path, oct_bars):
    from tradelab_jax.data.ingest import ingest
    from tradelab_jax.data.lake import Lake

    class Terminal(io.StringIO):
        def isatty(self) -> bool:
            return True

    screen = Terminal()
    monkeypatch.setattr(sys, "stderr", screen)
    with FakeBinance(oct_bars, T("2025-11-01")) as server:
        result = ingest(
            exchange="binance",
            symbol="BTC/USDT",
            timeframe="1m",
            since="2025-10-20",
            until="2025-10-20T12:00",
            lake=Lake(tmp_path / "lake"),
            settings=IngestSettings(api_url=server.url, limit=300),
        )
    assert result.new_bars == 720 and result.requests == 5  # loadMarkets, fetchTime, 3 pages
    assert "binance_btcusdt_1m: 100%" in screen.getvalue() and "720/720" in screen.getvalue()
