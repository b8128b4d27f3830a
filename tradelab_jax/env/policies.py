"""The policies that trade an episode: the greedy agent, the baselines and a given action sequence.

A policy is ``policy(key, obs, step) -> action``: a fresh PRNG key for this step, the observation
(``[obs_size]`` float32) and the step's index in the episode (0, 1, ...), to a bucket index (int32). Every
policy here is pure and jit-able, and the evaluation stacks them: :data:`POLICIES` names the stack's
entries and :func:`select` turns an index into one policy (``lax.switch``), so one vmapped program trades
every policy. The baselines are defined here once, for the trainer's evaluation, ``tradelab episode`` and
parity alike:

- ``buy_and_hold``: always the bucket nearest +1 (one risk unit long), the first such bucket on a tie
  (:func:`buy_and_hold_index`); it is the +1 bucket whenever the buckets have one, and never a levered
  bucket such as +2. It trades through RiskGuard like every policy (sized in risk units, with the
  stop-loss), so it is not the asset's own buy-and-hold, which is :func:`asset_return`.
- ``flat``: always the bucket nearest 0, the first on a tie (:func:`flat_index`).
- ``random``: uniform over the bucket indices, from the step's key.

Imports only JAX and NumPy: nothing from training, Hydra or the UI.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

# policy(key, obs [obs_size] float32, step int) -> action (int32 bucket index)
Policy = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]

# The evaluation's stack, in order: policies[i] of stack() is POLICIES[i]; "agent" is the greedy policy.
POLICIES = ("agent", "buy_and_hold", "flat", "random")
BASELINES = POLICIES[1:]


def buy_and_hold_index(buckets: Sequence[float]) -> int:
    """Index of the ``buy_and_hold`` bucket: the one nearest +1, the first on a tie (float64)."""
    return int(np.argmin(np.abs(np.asarray(buckets, np.float64) - 1.0)))


def flat_index(buckets: Sequence[float]) -> int:
    """Index of the ``flat`` bucket: the one nearest 0, the first on a tie (float64)."""
    return int(np.argmin(np.abs(np.asarray(buckets, np.float64))))


def asset_return(close: np.ndarray, start: int, last_bar: int) -> float:
    """The asset's own unlevered buy-and-hold over an evaluated range: the close of its last traded bar
    over the close at its first decision bar, minus 1 (no fees, no RiskGuard)."""
    return float(close[last_bar] / close[start] - 1.0)


@dataclasses.dataclass(frozen=True)
class Constant:
    """Always bucket ``action`` (an int, or a traced int inside a vmapped evaluation)."""

    action: Any

    def __call__(self, key, obs, step):
        return jnp.asarray(self.action, jnp.int32)


@dataclasses.dataclass(frozen=True)
class Uniform:
    """Uniform over bucket indices ``0 .. num_actions - 1``, drawn from the step's key."""

    num_actions: int

    def __call__(self, key, obs, step):
        return jax.random.randint(key, (), 0, self.num_actions)


@dataclasses.dataclass(frozen=True, eq=False)
class Greedy:
    """The argmax of a trained actor's logits: ``logits(obs) -> [A]`` (the deterministic policy)."""

    logits: Callable[[jax.Array], jax.Array]

    def __call__(self, key, obs, step):
        return jnp.argmax(self.logits(obs))


@dataclasses.dataclass(frozen=True, eq=False)
class Replayed:
    """``actions[step]``: a fixed action sequence (``[n]`` int bucket indices), as a backtest replays it."""

    actions: jax.Array

    def __call__(self, key, obs, step):
        return self.actions[step]


@dataclasses.dataclass(frozen=True, eq=False)
class Switch:
    """``policies[index]`` for an index that may be traced: ``lax.switch`` (under vmap every policy runs
    and the chosen action is selected)."""

    policies: tuple[Policy, ...]
    index: Any

    def __call__(self, key, obs, step):
        branches = [lambda k, o, s, p=p: jnp.asarray(p(k, o, s), jnp.int32) for p in self.policies]
        return jax.lax.switch(self.index, branches, key, obs, step)


def stack(num_actions: int, buy_and_hold: Any, flat: Any,
          logits: Callable[[jax.Array], jax.Array]) -> tuple[Policy, ...]:
    """The :data:`POLICIES` in order; ``buy_and_hold`` and ``flat`` are bucket indices (ints or traced)."""
    return (Greedy(logits), Constant(buy_and_hold), Constant(flat), Uniform(num_actions))


def select(policies: Sequence[Policy], index: Any) -> Policy:
    """One policy from a stack: ``policies[index]`` (the policy itself when ``index`` is a Python int)."""
    if isinstance(index, int):
        return policies[index]
    return Switch(tuple(policies), index)


def baseline(name: str, buckets: Sequence[float]) -> Policy:
    """The baseline ``name`` (one of :data:`BASELINES`) over ``buckets`` (exposure fractions)."""
    if name == "buy_and_hold":
        return Constant(buy_and_hold_index(buckets))
    if name == "flat":
        return Constant(flat_index(buckets))
    if name == "random":
        return Uniform(len(buckets))
    raise ValueError(f"unknown baseline {name!r}; expected one of {', '.join(BASELINES)}")
