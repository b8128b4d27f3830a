"""The environment's knobs: names, defaults (docs/execution-semantics.md §7) and checks at the edge.

Every knob here is a traced leaf of :class:`~tradelab_jax.env.trading.EnvParams`, so a batch of
environments can each have their own value. Only shape-setting things (number of actions, observation
window, number of features) are static and live on the env object instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from tradelab_jax.errors import UserError

ORDER_TYPES = {"limit": 0, "market": 1}
REWARDS = {"log_return": 0, "pnl": 1}

# Float knobs with their defaults and the closed/open range a value must lie in.
FLOAT_KNOBS: dict[str, float] = {
    "maker_fee": 0.0002,
    "taker_fee": 0.0005,
    "risk_pct": 0.01,
    "stop_loss_bps": 50.0,
    "max_leverage": 3.0,
    "slippage_bps": 0.0,
    "initial_cash": 10_000.0,
    "max_drawdown": 0.5,
    "rebalance_band": 0.25,
    "min_order_notional": 0.0,
}

DEFAULT_BUCKETS = (-1.0, -0.5, 0.0, 0.5, 1.0)
DEFAULT_EPISODE_LENGTH = 1440  # one day of 1m bars

DEFAULTS: dict[str, Any] = {
    **FLOAT_KNOBS,
    "order_type": "limit",
    "trailing_stop": False,
    "reward": "log_return",
    "position_buckets": DEFAULT_BUCKETS,
    "episode_length": DEFAULT_EPISODE_LENGTH,
    "random_start": True,
}

# (low, low_inclusive, high, high_inclusive, what a valid value is)
_RANGES: dict[str, tuple[float, bool, float, bool, str]] = {
    "maker_fee": (-1.0, False, 1.0, False, "a fraction in (-1, 1); negative is a maker rebate"),
    "taker_fee": (0.0, True, 1.0, False, "a fraction in [0, 1)"),
    "risk_pct": (0.0, False, 1.0, True, "a fraction in (0, 1]"),
    "stop_loss_bps": (0.0, True, 1e4, False, "basis points in [0, 10000); 0 disables the stop"),
    "max_leverage": (0.0, False, math.inf, False, "a positive number"),
    "slippage_bps": (0.0, True, 1e4, False, "basis points in [0, 10000)"),
    "initial_cash": (0.0, False, math.inf, False, "a positive amount of quote currency"),
    "max_drawdown": (0.0, False, 1.0, True, "a fraction in (0, 1]"),
    "rebalance_band": (0.0, True, math.inf, False, "a non-negative fraction of risk units"),
    "min_order_notional": (0.0, True, math.inf, False, "a non-negative amount of quote currency"),
}

KNOB_NAMES = tuple(DEFAULTS)


def _bad(name: str, value: Any, valid: str) -> UserError:
    return UserError(f"invalid knob {name}={value!r}: expected {valid}")


def check_knob(name: str, value: Any) -> Any:
    """One knob value (a scalar, or a sequence for a sweep) checked and normalised to numbers.

    Returns floats for float knobs, ints for ``order_type``/``reward``/``episode_length``, bools for
    ``trailing_stop``/``random_start`` and a float tuple for ``position_buckets``.
    """
    if name not in DEFAULTS:
        raise UserError(f"unknown knob {name!r}; valid knobs: {', '.join(KNOB_NAMES)}")
    if name in FLOAT_KNOBS:
        low, low_inc, high, high_inc, valid = _RANGES[name]
        try:
            x = float(value)
        except (TypeError, ValueError):
            raise _bad(name, value, valid) from None
        ok = math.isfinite(x) and (x >= low if low_inc else x > low) and (x <= high if high_inc else x < high)
        if not ok:
            raise _bad(name, value, valid)
        return x
    if name == "order_type":
        return _choice(name, value, ORDER_TYPES)
    if name == "reward":
        return _choice(name, value, REWARDS)
    if name in ("trailing_stop", "random_start"):
        if isinstance(value, bool | np.bool_) or value in (0, 1):
            return bool(value)
        raise _bad(name, value, "true or false")
    if name == "episode_length":
        if isinstance(value, bool) or not float(value).is_integer() or int(value) < 1:
            raise _bad(name, value, "a whole number of bars >= 1")
        return int(value)
    if name == "position_buckets":
        try:
            arr = np.asarray(value, dtype=np.float64)
        except (TypeError, ValueError):
            raise _bad(name, value, "a non-empty list of finite exposure fractions") from None
        if arr.ndim != 1 or arr.size == 0 or not np.all(np.isfinite(arr)):
            raise _bad(name, value, "a non-empty list of finite exposure fractions")
        return tuple(float(x) for x in arr)
    raise AssertionError(name)  # pragma: no cover


def _choice(name: str, value: Any, choices: Mapping[str, int]) -> int:
    if isinstance(value, str) and value in choices:
        return choices[value]
    if not isinstance(value, str | bool) and value in set(choices.values()):
        return int(value)
    valid = " or ".join(f"{k!r} ({v})" for k, v in choices.items())
    raise _bad(name, value, valid)


def resolve_knobs(knobs: Mapping[str, Any]) -> dict[str, Any]:
    """All knobs: the defaults overridden by ``knobs``, each checked (see :func:`check_knob`)."""
    for name in knobs:
        if name not in DEFAULTS:
            raise UserError(f"unknown knob {name!r}; valid knobs: {', '.join(KNOB_NAMES)}")
    merged = {**DEFAULTS, **knobs}
    return {name: check_knob(name, merged[name]) for name in KNOB_NAMES}


def check_sweep(name: str, values: Sequence[Any]) -> list[Any]:
    """The values of one swept knob, each checked."""
    if name == "position_buckets":
        rows = [check_knob(name, v) for v in values]
        if len({len(r) for r in rows}) > 1:
            raise UserError("swept position_buckets must all have the same number of buckets")
        return rows
    return [check_knob(name, v) for v in np.asarray(values, dtype=object).reshape(-1)]
