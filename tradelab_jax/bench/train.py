"""``tradelab bench train``: PPO training env steps per second, tradelab (JAX) vs Stable-Baselines3.

Every row trains PPO on one environment with one setup (envs x rollout length, epochs x minibatches,
network) and reports env steps per second of training (rollout + update). The rows, measured in one run:

1. ``sb3-default``: SB3 PPO with its defaults (1 env, n_steps 2048, batch 64, 10 epochs, MlpPolicy
   [64, 64]) on :class:`~tradelab_jax.bench.numpy_env.NumpyTradingEnv`: the predecessor's setup.
2. ``jax-bench``: tradelab's PPO (:func:`tradelab_jax.agents.ppo.make_train`, vmapped over ``--points``
   like the runner) on the JAX trading env at ``--envs`` environments; ratio against row 1.
3. / 4. ``sb3-matched`` / ``jax-matched``: both at identical hyperparameters (``--matched-envs`` envs, same
   rollout, epochs, minibatch count and network); ratio of 4 against 3.
5. / 6. the same comparison on CartPole-v1 (gymnasium's for SB3, gymnax's for tradelab).

The continuous hyperparameters are SB3's defaults everywhere (lr 3e-4 constant, no entropy bonus, clip 0.2,
vf 0.5, gamma 0.99, lambda 0.95, grad norm 0.5). SB3 is timed after one warm-up rollout+update, over whole
rollouts. JAX is timed after compiling (ahead of time, reported as ``compile s``) and one warm-up chunk.
Training FLOPs per env step and the measured matmul peak are in :mod:`tradelab_jax.bench.flops`.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import time
from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from tradelab_jax.agents.ppo import PPOHyper, PPOSpec, init_points, make_train
from tradelab_jax.bench import flops as flops_mod
from tradelab_jax.bench import sb3_baseline
from tradelab_jax.bench.env import cpu_model
from tradelab_jax.errors import UserError

# SB3 PPO's defaults, used by both implementations so that only the implementation differs.
SB3_HYPER = {"learning_rate": 3e-4, "gamma": 0.99, "gae_lambda": 0.95, "clip_range": 0.2, "ent_coef": 0.0,
             "vf_coef": 0.5, "max_grad_norm": 0.5}
JAX_HYPER = PPOHyper(lr=3e-4, ent_coef=0.0, clip_eps=0.2, vf_coef=0.5, gamma=0.99, gae_lambda=0.95,
                     max_grad_norm=0.5)
TARGETS = {"jax-bench": 100.0, "jax-matched": 5.0}
COMPILE_TARGET_S = 30.0
GPU_SWEEP_TARGET = 20e6  # env steps/s aggregated over a packed sweep, on an H200


@dataclass(frozen=True)
class Setup:
    """What one row trains with: the shape of a PPO update (shared by SB3 and tradelab rows)."""

    envs: int
    steps: int  # rollout length per env per update (SB3's n_steps)
    epochs: int
    minibatches: int
    hidden: tuple[int, ...] = (64, 64)

    @property
    def batch(self) -> int:
        return self.envs * self.steps

    @property
    def minibatch_size(self) -> int:
        return self.batch // self.minibatches


@dataclass(frozen=True)
class Plan:
    sb3_default: Setup
    bench: tuple[Setup, ...]
    matched: Setup
    sb3_min_steps: int  # env steps timed per SB3 row (rounded up to whole rollouts)
    jax_min_time_s: float  # seconds timed per JAX row (whole chunks, at least one)
    chunk_env_steps: int  # env steps per compiled chunk (all points together), rounded to whole updates
    points: int = 1


FULL = Plan(
    sb3_default=Setup(1, 2048, 10, 32),
    bench=(Setup(512, 128, 4, 4),),  # 128-2048 envs measured alike on 2 cores; 2048 was slowest
    matched=Setup(64, 128, 4, 4),
    sb3_min_steps=16_384, jax_min_time_s=3.0, chunk_env_steps=2**18,
)
# The bench and matched setups coincide so that one compiled program serves both rows.
QUICK = Plan(
    sb3_default=Setup(1, 64, 2, 2),
    bench=(Setup(8, 16, 2, 2),),
    matched=Setup(8, 16, 2, 2),
    sb3_min_steps=1, jax_min_time_s=0.0, chunk_env_steps=1,
)


# -- tradelab (JAX) ------------------------------------------------------------------------------------------
def measure_jax(env: Any, env_params: Any, setup: Setup, *, points: int = 1, min_time_s: float = 3.0,
                chunk_env_steps: int = 2**20, seed: int = 0) -> dict[str, Any]:
    """Env steps/s of tradelab's PPO, ``points`` vmapped runs in one program (as the runner packs a sweep).

    The chunk of updates is compiled ahead of time (``compile_s``), run once to warm up, then run until
    ``min_time_s`` has passed (at least once). ``steps_per_s`` counts the env steps of every point.
    """
    spec = PPOSpec(num_updates=1_000_000, num_envs=setup.envs, num_steps=setup.steps,
                   update_epochs=setup.epochs, num_minibatches=setup.minibatches, anneal_lr=False,
                   hidden_sizes=setup.hidden)
    init_fn, chunk_fn = make_train(spec, env, env_params)
    env_axes = jax.tree.map(lambda _: None, env_params)
    hyper = jax.tree.map(lambda x: jnp.full((points,), x, jnp.float32), JAX_HYPER)
    keys = jnp.stack([jax.random.PRNGKey(seed + i) for i in range(points)])
    v_init = jax.jit(init_points(init_fn, env_axes))
    v_chunk = jax.jit(jax.vmap(chunk_fn, in_axes=(0, 0, env_axes, None)), static_argnums=3)
    steps_per_update = points * spec.steps_per_update
    updates = max(1, round(chunk_env_steps / steps_per_update))

    t0 = time.perf_counter()
    init = v_init.lower(keys, hyper, env_params).compile()
    state = jax.block_until_ready(init(keys, hyper, env_params))
    compiled = v_chunk.lower(state, hyper, env_params, updates).compile()
    compile_s = time.perf_counter() - t0  # both programs (the init run itself is negligible)
    t0 = time.perf_counter()
    state, metrics = jax.block_until_ready(compiled(state, hyper, env_params))
    warmup_s = time.perf_counter() - t0
    wall, chunks = 0.0, 0
    while chunks == 0 or wall < min_time_s:
        t0 = time.perf_counter()
        state, metrics = jax.block_until_ready(compiled(state, hyper, env_params))
        wall += time.perf_counter() - t0
        chunks += 1
    if not np.all(np.isfinite(np.asarray(metrics["loss"]))):
        raise AssertionError("non-finite PPO loss in the benchmark run")
    env_steps = chunks * updates * steps_per_update
    return {"env_steps": env_steps, "wall_s": wall, "compile_s": compile_s, "warmup_s": warmup_s,
            "steps_per_s": env_steps / wall, "updates_per_chunk": updates}


# -- rows ----------------------------------------------------------------------------------------------------
def _row(row_id: str, impl: str, env_name: str, setup: Setup, **fields: Any) -> dict[str, Any]:
    return {
        "id": row_id, "implementation": impl, "env": env_name, "envs": setup.envs, "rollout": setup.steps,
        "epochs": setup.epochs, "minibatches": setup.minibatches, "minibatch_size": setup.minibatch_size,
        "network": list(setup.hidden), "points": 1, "vec_env": None, "env_steps": None, "wall_s": None,
        "compile_s": None, "steps_per_s": None, "vs": None, "ratio": None, "target_ratio": None,
        "flops_per_env_step": None, "flops_per_s": None, "peak_fraction": None, "skipped": None,
        **fields,
    }


def _sb3_row(row_id: str, env_name: str, setup: Setup, env_id: Any, plan: Plan, skip: str | None,
             vec_env: str) -> dict[str, Any]:
    impl = "sb3 (torch)"
    if skip:
        return _row(row_id, impl, env_name, setup, skipped=skip)
    result = sb3_baseline.measure_sb3(
        env_id, num_envs=setup.envs, num_steps=setup.steps, epochs=setup.epochs,
        minibatches=setup.minibatches, hidden_sizes=setup.hidden, min_env_steps=plan.sb3_min_steps,
        vec_env=vec_env, hyper=SB3_HYPER,
    )
    return _row(row_id, impl, env_name, setup, **result)


def _jax_row(row_id: str, env_name: str, setup: Setup, env: Any, env_params: Any, plan: Plan, vs: str,
             env_flops: float | None, peak: float, points: int = 1,
             memo: dict[tuple, dict[str, Any]] | None = None) -> dict[str, Any]:
    memo = {} if memo is None else memo
    key = (env_name, setup, points)
    if key not in memo:  # rows with the same program are measured once
        memo[key] = measure_jax(env, env_params, setup, points=points, min_time_s=plan.jax_min_time_s,
                                chunk_env_steps=plan.chunk_env_steps)
    result = memo[key]
    obs_size = int(np.prod(env.observation_space(env_params).shape))
    per_step = flops_mod.ppo_flops_per_env_step(
        obs_size, int(env.action_space(env_params).n), setup.hidden, setup.epochs, env_flops or 0.0
    )["total"]
    flops_per_s = per_step * result["steps_per_s"]
    return _row(row_id, "tradelab (jax)", env_name, setup, points=points, vs=vs,
                target_ratio=TARGETS.get(row_id.split("@")[0]), flops_per_env_step=per_step,
                flops_per_s=flops_per_s, peak_fraction=flops_per_s / peak, **result)


def _ratios(rows: list[dict[str, Any]]) -> None:
    by_id = {r["id"]: r for r in rows}
    for r in rows:
        base = by_id.get(r["vs"]) if r["vs"] else None
        if base and base["steps_per_s"] and r["steps_per_s"]:
            r["ratio"] = r["steps_per_s"] / base["steps_per_s"]


def _targets(rows: list[dict[str, Any]], backend: str) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        if r["target_ratio"] is not None:
            achieved = r["ratio"]
            out.append({"target": f"{r['id']} >= {r['target_ratio']:g}x {r['vs']}", "achieved": achieved,
                        "met": None if achieved is None else achieved >= r["target_ratio"]})
    compiles = [r["compile_s"] for r in rows if r["compile_s"] is not None]
    if compiles:
        out.append({"target": f"compile <= {COMPILE_TARGET_S:g} s (slowest row)", "achieved": max(compiles),
                    "met": max(compiles) <= COMPILE_TARGET_S})
    sweep = [r["steps_per_s"] for r in rows
             if r["implementation"].startswith("tradelab") and r["env"] == "trading"]
    out.append({"target": f"GPU: >= {GPU_SWEEP_TARGET / 1e6:g}M env steps/s over a packed sweep (--points)",
                "achieved": max(sweep) if sweep and backend == "gpu" else None,
                "met": (max(sweep) >= GPU_SWEEP_TARGET) if sweep and backend == "gpu" else None})
    return out


def run_bench(plan: Plan, *, dataset: str = "binance_btcusdt_1m", features: str = "default",
              lake: Any = None, window: int = 1, skip_sb3: str | None = None, vec_env: str = "dummy",
              torch_threads: int | None = None, matmul_n: int = 2048, cartpole: bool = True
              ) -> dict[str, Any]:
    """Measure every row of the plan in this process and return the result (rows + machine info)."""
    import gymnax

    from tradelab_jax.env import make

    if skip_sb3 is None:
        sb3_baseline.require_sb3()
        threads = sb3_baseline.set_torch_threads(torch_threads)
    else:
        threads = None
    peak = flops_mod.measure_matmul_peak(matmul_n)
    memo: dict[tuple, dict[str, Any]] = {}
    env, params = make(dataset, features=features, split="train", lake=lake, window=window)
    trading_flops = flops_mod.env_step_flops(env, params)
    rows = [_sb3_row("sb3-default", "trading", plan.sb3_default, sb3_baseline.trading_env_fn(params, window)
                     if skip_sb3 is None else None, plan, skip_sb3, "dummy")]
    for setup in plan.bench:
        row_id = "jax-bench" if len(plan.bench) == 1 else f"jax-bench@{setup.envs}"
        rows.append(_jax_row(row_id, "trading", setup, env, params, plan, "sb3-default", trading_flops,
                             peak["flops_per_s"], plan.points, memo))
    rows.append(_sb3_row("sb3-matched", "trading", plan.matched, sb3_baseline.trading_env_fn(params, window)
                         if skip_sb3 is None else None, plan, skip_sb3, vec_env))
    rows.append(_jax_row("jax-matched", "trading", plan.matched, env, params, plan, "sb3-matched",
                         trading_flops, peak["flops_per_s"], memo=memo))
    if cartpole:
        cp_env, cp_params = gymnax.make("CartPole-v1")
        rows.append(_sb3_row("sb3-cartpole", "CartPole-v1", plan.matched, "CartPole-v1", plan, skip_sb3,
                             vec_env))
        rows.append(_jax_row("jax-cartpole", "CartPole-v1", plan.matched, cp_env, cp_params, plan,
                             "sb3-cartpole", flops_mod.env_step_flops(cp_env, cp_params),
                             peak["flops_per_s"]))
    _ratios(rows)
    backend = jax.default_backend()
    return {
        "benchmark": "train",
        "dataset": dataset,
        "features": features,
        "window": window,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "machine": machine_info(threads),
        "hyperparameters": dict(SB3_HYPER, anneal_lr=False, normalize_advantages=True, activation="tanh"),
        "matmul_peak": peak,
        "env_step_flops": {"trading": trading_flops},
        "rows": rows,
        "targets": _targets(rows, backend),
    }


def machine_info(torch_threads: int | None) -> dict[str, Any]:
    info: dict[str, Any] = {
        "cpu": cpu_model(),
        "cores": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "load_average_1m": os.getloadavg()[0] if hasattr(os, "getloadavg") else None,
        "python": platform.python_version(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "device": str(getattr(jax.devices()[0], "device_kind", jax.devices()[0].platform)),
        "torch_threads": torch_threads,
    }
    info.update(sb3_baseline.versions())
    return info


# -- output --------------------------------------------------------------------------------------------------
def _fmt(x: Any, spec: str, empty: str = "-") -> str:
    return empty if x is None else format(x, spec)


def _scaled(x: float | None, factor: float) -> float | None:
    return None if x is None else x * factor


def format_table(result: dict[str, Any]) -> str:
    m, peak = result["machine"], result["matmul_peak"]
    lines = [
        f"tradelab bench train: {result['dataset']} features={result['features']} window={result['window']}; "
        f"{m['cpu']}, {m['cores']} cores (load {_fmt(m['load_average_1m'], '.1f')}), JAX {m['jax']} on "
        f"{m['backend']} ({m['device']}), torch {m['torch'] or '-'} "
        f"(threads: {_fmt(m['torch_threads'], 'd')}), SB3 {m['stable_baselines3'] or '-'}; {result['date']}",
        "",
        f"{'row':<14} {'impl':<14} {'env':<11} {'envs':>5} {'T':>5} {'ep':>3} {'mb':>4} {'net':<8} "
        f"{'steps':>10} {'wall s':>7} {'compile s':>9} {'env steps/s':>12} {'vs':<12} {'ratio':>8} "
        f"{'GFLOP/s':>8} {'of peak':>7}",
    ]
    for r in result["rows"]:
        ratio = "-" if r["ratio"] is None else f"{r['ratio']:.1f}x"
        of_peak = "-" if r["peak_fraction"] is None else f"{100 * r['peak_fraction']:.1f}%"
        net = "x".join(map(str, r["network"]))
        envs = f"{r['envs']}" + (f"x{r['points']}" if r["points"] > 1 else "")
        head = (f"{r['id']:<14} {r['implementation']:<14} {r['env']:<11} {envs:>5} {r['rollout']:>5} "
                f"{r['epochs']:>3} {r['minibatches']:>4} {net:<8} ")
        if r["skipped"]:
            lines.append(head + f"skipped: {r['skipped']}")
            continue
        lines.append(
            head + f"{r['env_steps']:>10,} {r['wall_s']:>7.2f} {_fmt(r['compile_s'], '9.2f', '-'.rjust(9))} "
            f"{r['steps_per_s']:>12,.0f} {r['vs'] or '-':<12} {ratio:>8} "
            f"{_fmt(_scaled(r['flops_per_s'], 1e-9), '8.2f', '-'.rjust(8))} "
            f"{of_peak:>7}"
        )
    vec = {r["vec_env"] for r in result["rows"] if r["vec_env"]}
    lines += [
        "",
        f"matmul peak: {peak['flops_per_s'] / 1e9:.1f} GFLOP/s "
        f"({peak['n']}x{peak['n']} {peak['dtype']} jnp.dot). "
        "GFLOP/s counts the networks' matmuls (forward x2 in the rollout, forward+backward per epoch) and "
        "the env step as XLA counts it.",
        f"SB3 vectorisation: {', '.join(sorted(vec)) or '-'}; the JAX rows exclude compile time and one "
        "warm-up chunk, the SB3 rows one warm-up rollout+update.",
        "",
        "targets:",
    ]
    for t in result["targets"]:
        met = {True: "met", False: "NOT met", None: "not measured"}[t["met"]]
        lines.append(f"  {t['target']}: {_fmt(t['achieved'], '.3g')} ({met})")
    return "\n".join(lines)


# -- command -------------------------------------------------------------------------------------------------
def _positive_ints(text: str, flag: str) -> tuple[int, ...]:
    try:
        values = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        values = ()
    if not values or any(v < 1 for v in values):
        raise UserError(f"invalid {flag} {text!r}: expected comma-separated positive integers, e.g. 1024")
    return values


def plan_from_args(args: argparse.Namespace) -> Plan:
    plan = QUICK if args.quick else FULL
    changes: dict[str, Any] = {}
    if args.envs is not None:
        envs = _positive_ints(args.envs, "--envs")
        changes["bench"] = tuple(dataclasses.replace(plan.bench[0], envs=e) for e in envs)
    if args.matched_envs is not None:
        changes["matched"] = dataclasses.replace(plan.matched, envs=_positive_ints(args.matched_envs,
                                                                                   "--matched-envs")[0])
    if args.sb3_steps is not None:
        if args.sb3_steps < 1:
            raise UserError(f"invalid --sb3-steps {args.sb3_steps}: expected a positive number of env steps")
        changes["sb3_min_steps"] = args.sb3_steps
    if args.min_time is not None:
        if args.min_time < 0:
            raise UserError(f"invalid --min-time {args.min_time}: expected seconds >= 0")
        changes["jax_min_time_s"] = args.min_time
    points = 1 if args.points is None else args.points
    if points < 1:
        raise UserError(f"invalid --points {points}: expected a positive number of sweep points")
    changes["points"] = points
    plan = dataclasses.replace(plan, **changes)
    for s in (plan.sb3_default, *plan.bench, plan.matched):
        if s.batch % s.minibatches:
            raise UserError(f"{s.envs} envs x {s.steps} steps is not divisible into {s.minibatches} "
                            "minibatches")
    return plan


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="tradelab bench train",
        description="PPO training env steps/s: tradelab (JAX) vs Stable-Baselines3 PPO on the same env.",
    )
    parser.add_argument("--quick", action="store_true", help="tiny budgets and sizes (a smoke test)")
    parser.add_argument("--skip-sb3", action="store_true", help="measure only tradelab (no PyTorch needed)")
    parser.add_argument("--envs", default=None,
                        help="environments of the jax-bench row; a comma list gives one row each "
                             f"(default {FULL.bench[0].envs})")
    parser.add_argument("--matched-envs", default=None,
                        help=f"environments of the matched rows (default {FULL.matched.envs})")
    parser.add_argument("--points", type=int, default=None,
                        help="sweep points vmapped in the jax-bench program; steps/s counts all (default 1; "
                             "8 with --devices, where fewer points than devices split the envs)")
    parser.add_argument("--sb3-steps", type=int, default=None,
                        help="env steps timed per SB3 row, rounded up to whole rollouts "
                             f"(default {FULL.sb3_min_steps})")
    parser.add_argument("--min-time", type=float, default=None,
                        help=f"seconds timed per JAX row (default {FULL.jax_min_time_s:g})")
    parser.add_argument("--sb3-vec", default="dummy", choices=sb3_baseline.VEC_ENVS,
                        help="SB3 vectorisation of the multi-env rows (default dummy: fastest on few cores)")
    parser.add_argument("--torch-threads", type=int, default=None,
                        help="PyTorch intra-op threads (default 1: faster than 2 for SB3's small MLPs)")
    parser.add_argument("--no-cartpole", action="store_true", help="leave out the CartPole rows")
    parser.add_argument("--dataset", default="binance_btcusdt_1m", help="dataset id (default %(default)s)")
    parser.add_argument("--features", default="default", help="feature set (default %(default)s)")
    parser.add_argument("--window", type=int, default=1, help="feature rows per observation (default 1)")
    parser.add_argument("--lake", default=None,
                        help="data lake (default: the repo's data/ or $TRADELAB_LAKE)")
    parser.add_argument("--matmul-n", type=int, default=2048, help="matmul size of the peak (default 2048)")
    parser.add_argument("--json", action="store_true", help="print the result as JSON instead of a table")
    parser.add_argument("--devices", default=None,
                        help="device counts, e.g. 1,2,4: steps/s of --points points (default 8) per count "
                             "and the scaling efficiency, instead of the SB3 comparison")
    args = parser.parse_args(argv)
    if args.devices is not None:
        return _main_devices(args)
    plan = plan_from_args(args)
    if args.torch_threads is not None and args.torch_threads < 1:
        raise UserError(f"invalid --torch-threads {args.torch_threads}: expected a positive thread count")
    skip = None
    if args.skip_sb3:
        installed = sb3_baseline.sb3_available()
        skip = "--skip-sb3" if installed else "stable-baselines3 not installed (--skip-sb3)"
    result = run_bench(plan, dataset=args.dataset, features=args.features, lake=args.lake, window=args.window,
                       skip_sb3=skip, vec_env=args.sb3_vec, torch_threads=args.torch_threads,
                       matmul_n=args.matmul_n if not args.quick else min(args.matmul_n, 512),
                       cartpole=not args.no_cartpole)
    print(json.dumps(result, indent=2) if args.json else format_table(result))
    return 0


def _main_devices(args: argparse.Namespace) -> int:
    """``--devices 1,2,4``: the packed sweep's steps/s per device count (tradelab_jax.bench.scaling)."""
    from tradelab_jax.bench import scaling

    devices = _positive_ints(args.devices, "--devices")
    scaling.ensure_host_devices(max(devices))  # before anything starts JAX's backends
    points = 8 if args.points is None else args.points
    plan = plan_from_args(argparse.Namespace(**{**vars(args), "points": points}))
    setup = plan.bench[0]
    from tradelab_jax.env import make

    env, env_params = make(args.dataset, features=args.features, split="train", lake=args.lake,
                           window=args.window)
    rows = scaling.measure_devices(env, env_params, setup, points=points, devices=devices,
                                   min_time_s=plan.jax_min_time_s, chunk_env_steps=plan.chunk_env_steps)
    result = {"benchmark": "train-devices", "env": f"trading {args.dataset}", "points": points,
              "setup": f"{setup.envs} envs x {setup.steps} steps, {setup.epochs} epochs x "
                       f"{setup.minibatches} minibatches, MLP {list(setup.hidden)}",
              "date": time.strftime("%Y-%m-%d"), "jax_version": jax.__version__,
              "backend": jax.default_backend(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
              "rows": rows}
    print(json.dumps(result, indent=2) if args.json else scaling.format_rows(result))
    return 0
