"""Summary statistics of one episode's telemetry (numpy only; shared by `tradelab episode` and eval).

Returns are simple per-bar returns of marked equity, starting from ``initial_cash``. Annualisation uses
``bars_per_year`` (crypto trades around the clock: 365 days). Statistics that are undefined for an episode
(Sharpe of a flat equity curve, Calmar without a drawdown, win rate without a closed trade) are None, so
the summary is always valid JSON.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

MS_PER_YEAR = 365 * 24 * 3600 * 1000


def bars_per_year(timeframe_ms: float) -> float:
    """Bars in a 365-day year for a bar length in milliseconds (525,600 for 1m)."""
    if not timeframe_ms > 0:
        raise ValueError(f"timeframe_ms must be positive, got {timeframe_ms}")
    return MS_PER_YEAR / float(timeframe_ms)


def equity_curve(telemetry: Mapping[str, np.ndarray], initial_cash: float) -> np.ndarray:
    """``[n + 1]`` equity: ``initial_cash`` then the equity marked after each step."""
    return np.concatenate([[float(initial_cash)], np.asarray(telemetry["equity"], np.float64)])


def max_drawdown(equity: np.ndarray) -> float:
    """Largest fall from a running peak, as a positive fraction of that peak (0 for a rising curve)."""
    equity = np.asarray(equity, np.float64)
    peak = np.maximum.accumulate(equity)
    return float(np.max(1.0 - equity / peak)) if equity.size else 0.0


def _finite_or_none(x: float) -> float | None:
    return float(x) if x is not None and math.isfinite(x) else None


def round_trips(position: np.ndarray, equity: np.ndarray) -> list[float]:
    """PnL (quote currency, after fees) of each closed position, from the equity before its entry step
    to the equity after its exit step (a flip's step counts for the position it closes)."""
    sign = np.sign(np.concatenate([[0.0], np.asarray(position, np.float64)]))
    pnls, opened = [], None
    for i in range(1, sign.size):
        if sign[i] != sign[i - 1]:
            if sign[i - 1] != 0 and opened is not None:
                pnls.append(float(equity[i] - equity[opened]))
            if sign[i] == 0:
                opened = None
            else:  # from flat: equity before the entry step; after a flip: equity after the flip step
                opened = i - 1 if sign[i - 1] == 0 else i
    return pnls


def summarize(telemetry: Mapping[str, np.ndarray], *, initial_cash: float, bars_per_year: float) -> dict:
    """Total and annualised return, Sharpe, Sortino, max drawdown, Calmar, trades, win rate, turnover,
    fees paid, stops hit and exposure of one episode (see the module docstring for conventions)."""
    n = len(telemetry["equity"])
    equity = equity_curve(telemetry, initial_cash)
    returns = equity[1:] / equity[:-1] - 1.0 if n else np.zeros(0)
    position = np.asarray(telemetry["position"], np.float64)
    filled = np.asarray(telemetry["filled"], bool)
    stop_hit = np.asarray(telemetry["stop_hit"], bool)
    order_size = np.asarray(telemetry["order_size"], np.float64)
    fill_price = np.asarray(telemetry["fill_price"], np.float64)
    exit_price = np.asarray(telemetry["exit_price"], np.float64)

    total_return = equity[-1] / initial_cash - 1.0
    mean = float(np.mean(returns)) if n else 0.0
    std = float(np.std(returns, ddof=1)) if n > 1 else 0.0
    downside = float(np.sqrt(np.mean(np.minimum(returns, 0.0) ** 2))) if n else 0.0
    scale = math.sqrt(bars_per_year)
    mdd = max_drawdown(equity)
    annual = None
    if n and equity[-1] > 0:
        growth = math.log(equity[-1] / initial_cash) * bars_per_year / n
        annual = math.expm1(growth) if growth < 700 else None
    elif n:
        annual = -1.0

    # Notional traded: rebalance fills plus stop exits (the position the stop closed).
    before = np.concatenate([[0.0], position[:-1]])
    stopped_qty = before + np.where(filled, order_size, 0.0)
    traded = np.sum(np.where(filled, np.abs(order_size) * np.nan_to_num(fill_price), 0.0))
    traded += np.sum(np.where(stop_hit, np.abs(stopped_qty) * np.nan_to_num(exit_price), 0.0))
    pnls = round_trips(position, equity)

    return {
        "steps": int(n),
        "final_equity": float(equity[-1]),
        "total_return": float(total_return),
        "annual_return": _finite_or_none(annual) if annual is not None else None,
        "sharpe": _finite_or_none(mean / std * scale) if std > 0 else None,
        "sortino": _finite_or_none(mean / downside * scale) if downside > 0 else None,
        "max_drawdown": mdd,
        "calmar": _finite_or_none(annual / mdd) if (annual is not None and mdd > 0) else None,
        "trades": int(filled.sum()),
        "round_trips": len(pnls),
        "win_rate": float(np.mean(np.asarray(pnls) > 0)) if pnls else None,
        "turnover": float(traded / initial_cash),
        "fees_paid": float(np.sum(telemetry["limit_fee"]) + np.sum(telemetry["stop_fee"])),
        "stops_hit": int(stop_hit.sum()),
        "exposure": float(np.mean(position != 0)) if n else 0.0,
    }
