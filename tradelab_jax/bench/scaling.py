"""``tradelab bench train --devices 1,2,4``: training steps/s of a packed sweep per device count.

The program measured is the runner's (:mod:`tradelab_jax.training.devices`): the sweep's points in one
block per device, every block the same one-device PPO chunk (a vmap over its points), dispatched
asynchronously to each device; with fewer points than devices, every point in one program whose
environments are split over the devices (``EnvSplit``). For each device count ``n`` the chunk is
compiled once per device, run once to warm up, then timed over whole chunks (at least
``min_time_s``). ``steps_per_s`` counts the env steps of every point; the scaling efficiency is
``steps_per_s(n) / (n * steps_per_s(1))`` (1.0 = linear).

On CPU the devices are XLA host devices (``--xla_force_host_platform_device_count``), which share the
machine's cores and one intra-op thread pool: ``n`` devices cannot beat the cores there are, so on a
2-core machine the efficiency for ``n > 2`` is bounded by ``2 / n`` of linear.
"""

from __future__ import annotations

import os
import time
from typing import Any

import numpy as np

from tradelab_jax.errors import UserError

FORCE = "--xla_force_host_platform_device_count"


def ensure_host_devices(count: int) -> None:
    """Ask XLA for ``count`` CPU devices, unless JAX has already started (then it must already have them)."""
    from jax._src import xla_bridge

    flags = os.environ.get("XLA_FLAGS", "")
    if not xla_bridge.backends_are_initialized() and FORCE not in flags:
        os.environ["XLA_FLAGS"] = f"{flags} {FORCE}={count}".strip()


def measure_devices(env: Any, env_params: Any, setup: Any, *, points: int, devices: tuple[int, ...],
                    min_time_s: float, chunk_env_steps: int, seed: int = 0) -> list[dict[str, Any]]:
    """One row per device count in ``devices``: env steps/s of ``points`` points trained in blocks."""
    import jax
    import jax.numpy as jnp

    from tradelab_jax.agents.ppo import PPOSpec, init_points, make_train
    from tradelab_jax.bench.train import JAX_HYPER
    from tradelab_jax.training.devices import split_points

    bad = [n for n in devices if points % n and setup.envs % n]
    if bad:
        raise UserError(f"--points {points} (and {setup.envs} envs) cannot be split evenly over {bad} "
                        "device(s); pick --points divisible by every --devices count, or fewer points and "
                        "an env count that is")
    local = jax.local_devices()
    if max(devices) > len(local):
        raise UserError(f"--devices {max(devices)} but this process sees {len(local)} "
                        f"{jax.default_backend()} device(s); on CPU set XLA_FLAGS={FORCE}={max(devices)} "
                        "before JAX starts")
    spec = PPOSpec(num_updates=1_000_000, num_envs=setup.envs, num_steps=setup.steps,
                   update_epochs=setup.epochs, num_minibatches=setup.minibatches, anneal_lr=False,
                   hidden_sizes=setup.hidden)
    init_fn, chunk_fn = make_train(spec, env, env_params)
    env_axes = jax.tree.map(lambda _: None, env_params)
    v_init = jax.jit(init_points(init_fn, env_axes))
    v_chunk = jax.jit(jax.vmap(chunk_fn, in_axes=(0, 0, env_axes, None)), static_argnums=3)
    updates = max(1, round(chunk_env_steps / (points * spec.steps_per_update)))
    rows = []
    for n in devices:
        # the runner's split: n devices for sure, as the points or the envs divide by n (checked above)
        blocks = split_points(points, n, None, spec.num_envs)
        split = blocks.mesh.axis_names[0]
        hyper = blocks.split(jax.tree.map(lambda x: jnp.full((points,), x, jnp.float32), JAX_HYPER))
        keys = blocks.split(jnp.stack([jax.random.PRNGKey(seed + i) for i in range(points)]))
        params = blocks.split(env_params, None)
        t0 = time.perf_counter()
        state = jax.block_until_ready(blocks.run(v_init, keys, hyper, params))
        compiled = blocks.compile(v_chunk, state, hyper, params, static=(updates,))
        compile_s = time.perf_counter() - t0

        def chunk(state, blocks=blocks, compiled=compiled, hyper=hyper, params=params):
            outs = jax.block_until_ready(blocks.run(compiled, state, hyper, params))
            return [o[0] for o in outs], [o[1] for o in outs]

        state, metrics = chunk(state)  # warm-up
        wall, chunks = 0.0, 0
        while chunks == 0 or wall < min_time_s:
            t0 = time.perf_counter()
            state, metrics = chunk(state)
            wall += time.perf_counter() - t0
            chunks += 1
        loss = np.concatenate([np.asarray(m["loss"]) for m in metrics])
        if not np.all(np.isfinite(loss)):
            raise AssertionError("non-finite PPO loss in the benchmark run")
        env_steps = chunks * updates * points * spec.steps_per_update
        rows.append({"devices": n, "points": points, "split": split,
                     "points_per_device": points // n if split == "points" else points,
                     "envs_per_device": spec.num_envs if split == "points" else spec.num_envs // n,
                     "env_steps": env_steps, "wall_s": wall, "compile_s": compile_s,
                     "steps_per_s": env_steps / wall, "updates_per_chunk": updates})
    base = rows[0]["steps_per_s"] / rows[0]["devices"]
    for r in rows:
        r["efficiency"] = r["steps_per_s"] / (r["devices"] * base)
    return rows


def format_rows(result: dict[str, Any]) -> str:
    lines = [f"tradelab bench train --devices: {result['env']}, {result['points']} points, "
             f"{result['setup']}; {result['backend']} ({result['cpu']}, {result['cpu_count']} cores)",
             f"{'devices':>7} {'split':>6} {'pts/dev':>7} {'envs/dev':>8} {'steps/s':>12} {'efficiency':>10} "
             f"{'compile s':>9}"]
    for r in result["rows"]:
        lines.append(f"{r['devices']:>7} {r.get('split', 'points'):>6} {r['points_per_device']:>7} "
                     f"{r.get('envs_per_device', '-'):>8} {r['steps_per_s']:>12,.0f} "
                     f"{r['efficiency']:>10.2f} {r['compile_s']:>9.1f}")
    lines.append("efficiency = steps/s(n) / (n x steps/s(first row)); 1.00 = linear")
    return "\n".join(lines)
