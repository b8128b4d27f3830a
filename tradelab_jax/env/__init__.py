"""The trading environment: gymnax 1.0 API, the replay/backtest API and sweep helpers.

>>> env, params = make("binance_btcusdt_1m", split="train", risk_pct=0.02)
>>> obs, state = env.reset(key, params)
>>> obs, state, reward, terminated, truncated, info = env.step(key, state, action, params)

To run a batch of environments that each have their own knobs::

    batched, in_axes = sweep_params(params, risk_pct=[0.005, 0.01, 0.02], order_type=["limit"] * 3)
    jax.vmap(env.step, in_axes=(0, 0, 0, in_axes))(keys, states, actions, batched)

The market arrays (``ohlc``, ``features``) are never copied per environment: ``in_axes`` broadcasts them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np

from tradelab_jax.env.replay import replay
from tradelab_jax.env.trading import (
    ACCOUNT_FEATURES,
    MARKET_FIELDS,
    TELEMETRY,
    EnvParams,
    EnvState,
    TradingEnv,
    from_arrays,
    params_in_axes,
    transition,
)
from tradelab_jax.errors import UserError
from tradelab_jax.knobs import PARAM_KNOBS as KNOB_NAMES
from tradelab_jax.knobs import check_env_sweep as check_sweep
from tradelab_jax.knobs import env_defaults

DEFAULTS = env_defaults()  # the EnvParams knobs' defaults, from the knob table

__all__ = [
    "ACCOUNT_FEATURES",
    "DEFAULTS",
    "KNOB_NAMES",
    "MARKET_FIELDS",
    "TELEMETRY",
    "EnvParams",
    "EnvState",
    "TradingEnv",
    "from_arrays",
    "from_market",
    "make",
    "params_in_axes",
    "replay",
    "sweep_params",
    "transition",
]


def make(dataset_id: str, *, features: Any = "default", split: str = "train", lake: Any = None,
         window: int = 1, split_fractions: Sequence[float] | None = None,
         split_dates: Sequence[Any] | None = None, **knobs: Any) -> tuple[TradingEnv, EnvParams]:
    """``(env, params)`` for a dataset of the lake, mirroring ``gymnax.make``.

    ``features`` names a feature set (``default``, ``full``, a YAML path or a sequence of FeatureSpec);
    ``split`` is ``train``, ``val`` or ``test``, cut by ``split_fractions`` (default 0.7/0.15/0.15) or
    ``split_dates=(val_start, test_start)`` as in ``MarketData.split``. Features are computed over the
    whole series (they are causal), so a later split's first bars see history from before it; episodes
    start and end inside ``split``. ``window`` is the number of feature rows in an observation; the other
    keywords are the knobs of docs/execution-semantics.md.
    """
    from tradelab_jax import data
    from tradelab_jax import features as feature_sets

    market = data.load(dataset_id, lake=lake)
    specs = feature_sets.load_feature_set(features) if isinstance(features, str) else tuple(features)
    matrix = feature_sets.compute_features(market.bars, specs)
    return from_market(market, matrix, split=split, window=window, split_fractions=split_fractions,
                       split_dates=split_dates, **knobs)


def from_market(market: Any, matrix: Any, *, split: str = "train", window: int = 1,
                split_fractions: Sequence[float] | None = None, split_dates: Sequence[Any] | None = None,
                **knobs: Any) -> tuple[TradingEnv, EnvParams]:
    """``(env, params)`` of one split from a loaded dataset (``data.load``) and its feature matrix
    (``features.compute_features`` over the whole series): :func:`make` without loading anything, so a
    caller that needs several splits or sweep points loads and verifies the dataset once."""
    bars = market.bars
    n = len(bars["close"])
    split_range = _split_range(market, split, n, split_fractions, split_dates)
    return from_arrays(bars, np.asarray(matrix.values), warmup=int(matrix.warmup), split=split_range,
                       window=window, **knobs)


def _split_range(market: Any, split: str, n: int, fractions: Sequence[float] | None,
                 dates: Sequence[Any] | None) -> tuple[int, int]:
    if split not in ("train", "val", "test"):
        raise UserError(f"invalid split {split!r}: expected train, val or test")
    kwargs = {} if fractions is None else {"fractions": tuple(fractions)}
    part = market.split(split, dates=dates, **kwargs)
    ts = np.asarray(market.bars["ts"])
    part_ts = np.asarray(part.bars["ts"])
    if part_ts.size == 0:
        raise UserError(f"split {split!r} of {market.dataset_id} has no bars")
    start = int(np.searchsorted(ts, part_ts[0]))
    stop = start + part_ts.size
    if stop > n or ts[start] != part_ts[0] or ts[stop - 1] != part_ts[-1]:
        raise AssertionError("a split must be a contiguous range of the loaded bars")
    return start, stop


def sweep_params(params: EnvParams, **knobs: Any) -> tuple[EnvParams, EnvParams]:
    """Batch knob values for ``vmap``: ``(batched params, in_axes)``.

    Each keyword gives one value per environment (all the same length ``N``; ``position_buckets`` takes
    ``N`` lists of equal length). Swept knobs get a leading ``[N]`` axis and ``in_axes`` 0; other knobs
    and the market arrays stay shared (``in_axes`` None). For a grid, build the product yourself
    (``itertools.product``) and pass the flattened columns.
    """
    if not knobs:
        raise UserError("sweep_params needs at least one knob to sweep")
    unknown = [k for k in knobs if k not in KNOB_NAMES]
    if unknown:
        raise UserError(f"unknown knob {unknown[0]!r}; valid knobs: {', '.join(KNOB_NAMES)}")
    columns = {name: check_sweep(name, values) for name, values in knobs.items()}
    sizes = {len(v) for v in columns.values()}
    if len(sizes) != 1:
        raise UserError(f"swept knobs must all have the same number of values, got {sorted(sizes)}")
    batched = {}
    for name, values in columns.items():
        leaf = getattr(params, name)
        if name == "position_buckets" and len(values[0]) != leaf.shape[-1]:
            raise UserError(
                f"swept position_buckets must have {leaf.shape[-1]} buckets like the env's action space"
            )
        batched[name] = jnp.asarray(np.asarray(values), leaf.dtype)
    return params.replace(**batched), params_in_axes(params, tuple(batched))
