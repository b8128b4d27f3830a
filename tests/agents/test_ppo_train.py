"""PPO's compiled training program on gymnax's own CartPole (an independent reference environment)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time

import chex
import gymnax
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tradelab_jax.agents.ppo import PPOHyper, PPOSpec, init_points, make_ppo_networks, make_train
from tradelab_jax.agents.ppo.train import make_evaluate_episodes


@pytest.mark.slow
def test_cartpole_reaches_475_within_500k_steps():
    # PureJaxRL's CartPole-v1 settings: 4 envs x 128 steps, 4 epochs x 4 minibatches, lr 2.5e-4 annealed,
    # 5e5 env steps (976 updates), run as 8 chunks of 122 updates under one compile.
    env, env_params = gymnax.make("CartPole-v1")
    spec = PPOSpec(num_updates=976)
    init_fn, chunk_fn = make_train(spec, env, env_params)
    hyper = PPOHyper()
    chunk = jax.jit(chex.assert_max_traces(chunk_fn, n=1), static_argnums=3)
    start = time.perf_counter()
    state = jax.jit(init_fn)(jax.random.PRNGKey(0), hyper, env_params)
    for _ in range(8):
        state, _ = chunk(state, hyper, env_params, 122)
    jax.block_until_ready(state)
    assert int(state.update) == 976
    assert spec.steps_per_update * 976 <= 500_000
    evaluate = jax.jit(make_evaluate_episodes(env, make_ppo_networks((4,), 2), 500), static_argnums=3)
    returns, _ = evaluate(state.params, jax.random.PRNGKey(1), env_params, 32)
    elapsed = time.perf_counter() - start
    print(f"CartPole-v1: greedy mean return {float(returns.mean()):.1f} over 32 episodes after "
          f"{spec.steps_per_update * 976} steps in {elapsed:.1f}s (compile included)")
    assert float(returns.mean()) >= 475.0


def test_sweep_axes_are_vmapped_leaves_in_one_compile():
    env, env_params = gymnax.make("CartPole-v1")
    spec = PPOSpec(num_updates=4, num_envs=2, num_steps=16, update_epochs=1, num_minibatches=2,
                   hidden_sizes=(8,))
    init_fn, chunk_fn = make_train(spec, env, env_params)
    hyper = PPOHyper(lr=jnp.array([0.0, 1e-2]), ent_coef=jnp.array([0.0, 0.05]))
    hyper = jax.tree.map(lambda x: jnp.broadcast_to(jnp.asarray(x, jnp.float32), (2,)), hyper)
    env_axes = jax.tree.map(lambda _: None, env_params)
    keys = jax.random.split(jax.random.PRNGKey(0), 2)
    state0 = jax.jit(init_points(init_fn, env_axes))(keys, hyper, env_params)
    def batched_chunk(state, hyper, env_params, num_updates):
        return jax.vmap(chunk_fn, in_axes=(0, 0, env_axes, None))(state, hyper, env_params, num_updates)

    chunk = jax.jit(chex.assert_max_traces(batched_chunk, n=1), static_argnums=3)
    state, metrics = chunk(state0, hyper, env_params, 2)
    state, metrics = chunk(state, hyper, env_params, 2)
    chex.assert_tree_all_finite(state.params)
    assert metrics["lr"].shape == (2, 2)
    np.testing.assert_allclose(metrics["lr"][1], [1e-2 * 0.5, 1e-2 * 0.25], rtol=1e-6)
    # lr = 0 leaves point 0's parameters untouched; point 1 learns.
    first = jax.tree.map(lambda a, b: np.array_equal(a[0], b[0]), state.params, state0.params)
    second = jax.tree.map(lambda a, b: np.array_equal(a[1], b[1]), state.params, state0.params)
    assert all(jax.tree.leaves(first))
    assert not any(jax.tree.leaves(second))


def test_runs_are_deterministic_for_a_seed():
    env, env_params = gymnax.make("CartPole-v1")
    spec = PPOSpec(num_updates=2, num_envs=2, num_steps=8, update_epochs=1, num_minibatches=1,
                   hidden_sizes=(8,))
    init_fn, chunk_fn = make_train(spec, env, env_params)
    chunk = jax.jit(chunk_fn, static_argnums=3)

    def run(seed):
        state = init_fn(jax.random.PRNGKey(seed), PPOHyper(), env_params)
        return chunk(state, PPOHyper(), env_params, 2)[0].params

    chex.assert_trees_all_equal(run(3), run(3))
    assert not np.array_equal(jax.tree.leaves(run(3))[0], jax.tree.leaves(run(4))[0])


def test_init_points_equals_vmapped_init():
    # Small layers (8 units): vmap's batched QR is cheap enough for jaxlib to factor inline, so the vmapped
    # init is a safe oracle here.
    env, env_params = gymnax.make("CartPole-v1")
    spec = PPOSpec(num_updates=1, num_envs=3, num_steps=4, hidden_sizes=(8, 8))
    init_fn, _ = make_train(spec, env, env_params)
    env_axes = jax.tree.map(lambda _: None, env_params)
    hyper = jax.tree.map(lambda x: jnp.full((3,), x, jnp.float32), PPOHyper())
    keys = jax.random.split(jax.random.PRNGKey(7), 3)
    mapped = jax.jit(init_points(init_fn, env_axes))(keys, hyper, env_params)
    vmapped = jax.jit(jax.vmap(init_fn, in_axes=(0, 0, env_axes)))(keys, hyper, env_params)
    chex.assert_trees_all_equal(mapped, vmapped)
    assert not np.array_equal(mapped.params["params"]["actor"]["Dense_0"]["kernel"][0],
                              mapped.params["params"]["actor"]["Dense_0"]["kernel"][1])


INIT_LOOP = textwrap.dedent("""
    import sys, gymnax, jax, jax.numpy as jnp
    from tradelab_jax.agents.ppo import PPOHyper, PPOSpec, init_points, make_train
    env, env_params = gymnax.make("CartPole-v1")
    init_fn, _ = make_train(PPOSpec(num_updates=1, num_envs=2, num_steps=4), env, env_params)
    env_axes = jax.tree.map(lambda _: None, env_params)
    init = (jax.vmap(init_fn, in_axes=(0, 0, env_axes)) if sys.argv[1] == "vmap"
            else init_points(init_fn, env_axes))
    init = jax.jit(init)
    hyper = jax.tree.map(lambda x: jnp.full((4,), x, jnp.float32), PPOHyper())
    for i in range(int(sys.argv[2])):
        jax.block_until_ready(init(jax.random.split(jax.random.PRNGKey(i), 4), hyper, env_params))
    print("done")
""")


def test_init_of_packed_points_never_wedges_xla_cpu(scaled):
    # Regression: four 64-unit points initialised with vmap wedge XLA:CPU on a 2-core machine (batched
    # QRs on the intra-op pool wait for each other; `python -c INIT_LOOP vmap 300` hangs). init_points must
    # finish every time. A wedge never ends, so the timeout (scaled for a busy machine) is the check.
    proc = subprocess.run([sys.executable, "-c", INIT_LOOP, "points", "300"], capture_output=True,
                          text=True, timeout=scaled(240), env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.strip() == "done"
