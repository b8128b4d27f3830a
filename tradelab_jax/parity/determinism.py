"""``tradelab parity --measure-determinism-cost``: what the deterministic GPU settings cost, measured.

For each setting (the defaults, then ``--xla_gpu_deterministic_ops=true`` with
``jax_default_matmul_precision=highest``) the same workers run ``repeats`` times, one after another:
training throughput (env steps/s after compilation), replay throughput, compile time, and whether the
repeats are bit-identical (final parameters, per-update losses and replay telemetry).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from tradelab_jax import runs
from tradelab_jax.parity.backends import WorkerSpec, run_worker
from tradelab_jax.parity.workloads import load_arrays

# A training budget large enough for steady-state throughput on a GPU (20 updates of 256 envs x 128 steps),
# still about a minute; `--train-override` replaces any of these.
COST_TRAINING_OVERRIDES: tuple[str, ...] = (
    "agent.num_envs=256", "agent.num_steps=128", "agent.total_timesteps=655360", "agent.update_epochs=4",
    "agent.num_minibatches=4", "network.hidden_sizes=[64,64]", "run.chunk_updates=5", "run.eval=false",
)  # fmt: skip


def _same_files(a: Path, b: Path) -> bool | None:
    if not a.exists() or not b.exists():
        return None
    return a.read_bytes() == b.read_bytes()


def _same_arrays(a: Path, b: Path) -> bool | None:
    if not a.exists() or not b.exists():
        return None
    xa, xb = load_arrays(a), load_arrays(b)
    return xa.keys() == xb.keys() and all(
        xa[k].shape == xb[k].shape and xa[k].tobytes() == xb[k].tobytes() for k in xa
    )


def _learning_lines(run_dir: Path) -> list[dict[str, Any]]:
    from tradelab_jax.training.runner import TIMING_FIELDS

    return [{k: v for k, v in m.items() if k not in TIMING_FIELDS} for m in runs.read_metrics(run_dir)]


def _repeat_identical(dirs: list[Path]) -> dict[str, bool | None]:
    if len(dirs) < 2:
        return {"params": None, "losses": None, "rollouts": None}
    first = dirs[0]
    out: dict[str, bool | None] = {"params": True, "losses": True, "rollouts": True}
    for other in dirs[1:]:
        ca, cb = runs.latest_checkpoint(first / "train"), runs.latest_checkpoint(other / "train")
        same_params = None if ca is None or cb is None else _same_files(ca[0], cb[0])
        same_losses = (_learning_lines(first / "train") == _learning_lines(other / "train")
                       if (first / "train").exists() else None)
        same_rollouts = _same_arrays(first / "rollouts.npz", other / "rollouts.npz")
        for key, value in (("params", same_params), ("losses", same_losses), ("rollouts", same_rollouts)):
            out[key] = None if value is None or out[key] is None else bool(out[key] and value)
    return out


def measure(out: Path, *, platform: str, repeats: int = 2, workloads: str = "rollouts,training",
            train_overrides: list[str] | None = None, bars: int | None = None, steps: int | None = None
            ) -> dict[str, Any]:
    """Run the workers for both settings and return the measurement (also written as JSON + Markdown)."""
    overrides = list(COST_TRAINING_OVERRIDES) + list(train_overrides or [])
    results = []
    for deterministic in (False, True):
        spec = WorkerSpec(platform, deterministic=deterministic)
        dirs, infos = [], []
        for r in range(repeats):
            d = out / "workers" / f"{spec.label}_{r}"
            args = ["--workloads", workloads, *(f"--train-override={o}" for o in overrides)]
            if bars:
                args += ["--bars", str(bars)]
            if steps:
                args += ["--steps", str(steps)]
            infos.append(run_worker(spec, d, args))
            dirs.append(d)
        train_rates, compile_s = [], []
        for d in dirs:
            summary = runs.read_eval_summary(d / "train") or {}
            run = summary.get("run") or {}
            if run:
                train_rates.append(float(run.get("steps_per_s", 0.0)))
                compile_s.append(float(run.get("compile_s", 0.0)))
        rollout_rates = [i["timings"]["rollouts_steps"] / i["timings"]["rollouts_s"] for i in infos
                         if i["timings"].get("rollouts_s")]
        results.append({
            "setting": "deterministic" if deterministic else "default",
            "xla_flags": infos[0]["settings"]["xla_flags"],
            "matmul_precision": infos[0]["settings"]["matmul_precision"],
            "device": f"{infos[0]['settings']['platform']}:{infos[0]['settings']['device_kind']}",
            "train_steps_per_s": float(np.median(train_rates)) if train_rates else None,
            "compile_s": float(np.median(compile_s)) if compile_s else None,
            "rollout_steps_per_s": float(np.median(rollout_rates)) if rollout_rates else None,
            "repeats": repeats,
            "repeat_bit_identical": _repeat_identical(dirs),
        })
    base = results[0]
    for r in results:
        for key in ("train_steps_per_s", "rollout_steps_per_s"):
            b, v = base.get(key), r.get(key)
            r[key.replace("_steps_per_s", "_cost_pct")] = (
                None if not b or v is None else round(100.0 * (b / v - 1.0), 1)
            )
    report = {"platform": platform, "workloads": workloads, "training_overrides": overrides,
              "settings": results}
    from tradelab_jax.io import atomic_write_json, atomic_write_text

    atomic_write_json(out / "determinism_cost.json", report)
    atomic_write_text(out / "determinism_cost.md", markdown_table(report) + "\n")
    return report


def _fmt(v: Any, digits: int = 0) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "NO"
    return f"{v:,.{digits}f}"


def markdown_table(report: dict[str, Any]) -> str:
    """The docs/benchmarks.md table: throughput, cost and repeatability per setting."""
    lines = [
        "| setting | device | train steps/s | train cost | replay steps/s | replay cost | compile s "
        "| repeats bit-identical (params / losses / replay) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in report["settings"]:
        same = r["repeat_bit_identical"]
        lines.append(
            f"| {r['setting']} | {r['device']} | {_fmt(r['train_steps_per_s'])} "
            f"| {_fmt(r.get('train_cost_pct'), 1)}% | {_fmt(r['rollout_steps_per_s'])} "
            f"| {_fmt(r.get('rollout_cost_pct'), 1)}% | {_fmt(r['compile_s'], 1)} "
            f"| {_fmt(same['params'])} / {_fmt(same['losses'])} / {_fmt(same['rollouts'])} |"
        )
    return "\n".join(lines)


def summary_line(report: dict[str, Any]) -> str:
    return json.dumps({r["setting"]: {k: r[k] for k in ("train_steps_per_s", "rollout_steps_per_s")}
                       for r in report["settings"]})
