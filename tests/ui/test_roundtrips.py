"""Round trips from a hand-worked telemetry example, and agreement with eval's round_trips/win_rate."""

import numpy as np

from tradelab_jax.env.metrics import summarize
from tradelab_jax.fmt import cell, fmt_pct, header
from tradelab_jax.roundtrips import round_trip_table


def _telemetry():
    # step: 0 buy 2 @100 (fee 1) | 1 hold | 2 sell to flat @110 (fee 1) | 3 flat | 4 short 1 @ 120 (fee .5)
    # | 5 stop hit, exit @ 125 (fee .5) | 6 buy 1 @ 90 (fee .25), still open at the end
    return {
        "ts": np.arange(7) * 60_000,
        "position": np.array([2, 2, 0, 0, -1, 0, 1], np.float32),
        "equity": np.array([999, 1010, 1018, 1018, 1017.5, 1012, 1011.75], np.float32),
        "filled": np.array([1, 0, 1, 0, 1, 0, 1], bool),
        "stop_hit": np.array([0, 0, 0, 0, 0, 1, 0], bool),
        "order_size": np.array([2, 0, -2, 0, -1, 0, 1], np.float32),
        "fill_price": np.array([100, np.nan, 110, np.nan, 120, np.nan, 90], np.float32),
        "exit_price": np.array([np.nan] * 5 + [125, np.nan], np.float32),
        "limit_fee": np.array([1, 0, 1, 0, 0.5, 0, 0.25], np.float32),
        "stop_fee": np.array([0, 0, 0, 0, 0, 0.5, 0], np.float32),
    }


def test_hand_worked_round_trips_agree_with_eval_summary():
    tel = _telemetry()
    table = round_trip_table(tel, 1000.0)
    assert list(table["side"]) == ["long", "short", "long"]
    assert list(table["exit"]) == ["signal", "stop", "open"]
    first, second, last = table.to_dict("records")
    assert (first["entry_time"], first["entry_price"], first["exit_time"], first["exit_price"]) == (
        0, 100.0, 120_000, 110.0)
    assert first["size"] == 2.0 and first["fees"] == 2.0 and first["pnl"] == 18.0  # 2*(110-100) - 2
    assert second["exit_price"] == 125.0 and second["fees"] == 1.0 and second["pnl"] == -6.0  # -(5) - 1
    assert np.isnan(last["exit_time"]) and np.isnan(last["pnl"]) and last["entry_price"] == 90.0
    summary = summarize(tel, initial_cash=1000.0, bars_per_year=525_600)
    closed = table[table["exit"] != "open"]
    assert summary["round_trips"] == len(closed)
    assert summary["win_rate"] == float(np.mean(closed["pnl"] > 0))


def test_a_flip_closes_one_trip_and_opens_the_other_side():
    tel = _telemetry()
    tel["position"] = np.array([2, 2, -1, -1, -1, 0, 0], np.float32)
    table = round_trip_table(tel, 1000.0)
    assert list(table["side"]) == ["long", "short"] and list(table["exit"]) == ["flip", "stop"]
    summary = summarize(tel, initial_cash=1000.0, bars_per_year=525_600)
    assert summary["round_trips"] == 2 and summary["win_rate"] == float(np.mean(table["pnl"] > 0))
    assert table["fees"].sum() == np.float32(tel["limit_fee"][:6].sum() + tel["stop_fee"][:6].sum())


def test_cells_read_as_the_cli_prints_them():
    assert cell(-0.326, "pct") == "-32.60%" and fmt_pct(0.01, signed=True) == "+1.00%"
    assert cell(0.08744999766349792, "num") == "0.09" and cell(None, "pct") == "-"
    assert cell(float("nan"), "num") == "-" and cell(12345678, "int") == "12,345,678"
    assert header("total_return") == "total_return %" and header("sharpe") == "sharpe"
