"""``tradelab bench tracking``: what experiment tracking costs a training run.

Loggers work on background threads (one per logger kind, started when the run starts, so their start-up
overlaps the env build and the compile); the host loop only hands each chunk's records over, and after
training waits for them to finish. Each row trains the same configuration (the demo's by default:
experiment=demo over its four packed seeds) in a fresh process with one ``run.loggers`` set and reports,
summed over the points from each point's ``tracking.json``:

- ``logging_s``: the seconds the host loop waited on the loggers (handing records over, the flush after
  training): what the run paid;
- ``busy_s``: the seconds the loggers worked on their threads (prepare, start-up, every record, closing),
  which overlap training, and ``cpu_s``, the CPU time of that work: what they can take from training on a
  machine with few cores (W&B's service process is not in it);
- ``cost``: ``logging_s / wall_s`` of the run's training (compile + chunks), the figure the target is about
  (< 2 % at the demo's settings, issue 17);
- ``wall_s`` of the training for every row, including the row without loggers, so the direct measurement can
  be set against the end-to-end difference (which on a busy machine is mostly noise), and the process's
  whole time (``process_s``: start-up, training, evaluation, the flush) for the same comparison.

MLflow writes to a sqlite store under the row's own outputs folder and W&B runs offline, so nothing leaves
the machine.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from tradelab_jax import paths
from tradelab_jax.errors import UserError

TARGET = 0.02  # logging_s / training wall_s at the demo's settings
DEMO_SEEDS = "[0,1,2,3]"
DEMO = ["experiment=demo", f"sweep.seed={DEMO_SEEDS}", "agent.total_timesteps=524288",
        "run.eval_splits=[test]"]
QUICK = ["agent.num_envs=4", "agent.num_steps=16", "agent.total_timesteps=1024", "agent.num_minibatches=1",
         "agent.update_epochs=1", "network.hidden_sizes=[8]", "run.chunk_updates=4", "sweep.seed=[0,1]",
         "run.eval_splits=[test]"]
SETS = (("none", []), ("tensorboard", ["tensorboard"]), ("tensorboard+mlflow", ["tensorboard", "mlflow"]),
        ("tensorboard+wandb", ["tensorboard", "wandb"]))
MODULES = {"mlflow": "mlflow", "wandb": "wandb"}


def _available(names: list[str]) -> str | None:
    for n in names:
        if n in MODULES and importlib.util.find_spec(MODULES[n]) is None:
            return f"{n} is not installed (pip install 'tradelab_jax[tracking]')"
    return None


def measure(overrides: list[str], loggers: list[str], outputs: Path) -> dict[str, Any]:
    """Train once in a fresh process with ``run.loggers=loggers``; the run's timings and logging seconds."""
    cmd = [sys.executable, "-m", "tradelab_jax.train", *overrides, f"run.loggers=[{','.join(loggers)}]",
           f"run.outputs={outputs}", "run.progress=false", "run.print_summary=false", "run.tag=bench"]
    env = {**os.environ, "WANDB_MODE": "offline", "WANDB_SILENT": "true"}
    env.pop("MLFLOW_TRACKING_URI", None)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=paths.REPO_ROOT)
    process_s = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"training with run.loggers={loggers} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}")
    # Run directories only (MLflow's artifact store under the outputs holds copies of eval_summary.json).
    points = sorted(p.parent for p in outputs.rglob("status.json")
                    if (p.parent / "eval_summary.json").exists() and "mlruns" not in p.parts)
    if not points:
        raise RuntimeError(f"training with run.loggers={loggers} wrote no eval_summary.json under {outputs}")
    run = json.loads((points[0] / "eval_summary.json").read_text())["run"]
    logging_s = busy_s = cpu_s = 0.0
    for p in points:
        t = p / "tracking.json"
        if t.exists():
            record = json.loads(t.read_text())
            logging_s += float(record.get("logging_s") or 0.0)
            busy_s += float(record.get("logger_busy_s") or 0.0)
            cpu_s += float(record.get("logger_cpu_s") or 0.0)
    warnings = [line for line in proc.stderr.splitlines() if "logger disabled" in line]
    return {"points": len(points), "env_steps": run["env_steps"] * len(points), "wall_s": run["wall_s"],
            "train_s": run["train_s"], "compile_s": run["compile_s"], "logging_s": round(logging_s, 4),
            "busy_s": round(busy_s, 4), "cpu_s": round(cpu_s, 4), "process_s": round(process_s, 3),
            "cost": logging_s / run["wall_s"] if run["wall_s"] else None, "warnings": warnings}


def run_bench(overrides: list[str], sets: list[tuple[str, list[str]]]) -> dict[str, Any]:
    rows = []
    for name, loggers in sets:
        skip = _available(loggers)
        if skip:
            rows.append({"loggers": name, "skipped": skip})
            continue
        with tempfile.TemporaryDirectory(prefix="tl-bench-tracking-") as tmp:
            print(f"training with run.loggers=[{','.join(loggers)}] ...", file=sys.stderr, flush=True)
            rows.append({"loggers": name, "skipped": None, **measure(overrides, loggers, Path(tmp))})
    base = next((r for r in rows if r["loggers"] == "none" and not r["skipped"]), None)
    for r in rows:
        r["wall_vs_none_s"] = (round(r["wall_s"] - base["wall_s"], 3)
                               if base and not r["skipped"] else None)
        r["process_vs_none_s"] = (round(r["process_s"] - base["process_s"], 3)
                                  if base and not r["skipped"] else None)
    from tradelab_jax.bench.env import cpu_model

    measured = [r["cost"] for r in rows if not r["skipped"] and r["loggers"] != "none"]
    return {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
            "overrides": overrides, "rows": rows, "target": f"logging_s / wall_s < {TARGET:.0%}",
            "met": (max(measured) < TARGET) if measured else None}


def _table(result: dict[str, Any]) -> str:
    head = (f"{'loggers':<20} {'env steps':>10} {'wall s':>8} {'logging s':>10} {'cost':>7} {'busy s':>8} "
            f"{'cpu s':>7} {'wall - none':>12} {'process s':>10} {'proc - none':>12}")
    lines = [head, "-" * len(head)]
    for r in result["rows"]:
        if r["skipped"]:
            lines.append(f"{r['loggers']:<20} skipped: {r['skipped']}")
            continue
        cost = "n/a" if r["cost"] is None else f"{r['cost']:.2%}"
        diff = "" if r["wall_vs_none_s"] is None else f"{r['wall_vs_none_s']:+.2f} s"
        pdiff = "" if r["process_vs_none_s"] is None else f"{r['process_vs_none_s']:+.2f} s"
        lines.append(f"{r['loggers']:<20} {r['env_steps']:>10} {r['wall_s']:>8.2f} {r['logging_s']:>10.3f} "
                     f"{cost:>7} {r['busy_s']:>8.2f} {r['cpu_s']:>7.2f} {diff:>12} {r['process_s']:>10.2f} "
                     f"{pdiff:>12}")
    verdict = {True: "met", False: "NOT met", None: "not measured"}[result["met"]]
    lines.append(f"target {result['target']}: {verdict}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tradelab bench tracking", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a tiny configuration (seconds), for tests")
    parser.add_argument("--loggers", default=",".join(n for n, _ in SETS),
                        help="which rows to run, comma-separated (default all: "
                             f"{', '.join(n for n, _ in SETS)})")
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="extra `tradelab train` overrides (after the demo's or --quick's)")
    args = parser.parse_args(argv)
    known = dict(SETS)
    wanted = [n.strip() for n in args.loggers.split(",") if n.strip()]
    bad = [n for n in wanted if n not in known]
    if bad or not wanted:
        raise UserError(f"--loggers: {', '.join(bad) or 'nothing'} is not a row; valid: {', '.join(known)}")
    if args.json:
        paths.check_output_dir(str(Path(args.json).parent or "."), "--json")
    result = run_bench([*(QUICK if args.quick else DEMO), *args.overrides], [(n, known[n]) for n in wanted])
    print(_table(result))
    if args.json:
        from tradelab_jax.io import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return 0
