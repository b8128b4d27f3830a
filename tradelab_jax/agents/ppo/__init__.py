"""Proximal Policy Optimisation: networks, GAE and loss as pure functions, and ``make_train``.

The whole training loop (rollout -> GAE -> epochs -> minibatches) is nested ``lax.scan``; the host drives it
in chunks of updates (see :mod:`tradelab_jax.training.runner`).
"""

from tradelab_jax.agents.ppo.losses import compute_gae, ppo_loss
from tradelab_jax.agents.ppo.networks import PPONetworks, make_ppo_networks
from tradelab_jax.agents.ppo.train import PPOHyper, PPOSpec, RunnerState, init_points, make_train

__all__ = [
    "PPOHyper",
    "PPONetworks",
    "PPOSpec",
    "RunnerState",
    "compute_gae",
    "init_points",
    "make_ppo_networks",
    "make_train",
    "ppo_loss",
]
