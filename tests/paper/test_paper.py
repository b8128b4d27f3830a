"""`tradelab paper` against loopback Binance servers: live equals backtest, and a killed session resumes.

A tiny run is trained (a subprocess) on a lake holding 9,600 real 1m bars of the embedded
binance_btcusdt_1m_2025-10 dataset; its test split is the last day (1,440 bars). `tradelab episode
--policy RUN_DIR` backtests that day. A second lake holds the same bars up to the split's first decision
bar; ccxt.pro's own client (through `tradelab data stream`'s code, inside `tradelab paper`) streams the
day from tests/stream's loopback websocket and REST servers, and the paper session's telemetry must equal
the episode's column for column, in the same dtypes, bit for bit (NaN where NaN).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "tests" / "stream"))
from ws_server import FakeBinanceREST, FakeBinanceWS  # noqa: E402

from tradelab_jax import data, runs  # noqa: E402
from tradelab_jax.data.lake import Lake, write_dataset  # noqa: E402
from tradelab_jax.data.loader import split_bounds  # noqa: E402
from tradelab_jax.env import TELEMETRY  # noqa: E402
from tradelab_jax.paper import files  # noqa: E402

N = 9600  # bars of the backtest dataset: its test split (15 %) is the last 1,440 bars, a day
DATASET = "binance_btcusdt_1m"  # the id `data stream` gives binance BTC/USDT 1m
PY = sys.executable
TINY = ["env.episode_length=8", "agent.num_envs=2", "agent.num_steps=16", "agent.total_timesteps=64",
        "agent.num_minibatches=1", "agent.update_epochs=1", "network.hidden_sizes=[8]", "run.chunk_updates=2",
        "run.progress=false", "run.print_summary=false", "run.eval_splits=[test]", "run.loggers=[]", "seed=4"]


def _write(lake: Path, bars: dict) -> None:
    the_lake = Lake(lake)
    with the_lake.writer(DATASET):
        write_dataset(the_lake, dataset_id=DATASET, exchange="binance", symbol="BTC/USDT", timeframe="1m",
                      bars=bars, provenance_text="Real Binance bars cut from binance_btcusdt_1m_2025-10.",
                      sources=[])


def _cli(*args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    proc = subprocess.run([PY, "-m", "tradelab_jax.cli", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    """Real bars, the trained run and the episode's telemetry over the test day."""
    root = tmp_path_factory.mktemp("paper")
    real = data.load("binance_btcusdt_1m_2025-10").bars
    served = {k: np.asarray(v[: N + 1]) for k, v in real.items() if k in ("ts", "open", "high", "low",
                                                                          "close", "volume")}
    _write(root / "lake_full", {k: v[:N] for k, v in served.items()})
    _cli("train", f"data.id={DATASET}", f"data.lake={root / 'lake_full'}", *TINY,
         f"run.outputs={root / 'outputs'}", "run.tag=paper")
    run_dir = next(runs.iter_runs(root / "outputs"))
    _cli("episode", "--policy", str(run_dir), "--lake", str(root / "lake_full"), "--split", "test",
         "--out", str(root / "episode"))
    episode = pd.read_parquet(root / "episode" / "telemetry.parquet")
    first = split_bounds(N, "test")[0]
    assert int(episode["t"].iloc[0]) == first  # the default features warm up long before the split
    return {"root": root, "served": served, "run": run_dir, "episode": episode, "first": first}


def _paper_cmd(world, lake: Path, out: Path, ws, rest) -> list[str]:
    until = int(world["served"]["ts"][N - 1])
    return [PY, "-m", "tradelab_jax.cli", "paper", str(world["run"]), "--exchange", "binance", "--symbol",
            "BTC/USDT", "--lake", str(lake), "--out", str(out), "--ws-url", ws.url, "--rest-url", rest.url,
            "--stall-s", "0.5", "--until", str(until), "--quiet", "--refresh-s", "2"]


def _history_lake(world, name: str) -> Path:
    lake = world["root"] / name
    _write(lake, {k: v[: world["first"] + 1] for k, v in world["served"].items()})
    return lake


def _servers(world, interval_s: float):
    bars = {"BTC/USDT": world["served"]}
    rest = FakeBinanceREST(bars)
    return rest, FakeBinanceWS(bars, world["first"] + 1, N, rest=rest, updates=2, interval_s=interval_s)


def assert_same_as_episode(paper: pd.DataFrame, episode: pd.DataFrame) -> dict:
    columns = [*TELEMETRY, "action", "terminated", "ts", "close"]
    assert len(paper) == len(episode)
    worst = 0.0
    for col in columns:
        a, b = paper[col].to_numpy(), episode[col].to_numpy()
        assert a.dtype == b.dtype, (col, a.dtype, b.dtype)
        if a.dtype.kind == "f":
            assert np.array_equal(a, b, equal_nan=True), (col, np.flatnonzero(~((a == b) | np.isnan(b)))[:5])
            if col == "equity":
                worst = float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64))))
        else:
            np.testing.assert_array_equal(a, b, err_msg=col)
    return {"bars": len(paper), "actions": len(paper), "max_equity_diff": worst}


def test_paper_session_over_a_streamed_day_equals_the_backtest(world):
    lake, out = _history_lake(world, "lake_live"), world["root"] / "session"
    rest, ws = _servers(world, 0.001)
    with rest, ws:
        proc = subprocess.run(_paper_cmd(world, lake, out, ws, rest), cwd=REPO, capture_output=True,
                              text=True, timeout=600, env={**os.environ, "BINANCE_API_KEY": "sentinel-key"})
    assert proc.returncode == 0, proc.stderr[-4000:]
    paper = pd.read_parquet(out / "telemetry.parquet")
    episode = world["episode"]
    figures = assert_same_as_episode(paper, episode)
    assert figures["bars"] == N - 1 - world["first"] == 1439
    assert int(paper["filled"].sum()) > 0  # the agent trades, so fills, fees and stops are compared
    status = runs.read_status(out)
    assert status["status"] == "done" and status["kind"] == "paper" and status["bars"] == 1439
    summary = json.loads((out / "summary.json").read_text())
    ep = json.loads((world["root"] / "episode" / "summary.json").read_text())
    for key in ("steps", "trades", "fees_paid", "total_return", "max_drawdown", "stops_hit"):
        assert summary["metrics"][key] == ep["metrics"][key], key
    assert (out / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(files.read_journal(out)) == 1439
    for path in out.rglob("*"):
        if path.is_file():
            assert b"sentinel-key" not in path.read_bytes()  # no API key read or written
    view = files.read_session(out)
    assert len(view["equity"]) == 1439 and view["trades"]
    print(f"\npaper vs episode: {figures['bars']} bars, {figures['actions']} actions compared, "
          f"max equity difference {figures['max_equity_diff']} ({paper['equity'].dtype}), "
          f"{int(paper['filled'].sum())} fills")


def test_killed_session_resumes_its_account(world, wait_for):
    """kill -9 mid-day, then the same command again: the restart reads its journal, catches up on the
    bars the streamer stored meanwhile and ends with the uninterrupted session's (the episode's) rows."""
    lake, out = _history_lake(world, "lake_kill"), world["root"] / "killed"
    rest, ws = _servers(world, 0.004)
    journal = out / files.JOURNAL_FILE
    with rest, ws:
        first = subprocess.Popen(_paper_cmd(world, lake, out, ws, rest), cwd=REPO, stdout=subprocess.DEVNULL,
                                 stderr=subprocess.DEVNULL)
        try:
            wait_for(lambda: journal.is_file() and journal.read_bytes().count(b"\n") >= 200,
                     "the paper session to trade 200 bars", 300)
            first.send_signal(signal.SIGKILL)
            assert first.wait(30) == -signal.SIGKILL
        finally:
            if first.poll() is None:
                first.kill()
        traded = len(files.read_journal(out))
        assert 200 <= traded < 1439
        assert runs.run_state(out) == runs.INTERRUPTED
        proc = subprocess.run(_paper_cmd(world, lake, out, ws, rest), cwd=REPO, capture_output=True,
                              text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    paper = pd.read_parquet(out / "telemetry.parquet")
    assert_same_as_episode(paper, world["episode"])
    status = runs.read_status(out)
    assert status["status"] == "done" and "resumed_at" in status
    print(f"\nkilled after {traded} bars; the restart traded the other {1439 - traded}")


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--dataset", "nope"], "no dataset 'nope'"),
     (["--symbol", "ETH/USDT", "--dataset", DATASET], "holds binance BTC/USDT 1m bars, not binance ETH/USDT"),
     (["--timeframe", "7q"], "timeframe"),
     (["--until", "yesterday-ish"], "--until")],
)
def test_user_errors_are_one_sentence(world, tmp_path, capsys, args, message):
    from tradelab_jax import cli

    lake = world["root"] / "lake_full"
    base = {"--symbol": "BTC/USDT", "--lake": str(lake), "--out": str(tmp_path / "s")}
    for flag, value in zip(args[::2], args[1::2], strict=True):
        base[flag] = value
    argv = ["paper", str(world["run"]), *[x for kv in base.items() for x in kv]]
    assert cli.main(argv) in (2, 3)
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err and err.count("\n") == 1


def test_a_session_directory_resumes_only_its_own_settings(world, tmp_path, capsys):
    from tradelab_jax import cli

    out = tmp_path / "session"
    out.mkdir()
    (out / files.PAPER_FILE).write_text(json.dumps({"run": str(world["run"].resolve()), "exchange": "binance",
                                                    "symbol": "BTC/USDT", "timeframe": "1m",
                                                    "dataset": "binance_btcusdt_1m_other"}))
    argv = ["paper", str(world["run"]), "--symbol", "BTC/USDT", "--lake", str(world["root"] / "lake_full"),
            "--out", str(out)]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert "is a paper session of dataset 'binance_btcusdt_1m_other', not 'binance_btcusdt_1m'" in err


def test_bars_fed_in_batches_with_duplicates_and_a_reopen_equal_the_backtest(world, tmp_path):
    """The session's own bar path, without the streamer: candles in batches of 1 to 150 (more than one
    advance call), every batch re-sending the previous batch's last candle, and the session object dropped
    and reopened from its directory halfway (as a restart does)."""
    from tradelab_jax.episode import run_settings
    from tradelab_jax.paper.session import PaperSession

    served, first = world["served"], world["first"]
    history = {k: v[: first + 1] for k, v in served.items()}
    meta = {"exchange": "binance", "symbol": "BTC/USDT", "timeframe": "1m", "timeframe_ms": 60_000,
            "dataset": DATASET, "first_decision_ts": int(served["ts"][first]), "first_decision": "x",
            "first_close": float(served["close"][first])}
    settings = run_settings(world["run"])
    out = tmp_path / "direct"
    out.mkdir()
    session = PaperSession(out, world["run"], settings, history, meta, refresh_s=1e9, plot_s=1e9)
    candles = [{k: served[k][i] for k in served} for i in range(first + 1, N)]
    sizes = np.random.default_rng(0).choice([1, 2, 7, 150], size=len(candles))
    i, prev, reopened = 0, [], False
    while i < len(candles):
        if i > len(candles) // 2 and not reopened:
            session = PaperSession(out, world["run"], settings, history, meta, refresh_s=1e9, plot_s=1e9)
            assert session.last_ts == int(candles[i - 1]["ts"])  # its journal's bars, not the history's
            reopened = True
        batch = candles[i : i + int(sizes[i])]
        session.on_bars(prev[-1:] + batch)
        prev, i = batch, i + len(batch)
    session.refresh(force=True)
    assert reopened
    paper = pd.read_parquet(out / "telemetry.parquet")
    assert_same_as_episode(paper, world["episode"])


def test_sigterm_stops_cleanly_with_the_traded_bars_written(world, wait_for):
    lake, out = _history_lake(world, "lake_term"), world["root"] / "terminated"
    rest, ws = _servers(world, 0.02)
    journal = out / files.JOURNAL_FILE
    with rest, ws:
        proc = subprocess.Popen(_paper_cmd(world, lake, out, ws, rest), cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True)
        try:
            wait_for(lambda: journal.is_file() and journal.read_bytes().count(b"\n") >= 5,
                     "the paper session to trade 5 bars", 300)
            proc.send_signal(signal.SIGTERM)
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err
    status = runs.read_status(out)
    assert status["status"] == "cancelled" and status["pid"] is None
    traded = len(files.read_journal(out))
    paper = pd.read_parquet(out / "telemetry.parquet")
    assert len(paper) == status["bars"] == traded < 1439
    assert_same_as_episode(paper, world["episode"].iloc[:traded].reset_index(drop=True))
