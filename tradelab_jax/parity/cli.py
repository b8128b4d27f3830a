"""``tradelab parity``: argument parsing and the three modes (backends, run directory, determinism cost)."""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import json
import sys
from pathlib import Path
from typing import Any

from tradelab_jax import paths, runs
from tradelab_jax.errors import UserError

REPORT_FILE = "parity_report.json"
DESCRIPTION = "Compare the same work across JAX backends, or a run directory against a local CPU re-run."

_EPILOG = """\
modes:
  tradelab parity                         every backend here (CPU, GPU when present) + a float64 CPU
                                          reference: features, fixed-action replays, a short PPO run
  tradelab parity RUN_DIR                 re-run RUN_DIR's config on this machine's CPU and compare
  tradelab parity RUN_DIR --against DIR   compare two existing run directories (no re-run)
  tradelab parity --measure-determinism-cost   time the deterministic GPU settings against the defaults

Exit status: 0 within tolerance, 1 over tolerance, 2 a user error. Tolerances: docs/parity.md.
"""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tradelab parity", description=DESCRIPTION,
                                epilog=_EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", nargs="?", type=Path, help="a finished run directory to check")
    p.add_argument("--against", type=Path, default=None,
                   help="compare RUN_DIR with this run directory instead of re-running it")
    p.add_argument("--out", type=Path, default=None,
                   help="where to write parity_report.json and the workers' outputs "
                        "(default: outputs/parity/<timestamp>[_<run>])")
    p.add_argument("--json", action="store_true", help="print the report as JSON instead of tables")
    p.add_argument("--profile", choices=("auto", "exact", "x64", "backend"), default="auto",
                   help="tolerance profile for run directories (auto: exact when both trained on CPU)")
    p.add_argument("--backends", default=None,
                   help="comma-separated backends to run (cpu, gpu); default: every one available")
    p.add_argument("--no-x64", dest="x64", action="store_false",
                   help="skip the float64 CPU reference run")
    p.add_argument("--gpu-defaults", action="store_true",
                   help="run the GPU with its default numerics instead of the deterministic settings")
    p.add_argument("--workloads", default="features,rollouts,training",
                   help="comma-separated: features, rollouts, training")
    p.add_argument("--dataset", default=None,
                   help="lake dataset for features/rollouts (default: binance_btcusdt_1m)")
    p.add_argument("--lake", default=None, help="data lake root (default: $TRADELAB_LAKE or data/)")
    p.add_argument("--bars", type=int, default=None, help="bars of the dataset to use (default 20000)")
    p.add_argument("--steps", type=int, default=None, help="replay steps per knob combination (default 5000)")
    p.add_argument("--train-override", action="append", default=[], dest="train_overrides",
                   metavar="KEY=VALUE", help="a `tradelab train` override for the parity training run")
    p.add_argument("--measure-determinism-cost", action="store_true",
                   help="measure throughput and repeatability with and without the deterministic settings")
    p.add_argument("--repeats", type=int, default=2, help="runs per setting for --measure-determinism-cost")
    return p


def _default_out(suffix: str = "") -> Path:
    return paths.default_outputs() / "parity" / (runs.utc_timestamp() + (f"_{suffix}" if suffix else ""))


def _prepare_out(out: Path | None, suffix: str = "") -> Path:
    from tradelab_jax.paths import check_output_dir

    out = check_output_dir(out or _default_out(suffix), "--out")
    if out.is_dir() and (out / REPORT_FILE).exists():
        raise UserError(f"--out {str(out)!r} already holds a {REPORT_FILE}; pick a new directory")
    out.mkdir(parents=True, exist_ok=True)
    return out


def write_report(out: Path, reports: list[Any], meta: dict[str, Any]) -> dict[str, Any]:
    from tradelab_jax.io import atomic_write_json

    doc = {"ok": all(r.ok for r in reports), "created_at": runs.utc_now(), **meta,
           "reports": [r.to_json() for r in reports]}
    atomic_write_json(out / REPORT_FILE, doc)
    return doc


def _emit(doc: dict[str, Any], as_json: bool, out: Path) -> None:
    from tradelab_jax.parity.compare import format_table

    if as_json:
        print(json.dumps(doc, indent=2))
        return
    for report in doc["reports"]:
        print(format_table(report))
        print()
    print(f"report: {out / REPORT_FILE}")


# ---------------------------------------------------------------------------------------------------------
# Backends mode


def _workloads(text: str) -> list[str]:
    from tradelab_jax.parity.worker import WORKLOADS

    chosen = [w.strip() for w in text.split(",") if w.strip()]
    bad = [w for w in chosen if w not in WORKLOADS]
    if bad or not chosen:
        raise UserError(
            f"invalid --workloads {text!r}: use a comma-separated subset of {', '.join(WORKLOADS)}"
        )
    return chosen


def _worker_args(args: argparse.Namespace, workloads: list[str]) -> list[str]:
    out = ["--workloads", ",".join(workloads)]
    for flag in ("dataset", "lake", "bars", "steps"):
        value = getattr(args, flag)
        if value is not None:
            out += [f"--{flag}", str(value)]
    out += [f"--train-override={o}" for o in args.train_overrides]
    return out


def _check_sizes(args: argparse.Namespace) -> None:
    if args.bars is not None and args.bars < 1000:
        raise UserError(f"--bars {args.bars} is too few: use at least 1000 so every feature warms up")
    if args.steps is not None and args.steps < 1:
        raise UserError(f"--steps {args.steps} must be a positive number of replay steps")
    if args.repeats < 1:
        raise UserError(f"--repeats {args.repeats} must be at least 1")


def _backends(args: argparse.Namespace) -> tuple[list[str], dict[str, list[str]]]:
    from tradelab_jax.parity.backends import probe_backends

    chosen = None
    if args.backends is not None:
        chosen = [b.strip() for b in args.backends.split(",") if b.strip()]
        bad = [b for b in chosen if b not in ("cpu", "gpu")]
        if bad or not chosen:
            raise UserError(f"invalid --backends {args.backends!r}: use cpu, gpu or cpu,gpu")
    found = probe_backends()
    available = [b for b in ("cpu", "gpu") if found.get(b)]
    if chosen is None:
        return available, found
    missing = [b for b in chosen if b not in available]
    if missing:
        raise UserError(f"backend {missing[0]!r} is not available here; JAX sees: {', '.join(available)}")
    if "cpu" not in chosen:
        chosen.insert(0, "cpu")  # the reference every other backend is compared with
    return chosen, found


def compare_workers(subject: Path, reference: Path, profile: str, workloads: list[str], *,
                    subject_f32: bool = False) -> list[Any]:
    """Rows for two workers' outputs. ``subject_f32``: compare the subject's float32-computed features."""
    from tradelab_jax.parity import checks
    from tradelab_jax.parity.workloads import load_arrays

    rows: list[Any] = []
    if "features" in workloads:
        ref = load_arrays(reference / "features.npz")
        if subject_f32:
            rows += checks.compare_features(load_arrays(subject / "features_f32.npz"), ref, profile,
                                            float32_compute=True, group="features (f32 compute)")
        else:
            rows += checks.compare_features(load_arrays(subject / "features.npz"), ref, profile,
                                            float32_compute=False)
            if (subject / "features_f32.npz").exists() and (reference / "features_f32.npz").exists():
                rows += checks.compare_features(load_arrays(subject / "features_f32.npz"),
                                                load_arrays(reference / "features_f32.npz"), profile,
                                                float32_compute=True, group="features (f32 compute)")
    if "rollouts" in workloads:
        rows += checks.compare_rollouts(load_arrays(subject / "rollouts.npz"),
                                        load_arrays(reference / "rollouts.npz"), profile)
    if "training" in workloads:
        rows += checks.compare_runs(subject / "train", reference / "train", profile)
    return rows


def run_backends(args: argparse.Namespace) -> int:
    from tradelab_jax.parity.backends import WorkerSpec, run_worker
    from tradelab_jax.parity.compare import Report

    workloads = _workloads(args.workloads)
    _check_sizes(args)
    backends, found = _backends(args)
    if backends == ["cpu"] and not args.x64:
        raise UserError("nothing to compare: only the CPU backend is available and --no-x64 drops the "
                        "float64 reference; drop --no-x64 or run on a machine with a GPU")
    out = _prepare_out(args.out)
    worker_args = _worker_args(args, workloads)
    cpu = WorkerSpec("cpu")
    specs = [cpu]
    if "gpu" in backends:
        specs.append(WorkerSpec("gpu", deterministic=not args.gpu_defaults))
    x64 = WorkerSpec("cpu", x64=True) if args.x64 else None
    cpu_specs = [s for s in (*specs, x64) if s is not None and s.platform == "cpu"]
    infos: dict[str, dict] = {}
    # CPU workers share the cores (results do not depend on it); a GPU worker runs alone.
    with cf.ThreadPoolExecutor(max_workers=len(cpu_specs)) as pool:
        futures = {pool.submit(run_worker, s, out / "workers" / s.label, worker_args): s for s in cpu_specs}
        for fut in cf.as_completed(futures):
            infos[futures[fut].label] = fut.result()
    for s in specs:
        if s.platform != "cpu":
            infos[s.label] = run_worker(s, out / "workers" / s.label, worker_args)

    reports = []
    for s in specs[1:]:
        meta = {"subject": infos[s.label]["settings"], "reference": infos[cpu.label]["settings"]}
        report = Report("backends", s.title, cpu.title, "backend", meta=meta)
        report.extend(compare_workers(out / "workers" / s.label, out / "workers" / cpu.label, "backend",
                                      workloads))
        reports.append(report)
    if x64 is not None:
        meta = {"subject": infos[cpu.label]["settings"], "reference": infos[x64.label]["settings"]}
        report = Report("backends", cpu.title, x64.title, "x64", meta=meta)
        report.extend(compare_workers(out / "workers" / cpu.label, out / "workers" / x64.label, "x64",
                                      workloads, subject_f32=True))
        reports.append(report)
    meta = {"mode": "backends", "backends_found": found, "workloads": workloads,
            "timings": {label: info.get("timings", {}) for label, info in infos.items()}}
    doc = write_report(out, reports, meta)
    _emit(doc, args.json, out)
    return 0 if doc["ok"] else 1


# ---------------------------------------------------------------------------------------------------------
# Run-directory mode


PROFILE_REASONS = {
    "exact": "both runs trained on CPU with the same packing: the same program, so bit-identical",
    "x64": "a packed sweep's point against a run on its own: vmapping over N points compiles different "
           "code, which moves the last bits (measured ~1e-7 relative), so the float32 tolerances apply",
    "backend": "a run trained on another backend (GPU): cross-backend tolerances",
}


def auto_profile(subject: Path, reference: Path) -> str:
    """``exact`` for the same program (CPU, same packing), ``x64`` across packings, else ``backend``."""
    from tradelab_jax.parity import checks

    if not all(checks.run_device(d).startswith("cpu") for d in (subject, reference)):
        return "backend"
    return "exact" if checks.run_points(subject) == checks.run_points(reference) else "x64"


def run_dir_mode(args: argparse.Namespace) -> int:
    from tradelab_jax.parity import checks
    from tradelab_jax.parity.backends import WorkerSpec, run_worker
    from tradelab_jax.parity.compare import Report

    subject = checks.check_finished_run(args.run_dir)
    if args.against is not None:
        reference = checks.check_finished_run(args.against, "--against run directory")
        if reference == subject:
            raise UserError("--against names the run directory itself; give another run to compare with")
    if args.out is not None:
        target = args.out.expanduser().resolve()
        for checked in [subject, *([reference] if args.against is not None else [])]:
            if target == checked or checked in target.parents:
                raise UserError(f"--out {str(args.out)!r} is inside the checked run directory {checked}; "
                                "parity never writes into a checked run, so give a directory outside it")
    out = _prepare_out(args.out, subject.name)
    meta: dict[str, Any] = {"mode": "run_dir", "subject": checks.describe_run(subject)}
    if args.against is None:
        reference = out / "local_cpu"
        info = run_worker(WorkerSpec("cpu"), reference, ["--rerun", str(subject)])
        meta["rerun"] = info
        ref_title = f"local CPU re-run ({reference})"
    else:
        ref_title = str(reference)
    meta["reference"] = checks.describe_run(reference)
    profile = args.profile
    if profile == "auto":
        profile = auto_profile(subject, reference)
        meta["profile_reason"] = PROFILE_REASONS[profile]
    report = Report("run_dir", f"{subject} ({checks.run_device(subject) or '?'})", ref_title, profile)
    report.extend(checks.compare_runs(subject, reference, profile))
    doc = write_report(out, [report], meta)
    _emit(doc, args.json, out)
    return 0 if doc["ok"] else 1


# ---------------------------------------------------------------------------------------------------------
# Determinism cost


def run_measure(args: argparse.Namespace) -> int:
    from tradelab_jax.parity import determinism

    _check_sizes(args)
    workloads = [w for w in _workloads(args.workloads) if w != "features"] or ["rollouts"]
    backends, _ = _backends(args)
    platform = "gpu" if "gpu" in backends else "cpu"
    out = _prepare_out(args.out, "determinism")
    report = determinism.measure(out, platform=platform, repeats=args.repeats, workloads=",".join(workloads),
                                 train_overrides=args.train_overrides, bars=args.bars, steps=args.steps)
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        if platform == "cpu":
            print("note: no GPU here; the XLA:GPU flag and matmul precision do not change CPU programs, so "
                  "this measures the harness, not the cost")
        print(determinism.markdown_table(report))
        print(f"written: {out / 'determinism_cost.md'}")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
    if args.measure_determinism_cost:
        if args.run_dir is not None:
            raise UserError("--measure-determinism-cost takes no run directory")
        return run_measure(args)
    if args.run_dir is not None:
        return run_dir_mode(args)
    if args.against is not None:
        raise UserError("--against needs a run directory to compare: tradelab parity RUN_DIR --against DIR")
    return run_backends(args)
