"""One parity worker process: ``python -m tradelab_jax.parity.worker``.

The parent (``tradelab parity``) starts one worker per backend and precision, because the settings that
matter (``JAX_PLATFORMS``, ``JAX_ENABLE_X64``, ``XLA_FLAGS``, ``JAX_DEFAULT_MATMUL_PRECISION``) are read
when JAX starts. A worker computes the workloads on its platform's first device and writes them under
``--out``: ``features.npz``, ``features_f32.npz``, ``rollouts.npz``, ``train/`` (a run directory) and
``worker.json`` (what ran where, and how long it took). ``--rerun RUN_DIR`` instead re-runs a run
directory's saved config into ``--out`` through the trainer's API.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

WORKLOADS = ("features", "rollouts", "training")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m tradelab_jax.parity.worker")
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--platform", default="cpu", choices=("cpu", "gpu"))
    p.add_argument("--workloads", default=",".join(WORKLOADS))
    p.add_argument("--dataset", default=None)
    p.add_argument("--lake", default=None)
    p.add_argument("--bars", type=int, default=None)
    p.add_argument("--steps", type=int, default=None)
    p.add_argument("--train-override", action="append", default=[], dest="train_overrides")
    p.add_argument("--rerun", type=Path, default=None, help="re-run this run directory's config into --out")
    return p


def settings() -> dict[str, Any]:
    """The process's JAX numerics settings (what a report must say about each side)."""
    import jax

    dev = jax.devices()[0]
    x64 = bool(getattr(jax.config, "jax_enable_x64", False))
    return {
        "platform": dev.platform,
        "device_kind": getattr(dev, "device_kind", ""),
        "x64": x64,
        "precision": "float64" if x64 else "float32",
        "matmul_precision": getattr(jax.config, "jax_default_matmul_precision", None),
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
        "jax_version": jax.__version__,
        "cpu_count": os.cpu_count(),
    }


def rerun(run_dir: Path, out: Path) -> dict[str, Any]:
    """Train ``run_dir``'s saved config again into ``out`` (``train.run_config``, the trainer's own path)."""
    from tradelab_jax import runs, train

    plain = runs.read_config(run_dir)
    run = plain["run"]
    run.update(progress=False, print_summary=False, resume=None, dir=str(out), outputs=None)
    lake = (plain.get("data") or {}).get("lake")
    if lake and not Path(lake).expanduser().exists():  # a pod's lake path: use the local lake
        plain["data"]["lake"] = None
    t0 = time.perf_counter()
    with contextlib.redirect_stdout(io.StringIO()):
        result = train.run_config(plain, out)
    return {"status": result["status"], "wall_s": round(time.perf_counter() - t0, 3),
            "lake_replaced": bool(lake and plain["data"]["lake"] is None)}


def run_workloads(args: argparse.Namespace) -> dict[str, Any]:
    import jax

    from tradelab_jax.parity import workloads as wl

    wanted = [w.strip() for w in args.workloads.split(",") if w.strip()]
    unknown = sorted(set(wanted) - set(WORKLOADS))
    if unknown:
        raise SystemExit(f"unknown workload(s) {unknown}; valid: {', '.join(WORKLOADS)}")
    device = jax.devices(args.platform)[0]
    timings: dict[str, float] = {}
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    with jax.default_device(device):
        if "features" in wanted or "rollouts" in wanted:
            bars = wl.load_bars(args.dataset or wl.DEFAULT_DATASET, args.bars or wl.DEFAULT_BARS, args.lake)
        if "features" in wanted:
            t0 = time.perf_counter()
            wl.save_arrays(out / "features.npz", wl.compute_feature_matrix(bars))
            timings["features_s"] = time.perf_counter() - t0
            if not jax.config.jax_enable_x64:
                t0 = time.perf_counter()
                wl.save_arrays(out / "features_f32.npz", wl.compute_feature_matrix(bars, float32_inputs=True))
                timings["features_f32_s"] = time.perf_counter() - t0
        if "rollouts" in wanted:
            steps = args.steps or wl.ROLLOUT_STEPS
            t0 = time.perf_counter()
            rollouts = wl.run_rollouts(bars, steps=steps)
            timings["rollouts_first_s"] = time.perf_counter() - t0  # includes the compiles
            best = float("inf")
            for _ in range(3):  # compiled now: the best of 3 is the throughput, not the noise
                t0 = time.perf_counter()
                again = wl.run_rollouts(bars, steps=steps)
                best = min(best, time.perf_counter() - t0)
            timings["rollouts_s"] = best
            timings["rollouts_steps"] = float(sum(v.size for k, v in again.items() if k.endswith(".t")))
            wl.save_arrays(out / "rollouts.npz", rollouts)
        if "training" in wanted:
            from tradelab_jax import train

            t0 = time.perf_counter()
            with contextlib.redirect_stdout(io.StringIO()):
                code = train.main(wl.training_argv(out / "train", args.train_overrides))
            timings["training_wall_s"] = time.perf_counter() - t0
            if code != 0:
                raise SystemExit(f"the parity training run failed with exit code {code}")
    return {k: round(v, 4) for k, v in timings.items()}


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    out: Path = args.out.expanduser().resolve()
    args.out = out
    out.mkdir(parents=True, exist_ok=True)
    if args.rerun is not None:
        import jax

        with jax.default_device(jax.devices("cpu")[0]):
            info = {"rerun": rerun(args.rerun.expanduser().resolve(), out)}
    else:
        info = {"timings": run_workloads(args)}
    info["settings"] = settings()
    from tradelab_jax.io import atomic_write_json

    atomic_write_json(out / "worker.json", info)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    from tradelab_jax.errors import UserError

    try:
        sys.exit(main())
    except UserError as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(err.exit_code)
