"""PPO training as one compiled program: ``make_train(spec, env, env_params) -> (init_fn, chunk_fn)``.

``chunk_fn(runner_state, hyper, env_params, num_updates)`` runs ``num_updates`` PPO updates as nested
``lax.scan``s (env steps -> GAE -> epochs -> minibatches) over ``E`` parallel environments. Both functions
are pure and unjitted: the runner vmaps them over seeds / sweep points (``S``) and jits them once per chunk
shape, so everything in :class:`PPOHyper` and the env params can differ per point inside one compile.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax import struct

from tradelab_jax.agents.ppo.losses import categorical_log_prob, compute_gae, ppo_loss
from tradelab_jax.agents.ppo.networks import PPONetworks, make_ppo_networks
from tradelab_jax.knobs import AGENT_KNOBS

_K = AGENT_KNOBS  # defaults and ranges: the knob table (tradelab_jax/knobs.py), not written here again


@struct.dataclass
class PPOHyper:
    """Traced PPO knobs (the table's sweepable agent knobs, in its order): any of them can be a sweep axis
    (vmapped) without recompiling."""

    lr: float | jax.Array = _K["lr"].default
    ent_coef: float | jax.Array = _K["ent_coef"].default
    clip_eps: float | jax.Array = _K["clip_eps"].default
    vf_coef: float | jax.Array = _K["vf_coef"].default
    gamma: float | jax.Array = _K["gamma"].default
    gae_lambda: float | jax.Array = _K["gae_lambda"].default
    max_grad_norm: float | jax.Array = _K["max_grad_norm"].default


@dataclasses.dataclass(frozen=True)
class PPOSpec:
    """Static PPO settings: everything that sets a shape or a loop length (changing one recompiles)."""

    num_updates: int
    num_envs: int = _K["num_envs"].default
    num_steps: int = _K["num_steps"].default
    update_epochs: int = _K["update_epochs"].default
    num_minibatches: int = _K["num_minibatches"].default
    anneal_lr: bool = _K["anneal_lr"].default
    normalize_advantages: bool = _K["normalize_advantages"].default
    hidden_sizes: tuple[int, ...] = (64, 64)
    activation: str = "tanh"

    def __post_init__(self):
        if self.num_updates < 1:
            raise ValueError(f"num_updates must be >= 1, got {self.num_updates}")
        if (self.num_envs * self.num_steps) % self.num_minibatches:
            raise ValueError(
                f"num_envs * num_steps = {self.num_envs * self.num_steps} is not divisible by "
                f"num_minibatches = {self.num_minibatches}"
            )

    @property
    def steps_per_update(self) -> int:
        return self.num_envs * self.num_steps

    @property
    def minibatch_size(self) -> int:
        return self.steps_per_update // self.num_minibatches


@struct.dataclass
class RunnerState:
    """Everything the training loop carries; the checkpoint is exactly this pytree."""

    params: Any
    opt_state: Any
    env_state: Any
    obs: jax.Array  # [E, *obs_shape]
    key: jax.Array
    update: jax.Array  # int32 scalar: updates done so far
    ep_return: jax.Array  # [E] running return of the episode in progress
    ep_length: jax.Array  # [E]


class Transition(NamedTuple):
    obs: jax.Array
    action: jax.Array
    log_prob: jax.Array
    value: jax.Array
    next_value: jax.Array
    reward: jax.Array
    terminated: jax.Array
    truncated: jax.Array
    completed_return: jax.Array  # return of the episode that ended at this step, else 0
    completed_length: jax.Array


def learning_rate(spec: PPOSpec, hyper: PPOHyper, update: jax.Array) -> jax.Array:
    """The learning rate used by update number ``update`` (0-based): linear decay to 0 when annealing."""
    if not spec.anneal_lr:
        return jnp.asarray(hyper.lr, jnp.float32)
    return hyper.lr * (1.0 - update.astype(jnp.float32) / spec.num_updates)


def make_optimizer(spec: PPOSpec, hyper: PPOHyper) -> optax.GradientTransformation:
    """Global-norm clipping then Adam; the schedule closes over the (possibly traced) ``hyper.lr``."""
    grad_steps_per_update = spec.update_epochs * spec.num_minibatches

    def schedule(count):
        return learning_rate(spec, hyper, count // grad_steps_per_update)

    return optax.chain(
        optax.clip_by_global_norm(hyper.max_grad_norm),
        optax.adam(learning_rate=schedule, eps=1e-5),
    )


def init_points(init_fn: Callable, env_axes: Any) -> Callable:
    """``init_fn`` over a leading points axis ``[S]``, one point at a time: use it instead of ``vmap``.

    ``init_points(init_fn, env_axes)(keys, hyper, env_params)`` returns the ``[S]``-stacked runner state
    that ``jax.vmap(init_fn, in_axes=(0, 0, env_axes))`` would, computed point by point (``lax.map``).

    Why not vmap: batching the orthogonal initialiser batches its QR factorisations. jaxlib's CPU LAPACK
    kernels split a batch into tasks on XLA's intra-op thread pool and block the calling pool thread
    until they finish, so as many concurrent batched QRs as the pool has threads (two on a 2-core
    machine) wait on each other forever. One point at a time, each QR factors one matrix inline. Init
    runs once per training, so the loop costs nothing measurable, and each point's values are the same.
    """

    def pick(axis: Any, x: Any, i: jax.Array) -> Any:
        return x if axis is None else jnp.take(x, i, axis=axis)

    def init_all(keys: jax.Array, hyper: PPOHyper, env_params: Any) -> RunnerState:
        def one(i: jax.Array) -> RunnerState:
            point_params = jax.tree.map(lambda axis, x: pick(axis, x, i), env_axes, env_params,
                                        is_leaf=lambda a: a is None)
            return init_fn(keys[i], jax.tree.map(lambda x: x[i], hyper), point_params)

        return jax.lax.map(one, jnp.arange(keys.shape[0]))

    return init_all


def make_train(
    spec: PPOSpec, env: Any, env_params: Any, networks: PPONetworks | None = None
) -> tuple[Callable, Callable]:
    """PPO for any gymnax-1.0 environment with a discrete action space.

    ``env_params`` is used only for shapes (observation shape, number of actions); the functions take the
    params to train on as an argument.

    Returns:
      ``init_fn(key, hyper, env_params) -> RunnerState``
      ``chunk_fn(runner_state, hyper, env_params, num_updates) -> (runner_state, metrics)`` with each
      metric ``[num_updates]`` (``num_updates`` must be a Python int: it is the scan length).
    """
    obs_shape = tuple(env.observation_space(env_params).shape)
    num_actions = int(env.action_space(env_params).n)
    if networks is None:
        networks = make_ppo_networks(obs_shape, num_actions, spec.hidden_sizes, spec.activation)
    apply_fn = networks.apply
    vmap_reset = jax.vmap(env.reset, in_axes=(0, None))
    vmap_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    E, T = spec.num_envs, spec.num_steps

    def init_fn(key: jax.Array, hyper: PPOHyper, env_params: Any) -> RunnerState:
        key, net_key, reset_key = jax.random.split(key, 3)
        params = networks.init(net_key)
        opt_state = make_optimizer(spec, hyper).init(params)
        obs, env_state = vmap_reset(jax.random.split(reset_key, E), env_params)
        return RunnerState(
            params=params, opt_state=opt_state, env_state=env_state, obs=obs, key=key,
            update=jnp.zeros((), jnp.int32), ep_return=jnp.zeros((E,), jnp.float32),
            ep_length=jnp.zeros((E,), jnp.int32),
        )

    def env_step(rs: RunnerState, env_params: Any) -> tuple[RunnerState, Transition]:
        key, act_key, step_key = jax.random.split(rs.key, 3)
        logits, value = apply_fn(rs.params, rs.obs)
        action = jax.random.categorical(act_key, logits, axis=-1)
        log_prob = categorical_log_prob(logits, action)
        obs, env_state, reward, terminated, truncated, info = vmap_step(
            jax.random.split(step_key, E), rs.env_state, action, env_params
        )
        if "final_observation" not in info:
            raise ValueError(
                f"{type(env).__name__}.step must put the pre-reset observation in "
                "info['final_observation'] (gymnax >= 1.0 does) so truncation can bootstrap"
            )
        _, next_value = apply_fn(rs.params, info["final_observation"])
        reward = reward.astype(jnp.float32)
        done = jnp.logical_or(terminated, truncated)
        ep_return = rs.ep_return + reward
        ep_length = rs.ep_length + 1
        transition = Transition(
            obs=rs.obs, action=action, log_prob=log_prob, value=value, next_value=next_value,
            reward=reward, terminated=terminated, truncated=truncated,
            completed_return=jnp.where(done, ep_return, 0.0),
            completed_length=jnp.where(done, ep_length, 0),
        )
        rs = rs.replace(
            env_state=env_state, obs=obs, key=key,
            ep_return=jnp.where(done, 0.0, ep_return), ep_length=jnp.where(done, 0, ep_length),
        )
        return rs, transition

    def update_step(rs: RunnerState, hyper: PPOHyper, env_params: Any) -> tuple[RunnerState, dict]:
        tx = make_optimizer(spec, hyper)
        rs, traj = jax.lax.scan(lambda c, _: env_step(c, env_params), rs, None, length=T)
        advantages, targets = compute_gae(
            traj.reward, traj.value, traj.next_value, traj.terminated, traj.truncated,
            hyper.gamma, hyper.gae_lambda,
        )
        batch = (traj.obs, traj.action, traj.log_prob, traj.value, advantages, targets)
        batch = jax.tree.map(lambda x: x.reshape((E * T, *x.shape[2:])), batch)

        def loss_fn(params, mb):
            obs, action, log_prob, value, adv, target = mb
            return ppo_loss(
                params, apply_fn, obs, action, log_prob, value, adv, target,
                clip_eps=hyper.clip_eps, vf_coef=hyper.vf_coef, ent_coef=hyper.ent_coef,
                normalize_advantages=spec.normalize_advantages,
            )

        def minibatch_step(carry, mb):
            params, opt_state = carry
            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, mb)
            updates, opt_state = tx.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, opt_state), {"loss": loss, **aux}

        def epoch_step(carry, _):
            params, opt_state, key = carry
            key, perm_key = jax.random.split(key)
            perm = jax.random.permutation(perm_key, E * T)
            minibatches = jax.tree.map(
                lambda x: x[perm].reshape((spec.num_minibatches, -1, *x.shape[1:])), batch
            )
            (params, opt_state), losses = jax.lax.scan(minibatch_step, (params, opt_state), minibatches)
            return (params, opt_state, key), losses

        key, epoch_key = jax.random.split(rs.key)
        (params, opt_state, _), losses = jax.lax.scan(
            epoch_step, (rs.params, rs.opt_state, epoch_key), None, length=spec.update_epochs
        )
        done = jnp.logical_or(traj.terminated, traj.truncated)
        metrics = {k: v.mean() for k, v in losses.items()}
        metrics.update(
            lr=learning_rate(spec, hyper, rs.update),
            episodes=done.sum().astype(jnp.int32),
            episode_return_sum=traj.completed_return.sum(),
            episode_length_sum=traj.completed_length.sum(),
            reward_mean=traj.reward.mean(),
        )
        rs = rs.replace(params=params, opt_state=opt_state, key=key, update=rs.update + 1)
        return rs, metrics

    def chunk_fn(rs: RunnerState, hyper: PPOHyper, env_params: Any, num_updates: int):
        return jax.lax.scan(lambda c, _: update_step(c, hyper, env_params), rs, None, length=num_updates)

    return init_fn, chunk_fn


def make_evaluate_episodes(env: Any, networks: PPONetworks, max_steps: int) -> Callable:
    """``evaluate(params, key, env_params, num_episodes) -> (returns [N], lengths [N])`` of the greedy policy.

    Each of ``num_episodes`` parallel environments runs until its first episode ends (or ``max_steps``).
    """
    vmap_reset = jax.vmap(env.reset, in_axes=(0, None))
    vmap_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))

    def evaluate(params, key: jax.Array, env_params: Any, num_episodes: int):
        key, reset_key = jax.random.split(key)
        obs, env_state = vmap_reset(jax.random.split(reset_key, num_episodes), env_params)

        def step(carry, _):
            obs, env_state, key, alive, ret, length = carry
            key, step_key = jax.random.split(key)
            logits, _ = networks.apply(params, obs)
            action = jnp.argmax(logits, axis=-1)
            obs, env_state, reward, terminated, truncated, _ = vmap_step(
                jax.random.split(step_key, num_episodes), env_state, action, env_params
            )
            ret = ret + jnp.where(alive, reward, 0.0)
            length = length + alive.astype(jnp.int32)
            alive = alive & ~(terminated | truncated)
            return (obs, env_state, key, alive, ret, length), None

        init = (obs, env_state, key, jnp.ones(num_episodes, bool), jnp.zeros(num_episodes),
                jnp.zeros(num_episodes, jnp.int32))
        (_, _, _, _, ret, length), _ = jax.lax.scan(step, init, None, length=max_steps)
        return ret, length

    return evaluate
