"""GAE and the clipped PPO loss against values worked out by hand."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from tradelab_jax.agents.ppo.losses import compute_gae, ppo_loss


def _col(values):
    return jnp.asarray(values, jnp.float32)[:, None]  # [T, E=1]


def test_gae_truncation_bootstraps_and_termination_does_not():
    # gamma 0.9, lambda 0.5. Step 0 is ordinary; step 1 is truncated (the true next state has value 4.0,
    # while the rollout continues from a reset state of value 1.5); step 2 terminates (its next value, 2.0,
    # must be ignored).
    #   d0 = 1 + 0.9 * 1.0 - 0.5 = 1.4
    #   d1 = 2 + 0.9 * 4.0 - 1.0 = 4.6
    #   d2 = 3 + 0           - 1.5 = 1.5
    #   A2 = 1.5;  A1 = 4.6 (the trace stops at the episode end);  A0 = 1.4 + 0.45 * 4.6 = 3.47
    adv, targets = compute_gae(
        rewards=_col([1.0, 2.0, 3.0]),
        values=_col([0.5, 1.0, 1.5]),
        next_values=_col([1.0, 4.0, 2.0]),
        terminated=_col([0, 0, 1]).astype(bool),
        truncated=_col([0, 1, 0]).astype(bool),
        gamma=0.9,
        gae_lambda=0.5,
    )
    np.testing.assert_allclose(adv[:, 0], [3.47, 4.6, 1.5], rtol=1e-6)
    np.testing.assert_allclose(targets[:, 0], [3.97, 5.6, 3.0], rtol=1e-6)


def test_gae_bootstraps_at_the_end_of_the_rollout_and_handles_envs_independently():
    # Env 0 never ends: A2 = 1 + 0.5 * 2 - 1 = 1;  A1 = (1 + 0.5 - 1) + 0.5 * 1 * 1 = 1.0;
    #                   A0 = (1 + 0.5 - 1) + 0.5 * 1.0 = 1.0  (gamma 0.5, lambda 1, V = 1 everywhere but
    #                   the last next value, 2).
    # Env 1 terminates at step 0 and truncates at step 2 with next value 2: A2 = 1 + 1 - 1 = 1,
    #                   A1 = 0.5 + 0.5 * 1 = 1.0, A0 = 1 + 0 - 1 = 0 (cut).
    rewards = jnp.ones((3, 2))
    values = jnp.ones((3, 2))
    next_values = jnp.array([[1.0, 1.0], [1.0, 1.0], [2.0, 2.0]])
    terminated = jnp.array([[False, True], [False, False], [False, False]])
    truncated = jnp.array([[False, False], [False, False], [False, True]])
    adv, _ = compute_gae(rewards, values, next_values, terminated, truncated, 0.5, 1.0)
    np.testing.assert_allclose(adv, [[1.0, 0.0], [1.0, 1.0], [1.0, 1.0]], rtol=1e-6)


def _fixed_apply(params, obs):
    del obs
    return params["logits"], params["values"]


def _tiny_case():
    params = {
        "logits": jnp.array([[0.0, 0.0], [math.log(3.0), 0.0]]),  # pi = [.5, .5] and [.75, .25]
        "values": jnp.array([1.0, 2.0]),
    }
    batch = dict(
        obs=jnp.zeros((2, 1)),
        actions=jnp.array([0, 0]),
        old_log_probs=jnp.log(jnp.array([0.4, 0.75])),  # ratios 1.25 and 1.0
        old_values=jnp.array([0.5, 2.5]),
        advantages=jnp.array([1.0, -1.0]),
        targets=jnp.array([2.0, 1.0]),
    )
    return params, batch


def test_ppo_loss_on_tiny_numbers():
    params, batch = _tiny_case()
    loss, aux = ppo_loss(
        params, _fixed_apply, **batch, clip_eps=0.2, vf_coef=0.5, ent_coef=0.01, normalize_advantages=False
    )
    # policy: min(1.25 * 1, 1.2 * 1) = 1.2 and min(-1, -1) = -1  -> -mean = -0.1
    # value: v - v_old = +0.5 / -0.5 is clipped to ±0.2 -> 0.7 / 2.3; max((1-2)^2, (0.7-2)^2) = 1.69 twice
    #        -> 0.5 * 1.69 = 0.845
    # entropy: ln 2 = 0.693147 and -(.75 ln .75 + .25 ln .25) = 0.562335 -> 0.627741
    # approx KL: (1.25 - 1) - ln 1.25 = 0.026856 and 0 -> 0.013428
    expected_entropy = (math.log(2) - (0.75 * math.log(0.75) + 0.25 * math.log(0.25))) / 2
    np.testing.assert_allclose(aux["policy_loss"], -0.1, rtol=1e-6)
    np.testing.assert_allclose(aux["value_loss"], 0.845, rtol=1e-6)
    np.testing.assert_allclose(aux["entropy"], expected_entropy, rtol=1e-6)
    np.testing.assert_allclose(aux["approx_kl"], (0.25 - math.log(1.25)) / 2, rtol=1e-5)
    np.testing.assert_allclose(aux["clip_frac"], 0.5)
    np.testing.assert_allclose(loss, -0.1 + 0.5 * 0.845 - 0.01 * expected_entropy, rtol=1e-6)


def test_clipped_sample_gets_no_policy_gradient():
    params, batch = _tiny_case()

    def policy_loss(p):
        return ppo_loss(p, _fixed_apply, **batch, clip_eps=0.2, vf_coef=0.0, ent_coef=0.0,
                        normalize_advantages=False)[0]

    grads = jax.grad(policy_loss)(params)
    # Sample 0 has ratio 1.25 > 1.2 with a positive advantage: clipped, so no gradient.
    np.testing.assert_allclose(grads["logits"][0], [0.0, 0.0], atol=1e-7)
    # Sample 1 is unclipped: d(-(-1 * ratio)/2)/d logit_0 = 0.5 * ratio * (1 - pi_0) = 0.5 * 0.25
    np.testing.assert_allclose(grads["logits"][1], [0.125, -0.125], rtol=1e-5)
