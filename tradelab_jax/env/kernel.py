"""Small pure accounting kernels of one step (docs/execution-semantics.md §2-§5).

Each function maps arrays to arrays with no control flow on values (``jnp.where`` only), so the same code
runs for one environment, under ``vmap`` for thousands, and for a batch whose knobs differ. Prices, cash
and quantities are in the params dtype (float32 by default, float64 under x64). Flat positions carry
``entry_price = 0`` and ``stop_price = 0`` internally; telemetry reports NaN for them instead.
"""

from __future__ import annotations

import jax.numpy as jnp

# An order smaller than this many risk units is rounding noise (e.g. the 1e-17 BTC left when an all-in
# target is recomputed from a cash balance of +-1e-12), not an order: sending it would pay a fee and
# reset the stop. It matters only with rebalance_band = 0.
DUST_RISK_UNITS = 1e-6

# log1p's argument is floored here so a wiped-out account gets a large finite penalty, never -inf.
# 2**-20 - 1 is exact in float32 and float64, so both dtypes share the floor log(2**-20) ≈ -13.86.
MIN_LOG_RATIO_MINUS_1 = 2.0**-20 - 1.0


def compute_risk_units(equity, price, risk_pct, stop_loss_bps, max_leverage):
    """Risk units and the leverage cap (both base units) at ``price`` (§2).

    A stop at ``stop_loss_bps`` from ``price`` loses ``risk_pct`` of equity; the result is capped at
    ``max_leverage * equity / price``. With ``stop_loss_bps == 0`` (stop disabled) only the cap applies;
    with ``equity <= 0`` both are 0.
    """
    stop_distance = price * stop_loss_bps / 1e4
    cap = max_leverage * equity / price
    has_stop = stop_loss_bps > 0
    by_risk = equity * risk_pct / jnp.where(has_stop, stop_distance, 1.0)
    units = jnp.where(has_stop, jnp.minimum(by_risk, cap), cap)
    live = equity > 0
    return jnp.where(live, units, 0.0), jnp.where(live, cap, 0.0), stop_distance


def compute_order(fraction, position, risk_units, cap, price, rebalance_band, min_order_notional):
    """Target position, order size ``delta`` and whether the order is sent (§2).

    ``fraction * risk_units`` is clipped to ``±cap`` so buckets beyond ±1 never exceed the leverage cap.
    A change of at most :data:`DUST_RISK_UNITS` risk units is no order (the contract's ``delta == 0``).
    """
    target = jnp.clip(fraction * risk_units, -cap, cap)
    delta = target - position
    size = jnp.abs(delta)
    send = (
        (delta != 0)
        & (size > DUST_RISK_UNITS * risk_units)
        & (size >= rebalance_band * risk_units)
        & (size * price >= min_order_notional)
    )
    return target, delta, send


def execute_order(delta, send, limit_price, bar_open, bar_high, bar_low, is_market, maker_fee, taker_fee,
                  slippage_bps):
    """Fill of the rebalance order in the next bar (§3): ``(filled, fill_price, fee)``.

    Limit orders rest at ``limit_price`` and fill there when touched; market orders fill at the open moved
    against the order by the slippage. Unfilled orders have price and fee 0 here.
    """
    side = jnp.sign(delta)
    market_price = bar_open * (1 + side * slippage_bps / 1e4)
    touched = jnp.where(delta > 0, bar_low <= limit_price, bar_high >= limit_price)
    filled = send & (is_market | touched)
    price = jnp.where(is_market, market_price, limit_price)
    rate = jnp.where(is_market, taker_fee, maker_fee)
    fee = jnp.where(filled, rate * jnp.abs(delta) * price, 0.0)
    return filled, jnp.where(filled, price, 0.0), fee


def apply_fill(cash, position, entry_price, stop_price, delta, filled, fill_price, fee, stop_loss_bps):
    """Cash, position, average entry and stop after a fill (§3); unchanged when not filled."""
    new_position = jnp.where(filled, position + delta, position)
    new_cash = jnp.where(filled, cash - delta * fill_price - fee, cash)
    adding = position * delta > 0
    reopened = (position == 0) | (position * new_position < 0)  # from flat, or crossing zero
    weighted = (jnp.abs(position) * entry_price + jnp.abs(delta) * fill_price) / (
        jnp.abs(position) + jnp.abs(delta)
    )
    entry = jnp.where(reopened, fill_price, jnp.where(adding, weighted, entry_price))
    entry = jnp.where(filled, entry, entry_price)
    flat = new_position == 0
    entry = jnp.where(flat, 0.0, entry)
    reset_stop = entry * (1 - jnp.sign(new_position) * stop_loss_bps / 1e4)
    stop = jnp.where(filled, reset_stop, stop_price)
    stop = jnp.where(flat | (stop_loss_bps <= 0), 0.0, stop)
    return new_cash, new_position, entry, stop


def check_stop(position, stop_price, bar_open, bar_high, bar_low, stop_loss_bps, taker_fee, slippage_bps):
    """Stop-loss in the bar after execution (§4): ``(hit, exit_price, fee)``; price and fee 0 when not hit.

    A gap through the stop exits at the open; the exit is a market order moved against the position by
    the slippage and charged the taker fee.
    """
    long = position > 0
    short = position < 0
    hit = (stop_loss_bps > 0) & ((long & (bar_low <= stop_price)) | (short & (bar_high >= stop_price)))
    level = jnp.where(long, jnp.minimum(stop_price, bar_open), jnp.maximum(stop_price, bar_open))
    exit_price = level * (1 - jnp.sign(position) * slippage_bps / 1e4)
    fee = jnp.where(hit, taker_fee * jnp.abs(position) * exit_price, 0.0)
    return hit, jnp.where(hit, exit_price, 0.0), fee


def trail_stop(position, stop_price, bar_close, stop_loss_bps, trailing_stop):
    """The trailing stop after the bar (§4): only ever tightens; unchanged when off or flat."""
    long_level = jnp.maximum(stop_price, bar_close * (1 - stop_loss_bps / 1e4))
    short_level = jnp.minimum(stop_price, bar_close * (1 + stop_loss_bps / 1e4))
    trailed = jnp.where(position > 0, long_level, short_level)
    return jnp.where(trailing_stop & (position != 0) & (stop_loss_bps > 0), trailed, stop_price)


def compute_reward(equity_before, equity_after, initial_cash, reward_kind):
    """``log(E[t+1]/E[t])`` (kind 0, floored, see MIN_LOG_RATIO_MINUS_1) or ``ΔE / initial_cash`` (kind 1)."""
    change = equity_after - equity_before
    log_return = jnp.log1p(jnp.maximum(change / equity_before, MIN_LOG_RATIO_MINUS_1))
    return jnp.where(reward_kind == 1, change / initial_cash, log_return)


def is_killed(equity, peak_equity, max_drawdown):
    """The kill switch (§5): equity at or below the drawdown limit from its peak, or not positive."""
    return (equity <= peak_equity * (1 - max_drawdown)) | (equity <= 0)
