"""The Paper tab's data functions against a paper session directory on disk (no browser, no training).

A real session needs a trained run (tests/paper/test_paper.py), so the session here is written in the
documented format (docs/paper.md) with the writers the session itself uses (``io.append_jsonl`` for the
journal, ``io.atomic_write_json`` for paper.json, ``runs.write_status`` for status.json), over real 1m bars
of the shared data; each expectation is read back from those files independently of the tab.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradelab_jax import io, runs
from tradelab_jax.errors import UserError
from tradelab_jax.paper import files
from tradelab_jax.ui.tabs import paper as tab

DATA = (Path(__file__).resolve().parents[2].parent / "shared" / "data"
        / "binance_spot_btcusdt_1m_2025-10-15_2025-11-04" / "btcusdt_1m.parquet")
SESSION = "paper/20251202T160000Z_btcusdt"


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, tz=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _record(bar: pd.Series, t: int, equity: float, rng: np.random.Generator) -> dict:
    filled = bool(rng.random() < 0.4)
    stop = bool(not filled and rng.random() < 0.2)
    size = float(rng.choice([-1.0, 1.0]) * rng.uniform(0.01, 0.1)) if filled else 0.0
    row = {"t": t, "equity": equity, "position": size, "action": int(rng.integers(0, 5)), "filled": filled,
           "order_size": size, "fill_price": float(bar["close"]) if filled else None,
           "limit_fee": 0.0002 * abs(size) * float(bar["close"]) if filled else 0.0, "stop_hit": stop,
           "exit_price": float(bar["low"]) if stop else None, "stop_fee": 0.5 if stop else 0.0,
           "terminated": False}
    return {"ts": int(bar["ts"]), "bar": {k: files.json_value(bar[k]) for k in bar.index}, "row": row,
            "state": {"cash": equity}, "key": [0, t]}


def write_session(outputs: Path, name: str = SESSION, bars: int = 40, seed: int = 0) -> Path:
    d = outputs / name
    d.mkdir(parents=True)
    frame = pd.read_parquet(DATA).iloc[: bars + 1]
    first = frame.iloc[0]
    io.atomic_write_json(d / files.PAPER_FILE, {
        "kind": files.KIND, "run": str(outputs / "20251126T113000Z_train"), "exchange": "binance",
        "symbol": "BTC/USDT", "timeframe": "1m", "timeframe_ms": 60_000, "dataset": "binance_btcusdt_1m",
        "first_decision_ts": int(first["ts"]), "first_decision": _iso(int(first["ts"])),
        "first_close": float(first["close"]), "orders": "none (paper trading)"})
    rng = np.random.default_rng(seed)
    equity = 10_000.0 * frame["close"].to_numpy()[1:] / float(first["close"])
    for t in range(bars):
        io.append_jsonl(d / files.JOURNAL_FILE, _record(frame.iloc[t + 1], t, float(equity[t]), rng))
    runs.write_status(d, kind=files.KIND, status="running", pid=os.getpid(), bars=bars,
                      total_return=float(equity[-1] / 10_000.0 - 1.0))
    return d


def _journal(d: Path) -> list[dict]:
    return [json.loads(line) for line in (d / files.JOURNAL_FILE).read_text().splitlines() if line.strip()]


def test_an_absent_or_empty_paper_folder_is_a_note(outputs):
    frame, note = tab.sessions_frame(outputs)
    assert frame.empty and list(frame.columns) == list(tab.SESSION_COLUMNS)
    assert "No paper sessions" in note and "tradelab paper" in note
    (outputs / "paper").mkdir()
    frame, note = tab.sessions_frame(outputs)
    assert frame.empty and "No paper sessions" in note
    assert tab.session_view(outputs, None) == ("", None, tab.EMPTY_TRADES)


def test_the_sessions_table_equals_the_session_files(outputs):
    d = write_session(outputs)
    other = write_session(outputs, "paper/20251201T090000Z_ethusdt", bars=7, seed=1)
    os.utime(other / files.PAPER_FILE, (1, 1))  # the older one: listed second
    frame, note = tab.sessions_frame(outputs)
    assert note == ""
    assert list(frame["session"]) == [SESSION, "paper/20251201T090000Z_ethusdt"]
    row = frame.iloc[0]
    records = _journal(d)
    status = json.loads((d / runs.STATUS_FILE).read_text())
    assert row["symbol"] == json.loads((d / files.PAPER_FILE).read_text())["symbol"] == "BTC/USDT"
    assert row["status"] == status["status"] == "running"
    assert row["bars"] == len(records) == 40
    assert row["last_bar"] == _iso(records[-1]["ts"])
    assert row["equity"] == records[-1]["row"]["equity"]
    assert row["total_return"] == status["total_return"]
    assert frame.iloc[1]["bars"] == 7


def test_the_view_shows_the_journal_equity_and_trades_and_follows_new_bars(outputs):
    d = write_session(outputs)
    message, fig, trades = tab.session_view(outputs, SESSION)
    assert message == ""
    records = _journal(d)
    agent, asset = fig.data[0], fig.data[1]
    assert list(agent.y) == [r["row"]["equity"] for r in records]
    assert list(agent.x) == [_iso(r["ts"]) for r in records]
    scale = records[0]["row"]["equity"] / records[0]["bar"]["close"]
    np.testing.assert_allclose(asset.y, [r["bar"]["close"] * scale for r in records], rtol=1e-12)
    assert fig.layout.showlegend and {agent.name, asset.name} == {"agent equity", "asset (close, scaled)"}
    expected = []
    for r in records:
        row = r["row"]
        if row["filled"]:
            expected.append([_iso(r["ts"]), "order", "buy" if row["order_size"] > 0 else "sell",
                             abs(row["order_size"]), row["fill_price"], row["limit_fee"]])
        if row["stop_hit"]:
            expected.append([_iso(r["ts"]), "stop", "close", None, row["exit_price"], row["stop_fee"]])
    assert expected and trades.astype(object).where(trades.notna(), None).values.tolist() == expected

    # a bar traded since (and a last line cut short by a kill, never acknowledged) as the timer re-reads;
    # the view's key changes with it (and only then is the figure sent again)
    key = tab.view_key(outputs, SESSION)
    assert tab.view_key(outputs, SESSION) == key
    bar = pd.read_parquet(DATA).iloc[41]
    io.append_jsonl(d / files.JOURNAL_FILE, _record(bar, 40, 12_345.5, np.random.default_rng(2)))
    assert tab.view_key(outputs, SESSION) != key
    with open(d / files.JOURNAL_FILE, "ab") as f:
        f.write(b'{"ts": 1, "row"')
    frame, _ = tab.sessions_frame(outputs)
    assert frame.iloc[0]["bars"] == 41 and frame.iloc[0]["equity"] == 12_345.5
    assert frame.iloc[0]["last_bar"] == _iso(int(bar["ts"]))
    assert tab.session_view(outputs, SESSION)[1].data[0].y[-1] == 12_345.5


@pytest.mark.parametrize("bad", ["../outside", "/etc", "paper/../../x", "paper\\x", "", None, "paper/nope"])
def test_bad_session_ids_are_one_sentence(outputs, bad):
    write_session(outputs)
    with pytest.raises(UserError):
        tab.resolve_session(outputs, bad)
    message, fig, trades = tab.session_view(outputs, bad)
    assert (message.startswith("⚠") or bad in ("", None)) and fig is None and trades.empty


def test_links_out_of_outputs_are_not_followed(outputs, tmp_path):
    outside = write_session(tmp_path / "elsewhere")
    (outputs / "paper").mkdir()
    (outputs / "paper" / "linked").symlink_to(outside)  # a session reached through a link
    mine = write_session(outputs, "paper/20251203T000000Z_mine")
    (mine / files.JOURNAL_FILE).unlink()
    (mine / files.JOURNAL_FILE).symlink_to(outside / files.JOURNAL_FILE)  # a file linked out of its session
    frame, note = tab.sessions_frame(outputs)
    assert frame.empty and "No paper sessions" in note
    assert "symbolic link" in note
    for sid in ("paper/linked", "paper/20251203T000000Z_mine"):
        message, fig, _ = tab.session_view(outputs, sid)
        assert message.startswith("⚠") and ("symbolic link" in message or "outside" in message)
        assert fig is None and str(outside) not in message


def test_the_app_has_the_paper_tab(outputs):
    from tradelab_jax.ui import forms
    from tradelab_jax.ui.app import build_app
    from tradelab_jax.ui.jobs import JobQueue

    choices = forms.Choices(datasets=(forms.Dataset("binance_btcusdt_1m", "BTC"),), feature_sets=("default",))
    page = build_app(outputs, JobQueue(outputs), choices)
    ids = {getattr(b, "elem_id", None) for b in page.blocks.values()}
    assert {"paper-table", "paper-pick", "paper-equity", "paper-trades"} <= ids
