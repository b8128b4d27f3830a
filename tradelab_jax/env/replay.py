"""Replay a fixed action sequence through the environment's own step: the backtest API."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tradelab_jax.env.policies import Replayed
from tradelab_jax.env.rollout import rollout, trim_at_termination
from tradelab_jax.env.trading import TELEMETRY, EnvParams, TradingEnv, build_params, stack_ohlc
from tradelab_jax.errors import UserError


def replay(bars: Mapping[str, Any], actions: Any, *, start: int = 0, **knobs: Any) -> dict[str, np.ndarray]:
    """Run ``actions[i]`` (indices into ``position_buckets``) at decision bars ``start + i`` under jit.

    ``bars`` maps ``open``/``high``/``low``/``close`` (and optionally ``volume``) to ``[T]`` arrays; the
    knobs are those of docs/execution-semantics.md §7 with its defaults. Each step needs bar ``t+1``, so
    ``start + len(actions) <= T - 1``. Returns the §6 telemetry arrays plus ``terminated``, one row per
    step, ending at the first termination (kill switch). Prices and cash are float32 by default and
    float64 inside ``jax.enable_x64(True)``.
    """
    ohlc = stack_ohlc(bars)
    acts = np.asarray(actions)
    if acts.ndim != 1 or acts.size == 0 or not np.issubdtype(acts.dtype, np.integer):
        raise UserError("actions must be a non-empty 1-D sequence of integer bucket indices")
    n_bars = ohlc.shape[0]
    if start < 0 or start + acts.size > n_bars - 1:
        raise UserError(
            f"{acts.size} actions from bar {start} need bars up to {start + acts.size}, "
            f"but the series has bars 0..{n_bars - 1}"
        )
    knobs = {**knobs, "episode_length": acts.size, "random_start": False}
    params = build_params(
        ohlc, np.zeros((1, 0), np.float32), start_min=start, start_max=start, last_bar=n_bars - 1, **knobs
    )
    n_actions = params.position_buckets.shape[0]
    if acts.min() < 0 or acts.max() >= n_actions:
        raise UserError(f"actions must lie in 0..{n_actions - 1} (indices into position_buckets)")
    return trim_at_termination(_replay_jit(params, jnp.asarray(acts, jnp.int32)))


def _replay_impl(params: EnvParams, actions: jax.Array) -> dict[str, jax.Array]:
    """The episode runner with the given actions as its policy; no observation is needed (none is built)."""
    env = TradingEnv(params.position_buckets.shape[0], window=1, num_features=params.features.shape[1])
    telemetry = rollout(env, params, Replayed(actions), jax.random.key(0), params.start_min, actions.shape[0])
    del telemetry["action"]  # the input, not telemetry
    assert set(TELEMETRY) < set(telemetry)
    return telemetry


_replay_jit = jax.jit(_replay_impl)
