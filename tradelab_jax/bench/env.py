"""``tradelab bench env``: environment steps per second, JAX (vmapped, inside lax.scan) vs plain numpy.

Random actions are drawn inside the scan; every step's observation and reward are folded into the carry
so XLA cannot drop them. Compile time is measured apart from the timed runs. The numpy baseline is
:class:`~tradelab_jax.bench.numpy_env.NumpyTradingEnv` (same contract, same precomputed features),
stepped from a plain Python loop, single environment, in the same process.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import platform
import time
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tradelab_jax.errors import UserError

# tradelab_jax.env imports gymnax, which starts JAX's backends: it is imported inside the functions so that
# `main` can still choose the number of CPU devices first.

DEFAULT_ENVS = (1, 64, 1024, 8192)
TARGET_ENV_STEPS = 2**25  # per timed run at the largest sizes (~1-2 s on 2 CPU cores)


def make_rollout(env: Any, n_envs: int, n_steps: int, n_devices: int = 1, keys: str = "hash"):
    """``rollout(keys [D], params) -> checksums [D]``: ``n_steps`` random-action steps of ``n_envs`` envs.

    Per step every env needs a fresh key (for its auto-reset) and a random action. ``keys="split"`` makes
    them the PureJaxRL way, ``jax.random.split(key, n_envs)`` plus a ``bits`` draw: threefry per env,
    which on CPU costs about as much as the env step itself. ``keys="hash"`` (default) draws one threefry
    word per step and derives each env's key words and action from it and the env's index with an
    integer hash (MurmurHash3 finalizer): statistically fine for a random policy, and it measures the env
    rather than the PRNG. With ``n_devices > 1`` the envs are split evenly over that many local devices
    (``shard_map``): on CPU, JAX runs one device per core, which is how one process uses several cores.
    """
    from tradelab_jax.env.trading import fmix32, uniform_index

    if keys not in ("hash", "split"):
        raise UserError(f"invalid keys {keys!r}: expected hash or split")
    per_device = n_envs // n_devices
    batched_step = jax.vmap(env.step, in_axes=(0, 0, 0, None))
    index = jnp.arange(per_device, dtype=jnp.uint32)

    def draw(key: jax.Array) -> tuple[jax.Array, jax.Array]:
        if keys == "split":
            action_key, step_key = jax.random.split(key)
            bits = jax.random.bits(action_key, (per_device,), jnp.uint32)
            return jax.random.split(step_key, per_device), uniform_index(bits, env.num_actions)
        base = jax.random.bits(key, (3,), jnp.uint32)
        words = [fmix32(base[i] ^ fmix32(index * jnp.uint32(3) + jnp.uint32(i))) for i in range(3)]
        step_keys = jax.random.wrap_key_data(jnp.stack(words[:2], axis=-1))
        return step_keys, uniform_index(words[2], env.num_actions)

    def rollout(key: jax.Array, params: Any) -> jax.Array:
        key, reset_key = jax.random.split(key)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(jax.random.split(reset_key, per_device), params)

        def body(carry, _):
            key, state, checksum = carry
            key, draw_key = jax.random.split(key)
            step_keys, actions = draw(draw_key)
            obs, state, reward, terminated, truncated, _ = batched_step(
                step_keys, state, actions.astype(jnp.int32), params
            )
            done = (terminated | truncated).astype(jnp.float32)
            checksum = checksum + jnp.sum(obs) + jnp.sum(reward).astype(jnp.float32) + jnp.sum(done)
            return (key, state, checksum), None

        (_, _, checksum), _ = jax.lax.scan(body, (key, state, jnp.float32(0)), None, length=n_steps)
        return checksum

    def per_shard(keys: jax.Array, params: Any) -> jax.Array:
        return rollout(keys[0], params)[None]

    if n_devices == 1:
        return jax.jit(per_shard)
    from jax.sharding import Mesh, PartitionSpec

    mesh = Mesh(np.array(jax.local_devices()[:n_devices]), ("d",))
    return jax.jit(jax.shard_map(per_shard, mesh=mesh, in_specs=(PartitionSpec("d"), PartitionSpec()),
                                 out_specs=PartitionSpec("d"), check_vma=False))


def devices_for(n_envs: int, max_devices: int) -> int:
    """The most local devices (up to ``max_devices``) that split ``n_envs`` evenly."""
    return max(d for d in range(1, max_devices + 1) if n_envs % d == 0)


def measure_jax(env: Any, params: Any, n_envs: int, n_steps: int, repeats: int = 2,
                max_devices: int = 1, keys: str = "hash") -> dict:
    """Compile time and the best of ``repeats`` timed runs (after one warm-up run).

    ``cpu_s`` is the process CPU time of that run: ``cpu_s / run_s`` well below the number of cores
    means other processes were competing for them.
    """
    n_devices = devices_for(n_envs, max_devices)
    rollout = make_rollout(env, n_envs, n_steps, n_devices, keys)
    keys = jax.random.split(jax.random.key(0), n_devices)
    t0 = time.perf_counter()
    compiled = rollout.lower(keys, params).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(keys, params))
    best = None
    for i in range(repeats):
        keys = jax.random.split(jax.random.key(i + 1), n_devices)
        t0, c0 = time.perf_counter(), time.process_time()
        checksum = jax.block_until_ready(compiled(keys, params))
        run = (time.perf_counter() - t0, time.process_time() - c0)
        best = run if best is None or run[0] < best[0] else best
    if not np.all(np.isfinite(np.asarray(checksum))):
        raise AssertionError("non-finite observation or reward in the benchmark rollout")
    run_s, cpu_s = best
    return {"envs": n_envs, "steps": n_steps, "devices": n_devices, "compile_s": compile_s, "run_s": run_s,
            "cpu_s": cpu_s, "steps_per_s": n_envs * n_steps / run_s}


def measure_numpy(params: Any, window: int, n_steps: int, seed: int = 0) -> dict:
    """Steps per second of the numpy env in a Python loop (random actions, reset on done)."""
    from tradelab_jax.bench.numpy_env import NumpyTradingEnv

    env = NumpyTradingEnv.from_env_params(params, window=window)
    rng = np.random.default_rng(seed)
    actions = rng.integers(0, env.action_space.n, n_steps)
    env.reset(seed=seed)
    checksum = 0.0
    t0, c0 = time.perf_counter(), time.process_time()
    for action in actions:
        obs, reward, terminated, truncated, _ = env.step(int(action))
        checksum += float(obs.sum()) + reward
        if terminated or truncated:
            env.reset()
    run_s, cpu_s = time.perf_counter() - t0, time.process_time() - c0
    return {"envs": 1, "steps": n_steps, "run_s": run_s, "cpu_s": cpu_s, "steps_per_s": n_steps / run_s}


def steps_for(n_envs: int, steps: int | None) -> int:
    if steps is not None:
        return steps
    return int(min(20_000, max(64, TARGET_ENV_STEPS // n_envs)))


def run_bench(dataset: str, features: str, envs: tuple[int, ...], steps: int | None, numpy_steps: int,
              lake: Any = None, window: int = 1, keys: str = "hash") -> dict:
    from tradelab_jax.env import make

    env, params = make(dataset, features=features, split="train", lake=lake, window=window)
    numpy_result = measure_numpy(params, window, numpy_steps)
    max_devices = len(jax.local_devices()) if jax.default_backend() == "cpu" else 1
    results = [measure_jax(env, params, n, steps_for(n, steps), max_devices=max_devices, keys=keys)
               for n in envs]
    for r in results:
        r["speedup_vs_numpy"] = r["steps_per_s"] / numpy_result["steps_per_s"]
    return {
        "benchmark": "env",
        "dataset": dataset,
        "features": features,
        "num_features": env.num_features,
        "keys": keys,
        "window": window,
        "date": time.strftime("%Y-%m-%d"),
        "jax_version": jax.__version__,
        "backend": jax.default_backend(),
        "device": str(jax.devices()[0].device_kind),
        "cpu": cpu_model(),
        "cpu_count": _cpu_count(),
        "cpu_devices": len(jax.local_devices()) if jax.default_backend() == "cpu" else 0,
        "load_average_1m": _load_average(),
        "python": platform.python_version(),
        "numpy": numpy_result,
        "jax": results,
    }


def cpu_model() -> str:
    """The CPU's model name (for benchmark records)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _load_average() -> float | None:
    import os

    try:
        return os.getloadavg()[0]
    except OSError:  # pragma: no cover - not available
        return None


def _cpu_count() -> int:
    import os

    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def format_table(result: dict) -> str:
    load = result.get("load_average_1m")
    lines = [
        f"tradelab bench env: {result['dataset']} features={result['features']} "
        f"(F={result['num_features']}, window={result['window']}), keys={result['keys']}, "
        f"JAX {result['jax_version']} on {result['backend']} ({result['device']}; {result['cpu']}, "
        f"{result['cpu_count']} cores, load average {load if load is None else round(load, 2)})",
        "",
        f"{'impl':<6} {'envs':>6} {'devices':>7} {'steps':>6} {'env steps/s':>14} {'vs numpy':>9} "
        f"{'cpu/wall':>8} {'compile s':>9}",
    ]
    npr = result["numpy"]
    lines.append(
        f"{'numpy':<6} {1:>6} {'-':>7} {npr['steps']:>6} {npr['steps_per_s']:>14,.0f} {1:>8.1f}x "
        f"{npr['cpu_s'] / npr['run_s']:>8.2f} {'-':>9}"
    )
    for r in result["jax"]:
        lines.append(
            f"{'jax':<6} {r['envs']:>6} {r['devices']:>7} {r['steps']:>6} {r['steps_per_s']:>14,.0f} "
            f"{r['speedup_vs_numpy']:>8.1f}x {r['cpu_s'] / r['run_s']:>8.2f} {r['compile_s']:>9.2f}"
        )
    lines += ["", "cpu/wall: process CPU seconds per wall second (XLA's threads included). Well below the",
              "cores of the machine while the load average is high means other processes took the cores."]
    return "\n".join(lines)


def _use_cpu_devices(n: int) -> None:
    """Ask JAX for ``n`` CPU devices; only possible before its backends start (else keep what exists)."""
    if n < 1:
        raise UserError(f"invalid --cpu-devices {n}: expected a positive number")
    with contextlib.suppress(RuntimeError):  # backends already started in this process (e.g. pytest)
        jax.config.update("jax_num_cpu_devices", n)


def _parse_envs(text: str) -> tuple[int, ...]:
    try:
        envs = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        envs = ()
    if not envs or any(n < 1 for n in envs):
        raise UserError(f"invalid --envs {text!r}: expected comma-separated positive integers, e.g. 1,64")
    return envs


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="tradelab bench env",
        description="Environment steps per second: the JAX env vmapped inside lax.scan vs the numpy env.",
    )
    parser.add_argument("--envs", default=",".join(map(str, DEFAULT_ENVS)),
                        help="comma-separated batch sizes (default %(default)s)")
    parser.add_argument("--steps", type=int, default=None,
                        help="scan steps per timed run (default: about 33M env steps, at most 20000)")
    parser.add_argument("--numpy-steps", type=int, default=20_000, metavar="N",
                        help="numpy env steps (default %(default)s)")
    parser.add_argument("--dataset", default="binance_btcusdt_1m", help="dataset id (default %(default)s)")
    parser.add_argument("--features", default="default", help="feature set (default %(default)s)")
    parser.add_argument("--window", type=int, default=1, help="feature rows per observation (default 1)")
    parser.add_argument("--lake", default=None, help="data lake (default: data/ or $TRADELAB_LAKE)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    parser.add_argument("--keys", choices=("hash", "split"), default="hash",
                        help="per-env step keys and actions: one threefry draw per step mixed by an integer "
                             "hash (default), or jax.random.split per env as PureJaxRL does")
    parser.add_argument("--cpu-devices", type=int, default=None, metavar="N",
                        help="on CPU, split the envs over N devices, one per core (default: all cores)")
    args = parser.parse_args(argv)
    envs = _parse_envs(args.envs)
    _use_cpu_devices(args.cpu_devices or _cpu_count())
    if args.steps is not None and args.steps < 1:
        raise UserError(f"invalid --steps {args.steps}: expected a positive number of steps")
    if args.numpy_steps < 1:
        raise UserError(f"invalid --numpy-steps {args.numpy_steps}: expected a positive number of steps")
    result = run_bench(
        args.dataset, args.features, envs, args.steps, args.numpy_steps, args.lake, args.window, args.keys
    )
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0
