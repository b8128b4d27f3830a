"""Small pure accounting kernels of one step (docs/execution-semantics.md §2-§5).

Each function maps arrays to arrays with no control flow on values (``jnp.where`` only), so the same code
runs for one environment, under ``vmap`` for thousands, and for a batch whose knobs differ. Prices, cash
and quantities are in the params dtype (float32 by default, float64 under x64). Flat positions carry
``entry_price = 0`` and ``stop_price = 0`` internally; telemetry reports NaN for them instead.

Arguments that travel together are small records (:class:`Bar`, :class:`Account`, :class:`Sizing`,
:class:`Order`, :class:`Fill`) and every other argument is keyword-only, so no call can swap two arrays of
the same shape (a bar's high for its low, the maker fee for the taker fee) without a name saying so.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

# An order smaller than this many risk units is rounding noise (e.g. the 1e-17 BTC left when an all-in
# target is recomputed from a cash balance of +-1e-12), not an order: sending it would pay a fee and
# reset the stop. It matters only with rebalance_band = 0.
DUST_RISK_UNITS = 1e-6

# log1p's argument is floored here so a wiped-out account gets a large finite penalty, never -inf.
# 2**-20 - 1 is exact in float32 and float64, so both dtypes share the floor log(2**-20) ≈ -13.86.
MIN_LOG_RATIO_MINUS_1 = 2.0**-20 - 1.0


class Bar(NamedTuple):
    """One bar's open, high, low and close (quote currency)."""

    open: jax.Array
    high: jax.Array
    low: jax.Array
    close: jax.Array

    @classmethod
    def at(cls, ohlc: jax.Array, t: jax.Array) -> Bar:
        """Bar ``t`` of a ``[T, 4]`` open/high/low/close array."""
        row = ohlc[t]
        return cls(row[0], row[1], row[2], row[3])


class Account(NamedTuple):
    """Cash (quote), signed position (base units), average entry and stop (0 while flat)."""

    cash: jax.Array
    position: jax.Array
    entry_price: jax.Array
    stop_price: jax.Array

    @classmethod
    def of(cls, state: Any) -> Account:
        """The account fields of a state (read by name, e.g. from an ``EnvState``)."""
        return cls(state.cash, state.position, state.entry_price, state.stop_price)


class Sizing(NamedTuple):
    """RiskGuard's sizing at the decision price (§2): risk units and leverage cap (base units), stop
    distance (quote)."""

    risk_units: jax.Array
    cap: jax.Array
    stop_distance: jax.Array


class Order(NamedTuple):
    """The rebalance order decided at ``c[t]`` (§2): target and signed size (base units), whether it is
    sent, and the decision price ``c[t]`` (a limit order's price)."""

    target: jax.Array
    delta: jax.Array
    send: jax.Array
    limit_price: jax.Array


class Fill(NamedTuple):
    """An execution: the rebalance fill (§3) or the stop's exit (§4). ``price`` and ``fee`` are 0 when
    ``filled`` is false."""

    filled: jax.Array
    price: jax.Array
    fee: jax.Array


def compute_risk_units(*, equity, price, risk_pct, stop_loss_bps, max_leverage) -> Sizing:
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
    return Sizing(jnp.where(live, units, 0.0), jnp.where(live, cap, 0.0), stop_distance)


def compute_order(sizing: Sizing, *, fraction, position, price, rebalance_band, min_order_notional) -> Order:
    """Target position, order size ``delta`` and whether the order is sent (§2).

    ``fraction * risk_units`` is clipped to ``±cap`` so buckets beyond ±1 never exceed the leverage cap.
    A change of at most :data:`DUST_RISK_UNITS` risk units is no order (the contract's ``delta == 0``).
    """
    risk_units, cap = sizing.risk_units, sizing.cap
    target = jnp.clip(fraction * risk_units, -cap, cap)
    delta = target - position
    size = jnp.abs(delta)
    send = (
        (delta != 0)
        & (size > DUST_RISK_UNITS * risk_units)
        & (size >= rebalance_band * risk_units)
        & (size * price >= min_order_notional)
    )
    return Order(target, delta, send, price)


def execute_order(order: Order, bar: Bar, *, is_market, maker_fee, taker_fee, slippage_bps) -> Fill:
    """Fill of the rebalance order in the next bar (§3).

    Limit orders rest at ``order.limit_price`` and fill there when touched; market orders fill at the open
    moved against the order by the slippage. Unfilled orders have price and fee 0 here.
    """
    delta = order.delta
    side = jnp.sign(delta)
    market_price = bar.open * (1 + side * slippage_bps / 1e4)
    touched = jnp.where(delta > 0, bar.low <= order.limit_price, bar.high >= order.limit_price)
    filled = order.send & (is_market | touched)
    price = jnp.where(is_market, market_price, order.limit_price)
    rate = jnp.where(is_market, taker_fee, maker_fee)
    fee = jnp.where(filled, rate * jnp.abs(delta) * price, 0.0)
    return Fill(filled, jnp.where(filled, price, 0.0), fee)


def apply_fill(account: Account, order: Order, fill: Fill, *, stop_loss_bps) -> Account:
    """Cash, position, average entry and stop after a fill (§3); unchanged when not filled."""
    cash, position, entry_price, stop_price = account
    delta, filled, fill_price = order.delta, fill.filled, fill.price
    new_position = jnp.where(filled, position + delta, position)
    new_cash = jnp.where(filled, cash - delta * fill_price - fill.fee, cash)
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
    return Account(new_cash, new_position, entry, stop)


def check_stop(account: Account, bar: Bar, *, stop_loss_bps, taker_fee, slippage_bps) -> Fill:
    """Stop-loss in the bar after execution (§4): the exit, ``filled`` when the stop is hit.

    A gap through the stop exits at the open; the exit is a market order moved against the position by
    the slippage and charged the taker fee.
    """
    position, stop_price = account.position, account.stop_price
    long = position > 0
    short = position < 0
    hit = (stop_loss_bps > 0) & ((long & (bar.low <= stop_price)) | (short & (bar.high >= stop_price)))
    level = jnp.where(long, jnp.minimum(stop_price, bar.open), jnp.maximum(stop_price, bar.open))
    exit_price = level * (1 - jnp.sign(position) * slippage_bps / 1e4)
    fee = jnp.where(hit, taker_fee * jnp.abs(position) * exit_price, 0.0)
    return Fill(hit, jnp.where(hit, exit_price, 0.0), fee)


def trail_stop(bar: Bar, *, position, stop_price, stop_loss_bps, trailing_stop):
    """The trailing stop after the bar (§4): only ever tightens; unchanged when off or flat."""
    long_level = jnp.maximum(stop_price, bar.close * (1 - stop_loss_bps / 1e4))
    short_level = jnp.minimum(stop_price, bar.close * (1 + stop_loss_bps / 1e4))
    trailed = jnp.where(position > 0, long_level, short_level)
    return jnp.where(trailing_stop & (position != 0) & (stop_loss_bps > 0), trailed, stop_price)


def compute_reward(*, equity_before, equity_after, initial_cash, reward_kind):
    """``log(E[t+1]/E[t])`` (kind 0, floored, see MIN_LOG_RATIO_MINUS_1) or ``ΔE / initial_cash`` (kind 1)."""
    change = equity_after - equity_before
    log_return = jnp.log1p(jnp.maximum(change / equity_before, MIN_LOG_RATIO_MINUS_1))
    return jnp.where(reward_kind == 1, change / initial_cash, log_return)


def is_killed(*, equity, peak_equity, max_drawdown):
    """The kill switch (§5): equity at or below the drawdown limit from its peak, or not positive."""
    return (equity <= peak_equity * (1 - max_drawdown)) | (equity <= 0)
