"""The host loop: one compiled program per chunk shape, driven chunk by chunk.

A single run is a packed sweep of one point: ``S`` points (seeds / knob values) are vmapped inside one
compiled chunk of ``run.chunk_updates`` PPO updates. Between chunks, without recompiling, the host writes one
``metrics.jsonl`` line and an atomic checkpoint per point, updates ``status.json`` and the progress bar, and
checks for cancellation (a ``CANCEL`` file, SIGTERM or SIGINT). Resuming restores the checkpointed runner
state and continues on the same chunk boundaries, so on CPU it ends bit-identical to an uninterrupted run.
"""

from __future__ import annotations

import math
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import serialization

from tradelab_jax import runs
from tradelab_jax.agents.ppo import PPOHyper, PPOSpec, init_points, make_ppo_networks, make_train
from tradelab_jax.errors import UserError
from tradelab_jax.knobs import AGENT_KNOBS, num_updates
from tradelab_jax.training.devices import PointBlocks, block_size, joined, split_points
from tradelab_jax.training.envs import batch_env_params, make_env
from tradelab_jax.training.signals import Deferred

# metrics.jsonl fields that measure time rather than learning (differ between identical runs).
TIMING_FIELDS = ("time", "wall_s", "steps_per_s")


def ppo_spec(config: dict[str, Any]) -> PPOSpec:
    """The static PPO spec of a (plain dict) config; refuses budgets smaller than one update."""
    a, net = config["agent"], config["network"]
    for key in ("total_timesteps", "num_envs", "num_steps", "update_epochs", "num_minibatches"):
        AGENT_KNOBS[key].check(a[key])
    updates = num_updates(a["total_timesteps"], a["num_envs"], a["num_steps"], a["num_minibatches"])
    if any(int(h) < 1 for h in net["hidden_sizes"]):
        raise UserError(f"network.hidden_sizes={net['hidden_sizes']} must be positive layer widths")
    from tradelab_jax.agents.ppo.networks import ACTIVATIONS

    if net["activation"] not in ACTIVATIONS:
        raise UserError(f"invalid network.activation {net['activation']!r}; valid: {', '.join(ACTIVATIONS)}")
    return PPOSpec(
        num_updates=updates, num_envs=int(a["num_envs"]), num_steps=int(a["num_steps"]),
        update_epochs=int(a["update_epochs"]), num_minibatches=int(a["num_minibatches"]),
        anneal_lr=bool(a["anneal_lr"]), normalize_advantages=bool(a["normalize_advantages"]),
        hidden_sizes=tuple(int(h) for h in net["hidden_sizes"]), activation=str(net["activation"]),
    )


def ppo_hyper(values: dict[str, list[float]]) -> PPOHyper:
    """PPOHyper with a leading ``[S]`` axis on every leaf (``values``: the plan's per-point values)."""
    return PPOHyper(**{k: jnp.asarray(v, jnp.float32) for k, v in values.items()})


def chunk_plan(num_updates: int, chunk_updates: int, start: int = 0) -> list[int]:
    """Chunk sizes from update ``start``: boundaries at multiples of ``chunk_updates`` (then the rest)."""
    chunk_updates = max(1, min(int(chunk_updates), num_updates))
    sizes, u = [], start
    while u < num_updates:
        size = min(chunk_updates - (u % chunk_updates), num_updates - u)
        sizes.append(size)
        u += size
    return sizes


def _finite(x: Any) -> float | None:
    x = float(x)
    return x if math.isfinite(x) else None


def chunk_record(metrics: dict[str, np.ndarray], i: int, *, update: int, spec: PPOSpec, size: int,
                 dt: float, wall_s: float, points: int) -> dict[str, Any]:
    """One metrics.jsonl line for point ``i`` from a chunk's per-update metrics ``[S, U]``."""
    episodes = int(metrics["episodes"][i].sum())
    rec: dict[str, Any] = {
        "update": update,
        "env_steps": update * spec.steps_per_update,
        "time": runs.utc_now(),
        "wall_s": round(wall_s, 3),
        "steps_per_s": round(size * spec.steps_per_update / dt, 1) if dt > 0 else None,
        "episodes": episodes,
        "mean_episode_return": _finite(metrics["episode_return_sum"][i].sum() / max(episodes, 1))
        if episodes else None,
        "mean_episode_length": _finite(metrics["episode_length_sum"][i].sum() / max(episodes, 1))
        if episodes else None,
        "reward_mean": _finite(metrics["reward_mean"][i].mean()),
    }
    for key in ("loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac"):
        rec[key] = _finite(metrics[key][i].mean())
    rec["lr"] = _finite(metrics["lr"][i][-1])
    rec["points"] = points
    return rec


@dataclass
class TrainResult:
    status: str  # done | cancelled
    params: Any  # [S]-stacked network params (host arrays)
    state: Any  # [S]-stacked runner state
    update: int
    timings: dict[str, float] = field(default_factory=dict)
    blocks: Any = None  # PointBlocks or EnvSplit: how the points ran on the devices (evaluation follows it)


def _device() -> str:
    d = jax.devices()[0]
    return f"{d.platform}:{getattr(d, 'device_kind', '')}".rstrip(":")


def train_points(plan: Any, *, should_stop: Callable[[int], bool] | None = None, stream=None,
                 on_chunk: Callable[[list[dict[str, Any]]], None] | None = None) -> TrainResult:
    """Train the plan's ``S`` points (they differ only in sweepable values), one directory each, in one
    program; a resume plan continues from the points' last checkpoints.

    The plan's ``root`` is the packed sweep's directory (its ``CANCEL`` file stops every point).
    ``should_stop(update)`` is an extra cancellation hook checked after each chunk (tests, the UI).
    ``on_chunk(records)`` gets each point's metrics record after each chunk (tracking writers).
    """
    dirs, root, resume = plan.dirs, plan.root, plan.resume
    base = plan.base
    run_cfg = base["run"]
    spec = plan.spec
    S = len(dirs)
    stream = sys.stderr if stream is None else stream

    env, base_params = make_env(base, "train")
    env_params, env_axes = batch_env_params(plan.configs, env, base_params, swept=plan.swept("env"))
    hyper = ppo_hyper(plan.hyper_values())
    keys = jnp.stack([jax.random.PRNGKey(seed) for seed in plan.seeds()])
    block = block_size(S, run_cfg.get("point_block"))
    # The points in blocks spread over a mesh, each block run by the same one-device program
    # (training.devices: why that keeps every point's bits whatever the device count), or, with fewer
    # blocks than devices, the environments split over them. Runs saved before run.devices: 1.
    blocks = split_points(S, run_cfg.get("devices", "1"), block, spec.num_envs)
    v_init, v_chunk, compiled = _program(spec, env, base_params, env_params, env_axes, S, blocks.mesh,
                                         blocks.size)
    keys, hyper, env_params = blocks.split(keys), blocks.split(hyper), blocks.split(env_params, env_axes)

    t_start = time.perf_counter()
    state = blocks.run(v_init, keys, hyper, env_params)
    start_update, prev_wall, prev_compile, prev_train = 0, 0.0, 0.0, 0.0
    if resume:
        # A resumed state is split again here, so a resume may use another device count.
        restored, start_update, meta = _restore(blocks.gather(state), dirs)
        state = blocks.split(restored)
        prev_wall, prev_compile, prev_train = meta["wall_s"], meta["compile_s"], meta["train_s"]
        for d in dirs:
            runs.truncate_metrics(d, start_update)
    _mark_running(dirs, spec, start_update, resume=resume, blocks=blocks)

    where = root if root is not None else dirs[0]
    proc = joined()
    share = (f" (points {dirs[0].name}-{dirs[-1].name} of {len(plan.whole.points)}: process {proc.index} of "
             f"{proc.count})") if proc is not None else (f" ({S} points)" if S > 1 else "")
    print(f"{'resuming' if resume else 'training'} {where}{share}"
          + f": {spec.num_updates} updates of {spec.steps_per_update:,} env steps, compiling", file=stream)
    # SIGINT/SIGTERM from here on set a flag (the run stops at the next chunk boundary, with a checkpoint),
    # also while compiling: an exception raised between XLA calls would end the process mid-compile.
    with Deferred() as signals:
        # Every chunk shape is compiled before the bar starts: a smaller last chunk compiled mid-run would
        # stall the bar near 100% and drag its rate down.
        sizes = chunk_plan(spec.num_updates, run_cfg["chunk_updates"], start_update)
        compiles_before = len(compiled)
        compile_s = _compile_chunks(v_chunk, compiled, sizes, state, hyper, env_params, blocks)

        from tqdm import tqdm

        bar = tqdm(total=spec.num_updates * spec.steps_per_update,
                   initial=start_update * spec.steps_per_update, unit="step", unit_scale=True,
                   disable=not run_cfg.get("progress", True), file=stream,
                   desc=str(run_cfg.get("tag", "train")) + (f" x{S}" if S > 1 else ""), dynamic_ncols=True)
        update = start_update
        train_s = 0.0
        status = "done"
        cancel_dirs = [*dirs, *([root] if root is not None else [])]
        with bar:
            for size in sizes:
                t0 = time.perf_counter()
                outs = blocks.run(compiled[size], state, hyper, env_params)
                state = [o[0] for o in outs]
                metrics = blocks.gather([o[1] for o in outs])
                host_state = blocks.gather(state)
                dt = time.perf_counter() - t0
                train_s += dt
                update += size
                wall = prev_wall + time.perf_counter() - t_start
                meta = {"env_steps": update * spec.steps_per_update, "wall_s": wall,
                        "compile_s": prev_compile + compile_s, "train_s": prev_train + train_s,
                        "time": runs.utc_now()}
                rec = _record_chunk(dirs, metrics, host_state, update=update, spec=spec, size=size, dt=dt,
                                    meta=meta, keep=int(run_cfg["keep_checkpoints"]), on_chunk=on_chunk)
                bar.update(size * spec.steps_per_update)
                ret = rec["mean_episode_return"]
                if ret is not None:
                    bar.set_postfix(ret=f"{ret:.3g}", refresh=False)
                if update < spec.num_updates and (
                    signals.signum is not None
                    or any(runs.cancel_requested(d) for d in cancel_dirs)
                    or (should_stop is not None and should_stop(update))
                ):
                    status = "cancelled"
                    # Recorded while our handlers are still installed: a late SIGTERM (a UI's cancel racing
                    # the CANCEL file, SLURM, `kill`) cannot end the process before the run says cancelled.
                    for d in dirs:
                        runs.write_status(d, status="cancelled", ended_at=runs.utc_now(), pid=None)
                    break

    timings = {
        "wall_s": prev_wall + time.perf_counter() - t_start,
        "compile_s": prev_compile + compile_s,
        "train_s": prev_train + train_s,
        "env_steps": update * spec.steps_per_update,
    }
    timings["steps_per_s"] = (update - start_update) * spec.steps_per_update / train_s if train_s > 0 else 0.0
    timings["steps_per_s_all_points"] = timings["steps_per_s"] * S
    timings["compiles"] = len(compiled) - compiles_before
    if update == start_update:
        host_state = blocks.gather(state)
    result = TrainResult(status=status, params=host_state.params, state=host_state, update=update,
                         timings=timings, blocks=blocks)
    return result


def _mark_running(dirs: list[Path], spec: PPOSpec, start_update: int, *, resume: bool,
                  blocks: Any = None) -> None:
    """status.json ``running`` with this process's pid and host (a pid means something on its host only),
    the device, how the points were split over devices, and the starting progress."""
    now = runs.utc_now()
    proc = joined()
    where = {"host": runs.host()}
    if blocks is not None:
        where["split"] = f"{blocks.mesh.axis_names[0]} over {len(blocks.devices)} device(s)"
    if proc is not None:
        where["process"] = f"{proc.index} of {proc.count}"
    for d in dirs:
        runs.write_status(d, status="running", pid=os.getpid(), ended_at=None, error=None, device=_device(),
                          **where,
                          update=start_update, num_updates=spec.num_updates,
                          env_steps=start_update * spec.steps_per_update,
                          total_env_steps=spec.num_updates * spec.steps_per_update,
                          progress=start_update / spec.num_updates,
                          **{"resumed_at" if resume else "started_at": now})


def _compile_chunks(v_chunk, compiled: dict[int, Any], sizes: list[int], state, hyper, env_params,
                    blocks: PointBlocks) -> float:
    """Compile every chunk size not compiled yet (before the progress bar starts: a smaller last chunk
    compiled mid-run would stall the bar near 100% and drag its rate down), one executable per device of
    the mesh; the seconds it took."""
    seconds = 0.0
    for size in sorted(set(sizes)):
        if size not in compiled:
            t0 = time.perf_counter()
            compiled[size] = blocks.compile(v_chunk, state, hyper, env_params, static=(size,))
            seconds += time.perf_counter() - t0
    return seconds


def _record_chunk(dirs: list[Path], metrics, host_state, *, update: int, spec: PPOSpec, size: int, dt: float,
                  meta: dict[str, Any], keep: int, on_chunk=None) -> dict[str, Any]:
    """After a chunk, per point: a metrics.jsonl line, an atomic checkpoint and status.json's progress.
    Returns the last point's metrics record (the progress bar shows its return)."""
    records = []
    for i, d in enumerate(dirs):
        rec = chunk_record(metrics, i, update=update, spec=spec, size=size, dt=dt, wall_s=meta["wall_s"],
                           points=len(dirs))
        runs.append_metrics(d, rec)
        records.append(rec)
        data = serialization.to_bytes(jax.tree.map(lambda x, i=i: x[i], host_state))
        runs.write_checkpoint(d, update, data, meta, keep=keep)
        # A chunk in which no episode ended keeps the last known return (not null).
        ret = rec["mean_episode_return"]
        latest = {} if ret is None else {"mean_episode_return": ret}
        runs.write_status(d, update=update, env_steps=update * spec.steps_per_update,
                          progress=update / spec.num_updates, **latest)
    if on_chunk is not None:
        on_chunk(records)
    return rec


_PROGRAMS: dict[Any, tuple[Any, Any, dict[int, Any]]] = {}


def _env_key(env: Any) -> Any:
    if type(env).__hash__ is not object.__hash__:  # e.g. TradingEnv hashes by its shapes
        return env
    return (type(env), tuple(sorted((k, repr(v)) for k, v in vars(env).items())))


def _program(spec, env, base_params, env_params, env_axes, S, mesh,
             block: int) -> tuple[Any, Any, dict[int, Any]]:
    """``(v_init, v_chunk, compiled chunks by size: one executable per device of mesh)``, cached for the
    process; both are the one-device program of a block of the mesh's points.

    Runs with the same shapes (a Hydra multirun's jobs, a resume after a cancel in the same process) reuse
    one compiled program; the key holds everything that sets a shape, and the mesh's devices.
    """
    leaves, treedef = jax.tree.flatten(env_params)
    axes = jax.tree.flatten(env_axes, is_leaf=lambda x: x is None)[0]
    shapes = tuple((tuple(x.shape), str(x.dtype)) for x in map(jnp.asarray, leaves))
    key = (spec, _env_key(env), S, treedef, shapes, tuple(axes), tuple(d.id for d in mesh.devices.flat),
           mesh.axis_names, block)
    if key not in _PROGRAMS:
        init_fn, chunk_fn = make_train(spec, env, base_params)
        v_init = jax.jit(init_points(init_fn, env_axes))
        v_chunk = jax.jit(jax.vmap(chunk_fn, in_axes=(0, 0, env_axes, None)), static_argnums=3)
        while len(_PROGRAMS) >= 4:
            _PROGRAMS.pop(next(iter(_PROGRAMS)))
        _PROGRAMS[key] = (v_init, v_chunk, {})
    return _PROGRAMS[key]


def _restore(template_state: Any, dirs: list[Path]) -> tuple[Any, int, dict[str, Any]]:
    """Load every point's latest checkpoint into the shape of ``template_state`` ([S]-stacked); UserError
    (one sentence naming the file) when one is damaged or is not this run's (``training.checkpoint``)."""
    from tradelab_jax.training import checkpoint

    host = jax.device_get(template_state)
    loaded, metas = [], []
    for i, d in enumerate(dirs):
        try:
            found = runs.read_checkpoint(d)
            if found is None:
                raise UserError(f"cannot resume {d}: it has no checkpoint in {d / runs.CHECKPOINT_DIR}")
            path, data, meta = found
            target = jax.tree.map(lambda x, i=i: x[i], host)
            state = checkpoint.state_dict(data, path)
            loaded.append(checkpoint.restore(target, state, path, what="this run's training state"))
        except runs.CheckpointError as err:
            raise UserError(f"cannot resume {d}: {err}") from None
        metas.append(meta)
    updates = {int(m["update"]) for m in metas}
    if len(updates) != 1:
        raise UserError(f"cannot resume: the points' checkpoints are at different updates {sorted(updates)}")
    state = jax.tree.map(lambda *xs: jnp.asarray(np.stack(xs)), *loaded)
    meta = metas[0]
    return state, updates.pop(), {k: float(meta.get(k, 0.0)) for k in ("wall_s", "compile_s", "train_s")}


def networks_for(config: dict[str, Any], env: Any, env_params: Any):
    spec = ppo_spec(config)
    obs_shape = tuple(env.observation_space(env_params).shape)
    num_actions = int(env.action_space(env_params).n)
    return make_ppo_networks(obs_shape, num_actions, spec.hidden_sizes, spec.activation)
