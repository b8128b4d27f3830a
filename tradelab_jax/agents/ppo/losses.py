"""GAE and the clipped PPO loss as pure functions (shapes: ``T`` time, ``E`` envs, ``B`` batch)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp


def compute_gae(
    rewards: jax.Array,
    values: jax.Array,
    next_values: jax.Array,
    terminated: jax.Array,
    truncated: jax.Array,
    gamma: float | jax.Array,
    gae_lambda: float | jax.Array,
) -> tuple[jax.Array, jax.Array]:
    """Generalised advantage estimates and value targets.

    Args (all ``[T, E]``):
      rewards: reward of the transition ``t -> t+1``.
      values: ``V(s_t)``.
      next_values: ``V(s_{t+1})`` of the *true* next state, i.e. before any auto-reset (gymnax's
        ``info["final_observation"]``), so a truncated episode bootstraps from where it was cut.
      terminated: the episode ended in ``s_{t+1}``: no bootstrap (its value is 0).
      truncated: the episode was cut at ``s_{t+1}`` (time limit, end of data): bootstrap from
        ``next_values``. Both flags end the advantage trace, because ``s_{t+1}`` starts a new episode in
        the rollout.

    Returns ``(advantages [T, E], targets [T, E])`` with ``targets = advantages + values``.
    """
    not_terminated = 1.0 - terminated.astype(values.dtype)
    not_done = 1.0 - jnp.logical_or(terminated, truncated).astype(values.dtype)
    deltas = rewards + gamma * next_values * not_terminated - values

    def gae_step(next_advantage, xs):
        delta, cont = xs
        advantage = delta + gamma * gae_lambda * cont * next_advantage
        return advantage, advantage

    _, advantages = jax.lax.scan(
        gae_step, jnp.zeros_like(values[-1]), (deltas, not_done), reverse=True
    )
    return advantages, advantages + values


def categorical_log_prob(logits: jax.Array, actions: jax.Array) -> jax.Array:
    """``log pi(a | s)`` for logits ``[..., A]`` and integer actions ``[...]``."""
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return jnp.take_along_axis(log_probs, actions[..., None].astype(jnp.int32), axis=-1)[..., 0]


def categorical_entropy(logits: jax.Array) -> jax.Array:
    log_probs = jax.nn.log_softmax(logits, axis=-1)
    return -jnp.sum(jnp.exp(log_probs) * log_probs, axis=-1)


def ppo_loss(
    params: Any,
    apply_fn: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]],
    obs: jax.Array,
    actions: jax.Array,
    old_log_probs: jax.Array,
    old_values: jax.Array,
    advantages: jax.Array,
    targets: jax.Array,
    *,
    clip_eps: float | jax.Array,
    vf_coef: float | jax.Array,
    ent_coef: float | jax.Array,
    normalize_advantages: bool = True,
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """Clipped-surrogate PPO loss on one minibatch (every array ``[B]``, ``obs [B, *obs_shape]``).

    ``loss = policy_loss + vf_coef * value_loss - ent_coef * entropy`` where the value loss is the
    clipped form ``0.5 * max((v - target)^2, (clip(v, v_old ± eps) - target)^2)``. Returns the loss and
    an aux dict: ``policy_loss``, ``value_loss``, ``entropy``, ``approx_kl`` (the ``(r - 1) - log r``
    estimator of KL(old || new)) and ``clip_frac`` (share of samples whose ratio was clipped).
    """
    logits, values = apply_fn(params, obs)
    log_probs = categorical_log_prob(logits, actions)

    values_clipped = old_values + jnp.clip(values - old_values, -clip_eps, clip_eps)
    value_loss = 0.5 * jnp.mean(
        jnp.maximum(jnp.square(values - targets), jnp.square(values_clipped - targets))
    )

    if normalize_advantages:
        advantages = (advantages - advantages.mean()) / (advantages.std() + 1e-8)
    log_ratio = log_probs - old_log_probs
    ratio = jnp.exp(log_ratio)
    surrogate = ratio * advantages
    surrogate_clipped = jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps) * advantages
    policy_loss = -jnp.mean(jnp.minimum(surrogate, surrogate_clipped))

    entropy = jnp.mean(categorical_entropy(logits))
    loss = policy_loss + vf_coef * value_loss - ent_coef * entropy
    aux = {
        "policy_loss": policy_loss,
        "value_loss": value_loss,
        "entropy": entropy,
        "approx_kl": jnp.mean((ratio - 1.0) - log_ratio),
        "clip_frac": jnp.mean((jnp.abs(ratio - 1.0) > clip_eps).astype(jnp.float32)),
    }
    return loss, aux
