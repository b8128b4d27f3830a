"""Actor-critic networks for discrete actions (flax.linen), built by a factory as data.

Separate actor and critic MLPs with orthogonal initialisation (gain sqrt(2) for hidden layers, 0.01 for the
policy head so the initial policy is near uniform, 1.0 for the value head), as in PureJaxRL's PPO.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

ACTIVATIONS: dict[str, Callable[[jax.Array], jax.Array]] = {
    "tanh": nn.tanh,
    "relu": nn.relu,
    "gelu": nn.gelu,
    "elu": nn.elu,
    "silu": nn.silu,
}


class MLP(nn.Module):
    """Hidden layers followed by one linear head of ``out_size`` with its own init gain."""

    hidden_sizes: Sequence[int]
    out_size: int
    activation: str = "tanh"
    head_gain: float = 1.0

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        act = ACTIVATIONS[self.activation]
        for size in self.hidden_sizes:
            x = nn.Dense(size, kernel_init=nn.initializers.orthogonal(np.sqrt(2)),
                         bias_init=nn.initializers.zeros)(x)
            x = act(x)
        return nn.Dense(self.out_size, kernel_init=nn.initializers.orthogonal(self.head_gain),
                        bias_init=nn.initializers.zeros)(x)


class ActorCritic(nn.Module):
    """``obs [..., *obs_shape] -> (logits [..., A], value [...])``; observation dims are flattened."""

    num_actions: int
    obs_ndim: int
    hidden_sizes: Sequence[int] = (64, 64)
    activation: str = "tanh"

    @nn.compact
    def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
        batch_shape = obs.shape[: obs.ndim - self.obs_ndim]
        x = obs.reshape((*batch_shape, -1)).astype(jnp.float32)
        logits = MLP(self.hidden_sizes, self.num_actions, self.activation, head_gain=0.01, name="actor")(x)
        value = MLP(self.hidden_sizes, 1, self.activation, head_gain=1.0, name="critic")(x)
        return logits, value[..., 0]


@dataclass(frozen=True)
class PPONetworks:
    """``init(key) -> params`` and ``apply(params, obs) -> (logits, value)``."""

    init: Callable[[jax.Array], Any]
    apply: Callable[[Any, jax.Array], tuple[jax.Array, jax.Array]]
    num_actions: int


def make_ppo_networks(
    obs_shape: Sequence[int],
    num_actions: int,
    hidden_sizes: Sequence[int] = (64, 64),
    activation: str = "tanh",
) -> PPONetworks:
    """Build the actor-critic for observations of ``obs_shape`` and ``num_actions`` discrete actions."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"unknown activation {activation!r}; valid: {', '.join(ACTIVATIONS)}")
    obs_shape = tuple(int(d) for d in obs_shape)
    module = ActorCritic(num_actions=int(num_actions), obs_ndim=len(obs_shape),
                         hidden_sizes=tuple(int(h) for h in hidden_sizes), activation=activation)

    def init(key: jax.Array):
        return module.init(key, jnp.zeros(obs_shape, jnp.float32))

    return PPONetworks(init=init, apply=module.apply, num_actions=int(num_actions))

