"""`tradelab data stream` against a loopback Binance (websocket + REST) fed from real bars, with faults.

ccxt.pro's own Binance client talks to tests/stream/ws_server.py; the REST fill is ccxt's REST client
against the ingest tests' FakeBinance. The oracle for the month files is independent of the streamer: the
deterministic Parquet bytes of the served bars, and the files `data ingest` writes for the same range.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
from ws_server import FakeBinanceREST, FakeBinanceWS

from tradelab_jax.data.ingest import IngestSettings, ingest
from tradelab_jax.data.journal import journal_path
from tradelab_jax.data.lake import Lake, parquet_bytes, take
from tradelab_jax.data.schema import month_keys
from tradelab_jax.data.stream import StreamConfig, run
from tradelab_jax.data.validate import validate_dataset

REPO = Path(__file__).resolve().parents[2]
IDS = {"BTC/USDT": "binance_btcusdt_1m", "ETH/USDT": "binance_ethusdt_1m"}


def month_files(lake: Path, dataset_id: str) -> dict[str, bytes]:
    lk = Lake(lake)
    return {f["month"]: lk.file_path(f["path"]).read_bytes() for f in lk.read_manifest(dataset_id)["files"]}


def expected_files(bars: dict[str, np.ndarray]) -> dict[str, bytes]:
    keys = month_keys(bars["ts"])
    return {str(m): parquet_bytes(take(bars, keys == m)) for m in np.unique(keys)}


def assert_lake_is(lake: Path, dataset_id: str, bars: dict[str, np.ndarray]) -> None:
    got = month_files(lake, dataset_id)
    want = expected_files(bars)
    assert sorted(got) == sorted(want)
    for month in want:
        assert got[month] == want[month], f"{dataset_id} {month} differs from the served bars"
    report = validate_dataset(Lake(lake), dataset_id)
    assert report.ok, report.findings
    m = Lake(lake).read_manifest(dataset_id)
    assert m["rows"] == len(bars["ts"]) and m["gaps"] == []


def test_faults_several_symbols(tmp_path, market, wait_for):
    """Forming-candle updates, duplicates, reordering, a REST-only hole, a drop, a stall of 2x the timeout and
    an exchange error, for BTC/USDT and ETH/USDT in one process: the lake ends byte-identical to the served
    bars, each bar was handed to on_closed once, in order, after it was journaled."""
    lake = tmp_path / "lake"
    start, end = 40, 300  # the websocket plays candles 40..299 and opens 300; REST alone has 0..39
    stall_s = 0.5
    faults = [
        ("dup", 45), ("swap", 46), ("late", 47), ("dup", 60), ("swap", 61),
        ("hole", 70, 5),  # candles 70..74 never come over the websocket
        ("drop", 100, 6),  # cut mid-candle 100; the market moves on to 106 while we are away
        ("stall", 150, 2 * stall_s, 4),  # silent for 2x the timeout; market moves on to 154
        ("error", 200),  # exchange error 503 (ccxt resets the connection)
        ("swap", 230), ("late", 231), ("dup", 232), ("late", 233), ("early", 250),
    ]  # fmt: skip
    seen: dict[str, list[list]] = {s: [] for s in market}
    not_durable: list[int] = []
    stop = threading.Event()
    last_ts = int(market["BTC/USDT"]["ts"][end - 1])

    corrections: dict[str, list[list]] = {s: [] for s in market}

    def on_corrected(symbol: str, bars: list[list]) -> None:
        corrections[symbol].extend(bars)

    def on_closed(symbol: str, bars: list[list]) -> None:
        text = journal_path(Lake(lake), IDS[symbol]).read_text()
        not_durable.extend(b[0] for b in bars if f'"ts": {b[0]},' not in text)
        seen[symbol].extend(bars)
        if all(s and s[-1][0] == last_ts for s in seen.values()):
            stop.set()

    with (
        FakeBinanceREST(market) as rest,
        FakeBinanceWS(market, start, end, rest=rest, faults=faults, interval_s=0.003) as ws,
    ):
        cfg = StreamConfig(
            symbols=("BTC/USDT", "ETH/USDT"), lake=lake, ws_url=ws.url, rest_url=rest.url, stall_s=stall_s,
            backoff_s=0.05, max_backoff_s=0.5, since=int(market["BTC/USDT"]["ts"][0]),
        )  # fmt: skip
        box: dict = {}
        def target() -> None:
            box["result"] = run(cfg, on_closed=on_closed, stop=stop, on_corrected=on_corrected)

        thread = threading.Thread(target=target)
        thread.start()
        try:
            wait_for(lambda: stop.is_set() or not thread.is_alive(), "every bar to be stored", 60)
        finally:
            stop.set()
            thread.join(30)
        assert "result" in box, "the streamer died"
        result = box["result"]
        # ccxt.pro's subscription: one SUBSCRIBE per symbol on the spot stream, per connection
        streams = {p for r in ws.subscribe_requests for p in r["params"]}
        assert streams == {"btcusdt@kline_1m", "ethusdt@kline_1m"}
        stall_closed = list(ws.stalled_closed_after_s)
        connections = ws.connections
        # an independent oracle: what `data ingest` writes for the same closed bars
        rest.now_ms = last_ts + 60_000 + 30_000
        ingest(exchange="binance", symbol="BTC/USDT", timeframe="1m", since=int(market["BTC/USDT"]["ts"][0]),
               until=last_ts + 60_000, lake=Lake(tmp_path / "ingested"),
               settings=IngestSettings(api_url=rest.url), progress=False)  # fmt: skip

    for symbol, bars in market.items():
        served = {k: v[:end] for k, v in bars.items()}
        assert_lake_is(lake, IDS[symbol], served)
        got = seen[symbol]
        assert [b[0] for b in got] == served["ts"].tolist()  # each bar once, in order, no gap
        final = {b[0]: b for b in got} | {b[0]: b for b in corrections[symbol]}  # the callbacks' view
        got = [final[t] for t in served["ts"].tolist()]
        assert np.array_equal(np.array([b[1:] for b in got]), np.column_stack(
            [served[c] for c in ("open", "high", "low", "close", "volume")]))  # fmt: skip
        assert journal_path(Lake(lake), IDS[symbol]).read_text() == ""  # compacted on stop
    assert not_durable == []
    assert month_files(lake, "binance_btcusdt_1m") == month_files(tmp_path / "ingested", "binance_btcusdt_1m")
    # the faults were met and survived
    # The drop always ends a connection; on a busy machine the stall and the exchange error may share one
    # reconnect (measured here: 2-3 reconnects), so only that much is asserted about the counts. The bytes
    # above are the proof that every fault was survived.
    assert result.drops >= 1 and result.stalls + result.exchange_errors >= 1, (result, stall_closed)
    assert result.reconnects >= 2 and connections >= 3
    # the streamer gave up on the silent connection itself, not before stall_s (before the silence ended,
    # unless the machine is so busy that it only learns of the silence from the messages after it)
    assert len(stall_closed) == 1 and stall_closed[0] >= stall_s, stall_closed
    assert result.ignored_stale >= 3  # the swapped updates
    assert result.late_newer >= 2  # candle 250's last state came after 251 opened (two symbols): via REST
    assert result.corrected["BTC/USDT"] >= 1 and result.corrected["ETH/USDT"] >= 1
    for symbol in market:
        # at least the REST-only bars: 40 before the stream, the 5-bar hole, the drop and stall outages
        assert result.rest_bars[symbol] >= 40 + 5 + 6 + 4
        assert result.ws_bars[symbol] > 150
        assert result.bars_stored[symbol] == end
    print(f"\nstreamed {result.total_stored()} bars ({result.ws_bars} from ws), {result.reconnects} "
          "reconnects "
          f"(drops {result.drops}, stalls {result.stalls}, errors {result.exchange_errors}), stale "
          f"{result.ignored_stale}, late {result.ignored_late}, late and newer {result.late_newer}, "
          f"corrected {result.corrected}")


def stream_cmd(ws: FakeBinanceWS, rest: FakeBinanceREST, lake: Path, since: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "tradelab_jax.cli", "data", "stream", "--exchange", "binance",
            "--symbol", "BTC/USDT", "--timeframe", "1m", "--lake", str(lake), "--ws-url", ws.url,
            "--rest-url", rest.url, "--stall-s", "0.5", "--since", str(since), "--json", *extra]  # fmt: skip


def test_kill_between_journal_and_compaction_then_restart(tmp_path, market, wait_for):
    """kill -9 of a streamer held right after a journal fsync (before compaction), then a restart (a second
    subprocess, stopped with SIGTERM) replays the journal; nothing is lost or doubled."""
    lake = tmp_path / "lake"
    bars = {"BTC/USDT": market["BTC/USDT"]}
    marker = tmp_path / "held"
    end = 160
    since = int(bars["BTC/USDT"]["ts"][0])
    jpath = journal_path(Lake(lake), "binance_btcusdt_1m")
    env = {**os.environ, "TRADELAB_TEST_LAKE_HOLD": f"stream-after-journal:{marker}"}
    with FakeBinanceREST(bars) as rest, FakeBinanceWS(bars, 20, end, rest=rest, updates=3) as ws:
        log = (tmp_path / "first.log").open("w")
        cmd = stream_cmd(ws, rest, lake, since, "--compact-every", "4")
        first = subprocess.Popen(cmd, cwd=REPO, env=env, stdout=log, stderr=log)
        try:
            # compaction every 4 candles: the REST fill (compacted), then ws candles 1-3 go through; the kill
            # comes at the 4th, journaled and fsynced but not compacted, with 3 more before it
            for n in range(5):
                wait_for(marker.exists, "the streamer to journal a candle", 60,
                         on_timeout=lambda: print((tmp_path / "first.log").read_text()[-3000:]))
                if n < 4:
                    marker.unlink()
            journaled = [json.loads(line)["ts"] for line in jpath.read_text().splitlines()]
            stored = Lake(lake).read_manifest("binance_btcusdt_1m")
            first.send_signal(signal.SIGKILL)
            assert first.wait(30) == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
        # the journal holds candles the month files do not have yet
        assert len(journaled) == 4 and min(journaled) > stored["last_ts"]
        second = subprocess.Popen(stream_cmd(ws, rest, lake, since), cwd=REPO, stdout=subprocess.PIPE,
                                  stderr=subprocess.PIPE, text=True)  # fmt: skip
        last = int(bars["BTC/USDT"]["ts"][end - 1])
        try:
            wait_for(lambda: Lake(lake).read_manifest("binance_btcusdt_1m")["last_ts"] == last,
                     "the restarted streamer to store every bar", 60)  # fmt: skip
            second.send_signal(signal.SIGTERM)
            out, err = second.communicate(timeout=30)
        finally:
            if second.poll() is None:
                second.kill()
    assert second.returncode == 0, err
    assert "Traceback" not in err
    status = [line for line in err.splitlines() if "| reconnects" in line]
    assert status and "BTC/USDT" in status[-1] and "stored" in status[-1]  # the final status line
    result = json.loads(out)
    assert result["journal_replays"] == 1 and result["replayed_bars"] == len(journaled)
    assert_lake_is(lake, "binance_btcusdt_1m", {k: v[:end] for k, v in bars["BTC/USDT"].items()})
    assert jpath.read_text() == ""
    assert not (lake / "locks" / "binance_btcusdt_1m.lock").exists()
    print(f"\nkilled with {len(journaled)} journaled candle(s) not compacted; the restart replayed "
          f"{result['replayed_bars']} and stored {result['bars_stored']['BTC/USDT']} more")


@pytest.mark.parametrize(
    "args, words",
    [
        (["--ws-url", "http://127.0.0.1:1/ws"], "invalid ws_url"),
        (["--symbol", "BTC/USDT,ETH/USDT", "--dataset-id", "one"], "one per symbol"),
        (["--config", "no-such-preset"], "neither a file nor a preset"),
        (["--stall-s", "0"], "invalid stall_s"),
    ],
)
def test_bad_input_is_one_sentence(tmp_path, capsys, args, words):
    from tradelab_jax.cli import main

    base = {"--exchange": "binance", "--symbol": "BTC/USDT", "--timeframe": "1m", "--lake": str(tmp_path)}
    for k, v in zip(args[::2], args[1::2], strict=True):
        base[k] = v
    rc = main(["data", "stream", *[x for kv in base.items() for x in kv]])
    err = capsys.readouterr().err
    assert rc == 2 and words in err and "Traceback" not in err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert not any(tmp_path.iterdir())


def test_presets_parse():
    from tradelab_jax.data.stream import read_config

    presets = sorted((REPO / "conf" / "stream").glob("*.yaml"))
    assert {p.stem for p in presets} >= {"binance", "loopback"}
    for p in presets:
        cfg = StreamConfig().check()
        values = read_config(p.stem, "binance")
        from dataclasses import replace

        replace(cfg, **values).check()


def test_an_exchange_error_reconnects(tmp_path, market, wait_for):
    """An error message from the exchange (code 503: ccxt rejects the subscription and resets the
    connection) ends the session; the streamer reconnects and the lake ends exact."""
    lake = tmp_path / "lake"
    bars = {"BTC/USDT": market["BTC/USDT"]}
    end = 90
    last_ts = int(bars["BTC/USDT"]["ts"][end - 1])
    stop = threading.Event()

    def on_closed(symbol: str, closed: list[list]) -> None:
        if closed[-1][0] == last_ts:
            stop.set()

    with FakeBinanceREST(bars) as rest, FakeBinanceWS(bars, 10, end, rest=rest, faults=[("error", 40)]) as ws:
        cfg = StreamConfig(lake=lake, ws_url=ws.url, rest_url=rest.url, stall_s=2, backoff_s=0.05,
                           since=int(bars["BTC/USDT"]["ts"][0]))  # fmt: skip
        box: dict = {}
        thread = threading.Thread(target=lambda: box.update(result=run(cfg, on_closed=on_closed, stop=stop)))
        thread.start()
        try:
            wait_for(lambda: stop.is_set() or not thread.is_alive(), "every bar to be stored", 60)
        finally:
            stop.set()
            thread.join(30)
    result = box["result"]
    assert result.exchange_errors == 1 and result.reconnects == 1 and result.stalls == 0, result
    assert any("503" in w for w in result.warnings)
    assert_lake_is(lake, "binance_btcusdt_1m", {k: v[:end] for k, v in bars["BTC/USDT"].items()})
