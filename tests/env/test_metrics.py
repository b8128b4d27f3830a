"""Episode statistics (env/metrics.py) on hand-worked telemetry."""

from __future__ import annotations

import math
import statistics

import numpy as np
import pytest

from tradelab_jax.env.metrics import bars_per_year, max_drawdown, round_trips, summarize


def _telemetry(equity, position, **extra):
    n = len(equity)
    base = {
        "equity": np.asarray(equity, float), "position": np.asarray(position, float),
        "filled": np.zeros(n, bool), "stop_hit": np.zeros(n, bool), "order_size": np.zeros(n),
        "fill_price": np.full(n, np.nan), "exit_price": np.full(n, np.nan), "limit_fee": np.zeros(n),
        "stop_fee": np.zeros(n),
    }  # fmt: skip
    base.update({k: np.asarray(v) for k, v in extra.items()})
    return base


def test_bars_per_year():
    assert bars_per_year(60_000) == 525_600
    assert bars_per_year(300_000) == 105_120
    with pytest.raises(ValueError):
        bars_per_year(0)


def test_summary_of_a_hand_worked_episode():
    tel = _telemetry(
        [110.0, 99.0, 121.0], [1.0, 1.0, 0.0],
        filled=[True, False, True], order_size=[1.0, 0.0, -1.0], fill_price=[100.0, np.nan, 120.0],
        limit_fee=[0.5, 0.0, 0.25],
    )
    s = summarize(tel, initial_cash=100.0, bars_per_year=525_600)
    returns = [0.1, -0.1, 121 / 99 - 1]
    assert s["steps"] == 3 and s["final_equity"] == 121.0
    assert s["total_return"] == pytest.approx(0.21)
    assert s["max_drawdown"] == pytest.approx(0.1)
    sharpe = statistics.mean(returns) / statistics.stdev(returns) * math.sqrt(525_600)
    assert s["sharpe"] == pytest.approx(sharpe)
    downside = math.sqrt(0.01 / 3)
    assert s["sortino"] == pytest.approx(statistics.mean(returns) / downside * math.sqrt(525_600))
    assert s["annual_return"] is None and s["calmar"] is None  # 1.21 ** 175200 overflows: undefined
    assert s["trades"] == 2 and s["round_trips"] == 1 and s["win_rate"] == 1.0
    assert s["turnover"] == pytest.approx((100.0 + 120.0) / 100.0)
    assert s["fees_paid"] == pytest.approx(0.75)
    assert s["stops_hit"] == 0
    assert s["exposure"] == pytest.approx(2 / 3)


def test_annual_return_and_calmar_of_a_long_episode():
    n = 525_600  # one year of 1m bars, up 10% with a 20% drawdown on the way
    equity = np.linspace(100.0, 110.0, n)
    equity[n // 2] = equity[n // 2 - 1] * 0.8
    s = summarize(_telemetry(equity, np.ones(n)), initial_cash=100.0, bars_per_year=525_600)
    assert s["annual_return"] == pytest.approx(0.1, rel=1e-9)
    assert s["max_drawdown"] == pytest.approx(0.2, rel=1e-6)
    assert s["calmar"] == pytest.approx(0.5, rel=1e-5)


def test_round_trips_split_flips_between_the_closing_and_the_new_position():
    equity = np.array([100.0, 101.0, 99.0, 121.0])  # curve: initial cash then after each step
    assert round_trips([1.0, -1.0, 0.0], equity) == [-1.0, 22.0]
    assert round_trips([0.0, 1.0, 1.0], equity) == []  # still open at the end
    assert round_trips([1.0, 0.0, 2.0], equity) == [-1.0]


def test_undefined_statistics_are_none_and_json_safe():
    import json

    s = summarize(_telemetry([100.0] * 5, [0.0] * 5), initial_cash=100.0, bars_per_year=525_600)
    assert s["sharpe"] is None and s["sortino"] is None and s["calmar"] is None and s["win_rate"] is None
    assert s["max_drawdown"] == 0.0 and s["total_return"] == 0.0 and s["exposure"] == 0.0
    json.dumps(s, allow_nan=False)
    assert max_drawdown(np.array([1.0, 2.0, 1.0, 3.0])) == pytest.approx(0.5)
