"""The one episode runner: a policy in the loop of the env's ``transition`` under one ``lax.scan``.

Replay (``tradelab_jax.env.replay``), ``tradelab episode``, the trainer's evaluation and parity's
rollouts all run episodes through :func:`rollout` (traceable, for callers that vmap it) and cut them with
:func:`trim_at_termination`; :func:`run_episode` is both, jitted, for one episode on the host.
:func:`advance` steps a carried account bar by bar through the same :func:`policy_step` (the paper trader).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np

from tradelab_jax.env.policies import Policy
from tradelab_jax.env.trading import EnvParams, EnvState, TradingEnv, initial_state, transition


def episode_steps(params: EnvParams, start: int | None = None) -> int:
    """Steps of an episode from ``start`` (default the first valid bar) until truncation."""
    first = int(params.start_min) if start is None else int(start)
    return int(min(int(params.episode_length), int(params.last_bar) - first))


def policy_step(env: TradingEnv, params: EnvParams, policy: Policy, state: EnvState, key: jax.Array
                ) -> tuple[EnvState, jax.Array, dict[str, jax.Array]]:
    """One step of every episode here: split the key, let ``policy`` pick a bucket from the observation
    at ``state``, run ``transition``; ``(state, key, row)`` with ``row`` the §7 telemetry plus ``action``
    and ``terminated``. :func:`rollout` scans it and :func:`advance` loops it (pure, traceable)."""
    key, step_key = jax.random.split(key)
    action = jnp.asarray(policy(step_key, env.get_obs(state, params), state.time), jnp.int32)
    stepped, _, terminated, info = transition(state, action, params)
    return stepped, key, {**info, "terminated": terminated, "action": action}


def rollout(env: TradingEnv, params: EnvParams, policy: Policy, key: jax.Array, start: jax.Array,
            n_steps: int, *, freeze: bool = False) -> dict[str, jax.Array]:
    """``n_steps`` steps of ``policy`` from decision bar ``start``: the §7 telemetry plus ``action`` and
    ``terminated``, each ``[n_steps]``, with nothing reset and nothing cut.

    Each step splits the carried key (``key, step_key = split(key)``) and hands ``step_key`` to the policy.
    Rows after the first termination are not part of the episode: :func:`trim_at_termination` drops them.
    ``freeze`` holds the account from the first termination on instead of trading on: the same episode,
    but the program of the trainer's evaluation, whose recorded float32 results depend on it (XLA:CPU
    fuses the step differently around the selects, which moves results by an ulp; it also runs about 4x
    slower, as every select is fused with the whole step). Pure and traceable (vmap it over params, keys
    or a traced policy index).
    """

    def body(carry, _):
        state, alive, key = carry
        stepped, key, row = policy_step(env, params, policy, state, key)
        if freeze:
            stepped = jax.tree.map(lambda new, old: jnp.where(alive, new, old), stepped, state)
        return (stepped, alive & ~row["terminated"], key), row

    carry = (initial_state(params, start), jnp.asarray(True), key)
    _, telemetry = jax.lax.scan(body, carry, None, length=n_steps)
    return telemetry


def trim_at_termination(telemetry: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """The episode's rows of a :func:`rollout`: up to and including the first termination (host arrays)."""
    out = {k: np.asarray(v) for k, v in telemetry.items()}
    ended = np.flatnonzero(out["terminated"])
    if ended.size:
        out = {k: v[: ended[0] + 1] for k, v in out.items()}
    return out


def run_episode(env: TradingEnv, params: EnvParams, policy: Policy, key: jax.Array,
                start: int | None = None, n_steps: int | None = None) -> dict[str, np.ndarray]:
    """Telemetry of one episode from ``start`` (default ``params.start_min``), with ``action`` added.

    Ends at truncation (``episode_length`` steps or the split's last bar; ``n_steps`` replaces that count,
    e.g. to trade a whole split while ``episode_length`` only scales the observation) or at the first
    termination (included). ``policy`` is a static argument of the jit (the policies of
    ``tradelab_jax.env.policies`` hash so that equal baselines share one compile).
    """
    first = int(params.start_min) if start is None else int(start)
    n_steps = episode_steps(params, first) if n_steps is None else int(n_steps)
    out = _rollout_jit(env, params, policy, key, jnp.asarray(first, params.start_min.dtype), n_steps)
    return trim_at_termination(out)


_rollout_jit = jax.jit(rollout, static_argnums=(0, 2, 5))


def advance(env: TradingEnv, params: EnvParams, policy: Policy, state: EnvState, key: jax.Array,
            n: jax.Array, capacity: int) -> tuple[EnvState, jax.Array, dict[str, jax.Array]]:
    """Up to ``n`` (traced, <= ``capacity``) :func:`policy_step` steps from a carried ``state`` and
    ``key``, stopping after the first termination: ``(state, key, rows)``, each row leaf ``[capacity]``,
    of which the first ``rows["done"]`` (a scalar count) are the steps taken. Besides the telemetry each
    row holds ``state`` (the EnvState after that step) and ``key`` (the carried key's data after it), so a
    caller can persist the account bar by bar and resume from any of them.

    The live loop of ``tradelab paper``: one compiled program serves every call whatever ``n`` and
    whatever bar ``state.t`` points at. It is a ``while_loop`` with a traced trip count because on XLA:CPU
    that gave numbers bit-identical to :func:`rollout`'s scan over the same bars, while a jit of one bare
    step (or a scan of length 1, which XLA inlines) fuses ``cash - delta * price - fee`` differently and
    moved cash by an ulp in 146 of 1,439 steps. tests/paper checks the equality; other backends are not
    checked.
    """
    def step(state, key):
        state, key, row = policy_step(env, params, policy, state, key)
        return state, key, {**row, "state": state, "key": jax.random.key_data(key)}

    shapes = jax.eval_shape(lambda s, k: step(s, k)[2], state, key)
    rows = jax.tree.map(lambda leaf: jnp.zeros((capacity, *leaf.shape), leaf.dtype), shapes)

    def cond(carry):
        i, ended = carry[0], carry[1]
        return (i < n) & ~ended

    def body(carry):
        i, _, state, key, rows = carry
        state, key, row = step(state, key)
        rows = jax.tree.map(lambda buf, value: buf.at[i].set(value), rows, row)
        return i + 1, row["terminated"], state, key, rows

    start = (jnp.asarray(0, jnp.int32), jnp.asarray(False), state, key, rows)
    done, _, state, key, rows = jax.lax.while_loop(cond, body, start)
    return state, key, {**rows, "done": done}


advance_jit = jax.jit(advance, static_argnums=(0, 2, 6))
