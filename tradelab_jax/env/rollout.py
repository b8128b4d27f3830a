"""Run one episode with a policy in the loop (evaluation, `tradelab episode`)."""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from tradelab_jax.env.trading import EnvParams, TradingEnv, initial_state, transition

# policy(key, obs [obs_size] float32) -> action (int scalar); pure and jit-able.
Policy = Callable[[jax.Array, jax.Array], jax.Array]


def episode_steps(params: EnvParams, start: int | None = None) -> int:
    """Steps of an episode from ``start`` (default the first valid bar) until truncation."""
    first = int(params.start_min) if start is None else int(start)
    return int(min(int(params.episode_length), int(params.last_bar) - first))


def run_episode(env: TradingEnv, params: EnvParams, policy: Policy, key: jax.Array,
                start: int | None = None, n_steps: int | None = None) -> dict[str, np.ndarray]:
    """Telemetry of one episode from ``start`` (default ``params.start_min``), with ``action`` added.

    Ends at truncation (``episode_length`` steps or the split's last bar; ``n_steps`` replaces that count,
    e.g. to trade a whole split while ``episode_length`` only scales the observation) or at the first
    termination (included). The episode runs under one ``lax.scan``; nothing resets.
    """
    first = int(params.start_min) if start is None else int(start)
    n_steps = episode_steps(params, first) if n_steps is None else int(n_steps)
    out = _episode(env, policy, n_steps, params, key, jnp.asarray(first, params.start_min.dtype))
    out = {k: np.asarray(v) for k, v in out.items()}
    ended = np.flatnonzero(out["terminated"])
    if ended.size:
        out = {k: v[: ended[0] + 1] for k, v in out.items()}
    return out


@partial(jax.jit, static_argnums=(0, 1, 2))
def _episode(env: TradingEnv, policy: Policy, n_steps: int, params: EnvParams, key: jax.Array,
             start: jax.Array) -> dict[str, jax.Array]:
    def body(state, step_key):
        action = jnp.asarray(policy(step_key, env.get_obs(state, params)), jnp.int32)
        state, _, terminated, info = transition(state, action, params)
        return state, {**info, "terminated": terminated, "action": action}

    _, telemetry = jax.lax.scan(body, initial_state(params, start), jax.random.split(key, n_steps))
    return telemetry
