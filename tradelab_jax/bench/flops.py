"""FLOP counts of a PPO training step and the machine's measured matmul peak.

XLA's ``cost_analysis()`` counts the body of a ``while`` loop once, whatever its trip count, so on the
compiled training chunk (nested ``lax.scan``s) it undercounts by orders of magnitude. The training FLOPs are
therefore counted per env step from the parts: the networks' matmuls (the usual "model FLOPs": forward
``2 * in * out`` per dense layer, backward twice the forward) plus the env step's own FLOPs as XLA counts
them for one vmapped step (no loop inside, so that count is exact).
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp


def mlp_flops(in_size: int, hidden_sizes: Sequence[int], out_size: int) -> int:
    """Matmul FLOPs of one forward pass of one sample through dense layers ``in -> hidden... -> out``."""
    sizes = [int(in_size), *(int(h) for h in hidden_sizes), int(out_size)]
    return sum(2 * a * b for a, b in itertools.pairwise(sizes))


def ppo_flops_per_env_step(obs_size: int, num_actions: int, hidden_sizes: Sequence[int], epochs: int,
                           env_step_flops: float = 0.0) -> dict[str, float]:
    """FLOPs that one env step costs tradelab's PPO (separate actor and critic MLPs).

    Rollout: the actor-critic runs on the observation and on the pre-reset next observation (the
    bootstrap value), i.e. two forward passes, plus the env step. Update: every sample passes forward and
    backward (2x forward) once per epoch.
    """
    forward = mlp_flops(obs_size, hidden_sizes, num_actions) + mlp_flops(obs_size, hidden_sizes, 1)
    rollout = 2 * forward + env_step_flops
    update = 3 * forward * int(epochs)
    return {"forward": float(forward), "rollout": float(rollout), "update": float(update),
            "total": float(rollout + update)}


def xla_flops(compiled: Any) -> float | None:
    """``cost_analysis()["flops"]`` of a compiled JAX function (None when the backend gives none)."""
    try:
        cost = compiled.cost_analysis()
    except Exception:  # some backends do not implement it
        return None
    if isinstance(cost, (list, tuple)):  # older jax: one dict per computation
        cost = cost[0] if cost else None
    if not cost or "flops" not in cost:
        return None
    return float(cost["flops"])


def env_step_flops(env: Any, env_params: Any, num_envs: int = 256) -> float | None:
    """XLA's FLOPs of one env step (auto-reset included), from one vmapped step of ``num_envs`` envs."""
    keys = jax.random.split(jax.random.PRNGKey(0), num_envs)
    _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, env_params)
    actions = jnp.zeros((num_envs,), jnp.int32)
    step = jax.jit(jax.vmap(env.step, in_axes=(0, 0, 0, None)))
    flops = xla_flops(step.lower(keys, state, actions, env_params).compile())
    return None if flops is None else flops / num_envs


def measure_matmul_peak(n: int = 2048, repeats: int = 5, dtype: Any = jnp.float32) -> dict[str, float]:
    """Best-of-``repeats`` FLOP/s of one ``[n, n] @ [n, n]`` matmul on the default JAX device."""
    a = jax.random.normal(jax.random.PRNGKey(0), (n, n), dtype)
    b = jax.random.normal(jax.random.PRNGKey(1), (n, n), dtype)
    matmul = jax.jit(jnp.dot).lower(a, b).compile()
    jax.block_until_ready(matmul(a, b))
    best = float("inf")
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(matmul(a, b))
        best = min(best, time.perf_counter() - t0)
    return {"n": n, "dtype": jnp.dtype(dtype).name, "seconds": best, "flops_per_s": 2.0 * n**3 / best}
