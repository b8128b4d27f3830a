"""``tradelab bench folds``: F folds x S seeds trained as one program against F*S separate processes.

The one-program row is ``tradelab train cv=<kind> cv.folds=F sweep.seed=[0..S-1]``: every fold and seed is a
point of one packed run, one compile, the folds differing only in traced start bounds. The other row trains
the same F*S agents the way a loop over folds and seeds would, one ``tradelab train cv.fold=k seed=s``
process each (the same fold windows: ``cv.fold`` trains one fold alone), one after another on the same
machine in the same run. Both rows report the wall time of the whole job as a user waits for it (process
start, data loading, compiling, training, evaluating each point on its fold's test window) and the env steps
of all points per second of it.
"""

from __future__ import annotations

import argparse
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

# The demo's PPO at a budget of minutes for the separate-process row on 2 cores.
BASE = ["agent.num_envs=32", "agent.num_steps=128", "agent.update_epochs=4", "agent.num_minibatches=8",
        "agent.ent_coef=0.01", "run.chunk_updates=16", "run.progress=false", "run.print_summary=false",
        "run.loggers=[]"]
QUICK = ["agent.num_envs=4", "agent.num_steps=16", "agent.update_epochs=1", "agent.num_minibatches=1",
         "network.hidden_sizes=[8]", "run.chunk_updates=2", "run.progress=false", "run.print_summary=false",
         "run.loggers=[]", "env.episode_length=64", "data.start=2025-06-01", "data.end=2025-06-03",
         "env.window=2"]


def _train(overrides: list[str], outputs: Path) -> float:
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "tradelab_jax.train", *overrides, f"run.outputs={outputs}"],
                          capture_output=True, text=True, cwd=paths.REPO_ROOT)
    wall = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(f"tradelab train {' '.join(overrides)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-2000:]}")
    return wall


def run_bench(*, folds: int, seeds: int, kind: str, steps: int, quick: bool) -> dict[str, Any]:
    base = [*(QUICK if quick else BASE), f"cv={kind}", f"cv.folds={folds}", f"agent.total_timesteps={steps}"]
    points = folds * seeds
    with tempfile.TemporaryDirectory(prefix="tl-bench-folds-") as tmp:
        print(f"one program: {folds} folds x {seeds} seeds ...", file=sys.stderr, flush=True)
        one = _train([*base, f"sweep.seed=[{','.join(str(s) for s in range(seeds))}]"], Path(tmp) / "one")
        loop = 0.0
        for k in range(folds):
            for s in range(seeds):
                print(f"separate process {k * seeds + s + 1}/{points}: cv.fold={k} seed={s} ...",
                      file=sys.stderr, flush=True)
                loop += _train([*base, f"cv.fold={k}", f"seed={s}"], Path(tmp) / f"f{k}s{s}")
    from tradelab_jax.bench.env import cpu_model

    total = points * steps
    return {"machine": {"cpu": cpu_model(), "cores": os.cpu_count(), "python": platform.python_version()},
            "config": base, "folds": folds, "seeds": seeds, "env_steps": total,
            "rows": [{"row": "one program", "processes": 1, "wall_s": round(one, 2),
                      "steps_per_s": round(total / one, 1)},
                     {"row": "separate processes", "processes": points, "wall_s": round(loop, 2),
                      "steps_per_s": round(total / loop, 1)}],
            "speedup": round(loop / one, 2)}


def _table(r: dict[str, Any]) -> str:
    lines = [f"{r['folds']} folds x {r['seeds']} seeds, {r['env_steps']} env steps in all",
             f"{'row':<20} {'processes':>9} {'wall s':>9} {'env steps/s':>12}"]
    lines += [f"{x['row']:<20} {x['processes']:>9} {x['wall_s']:>9.2f} {x['steps_per_s']:>12.1f}"
              for x in r["rows"]]
    lines.append(f"one program is {r['speedup']:.2f}x faster than {r['folds'] * r['seeds']} separate "
                 "processes")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tradelab bench folds", description=__doc__.splitlines()[0])
    parser.add_argument("--folds", type=int, default=5, help="folds F (>= 2; default 5)")
    parser.add_argument("--seeds", type=int, default=4, help="seeds S (>= 1; default 4)")
    parser.add_argument("--cv", default="walk_forward", choices=["walk_forward", "purged_kfold"])
    parser.add_argument("--steps", type=int, default=None,
                        help="env steps per point (default 65536; --quick: 128)")
    parser.add_argument("--quick", action="store_true", help="a tiny configuration (seconds per process)")
    parser.add_argument("--json", metavar="FILE", help="also write the result as JSON to FILE")
    args = parser.parse_args(argv)
    if args.folds < 2 or args.seeds < 1:
        raise UserError(f"--folds must be >= 2 and --seeds >= 1, got {args.folds} and {args.seeds}")
    steps = args.steps if args.steps is not None else (128 if args.quick else 65536)
    if steps < 1:
        raise UserError(f"--steps must be >= 1, got {steps}")
    if args.json:
        paths.check_output_dir(str(Path(args.json).parent), "--json")
    result = run_bench(folds=args.folds, seeds=args.seeds, kind=args.cv, steps=steps, quick=args.quick)
    print(_table(result))
    if args.json:
        from tradelab_jax.io import atomic_write_text

        atomic_write_text(Path(args.json), json.dumps(result, indent=2) + "\n")
    return 0
