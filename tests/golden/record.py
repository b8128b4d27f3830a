"""Golden results: three fixed trainings whose outputs must stay bit-identical across refactorings.

The configurations are the README demo's, a 4-point packed sweep with an env axis and an agent axis, and
gymnax CartPole, each at a fixed seed. For each run directory the record keeps ``eval_summary.json``
without its timing and version fields, ``metrics.jsonl`` without its timing fields, and the sha256 of the
final checkpoint's bytes. ``tests/golden/test_golden.py`` re-trains them and compares.

XLA:CPU compiles for the host's CPU (vector width, FMA, its own matmul kernels), so the same program and seed
give the same bits run after run on one kind of machine but not across kinds: an AVX-512 AMD EPYC and the
machine the first records came from differ from the first update on, in the 7th significant digit, and an RL
run amplifies that into different policies. Records are therefore kept per machine ``fingerprint`` (CPU
model and ISA flags, the numeric libraries' versions): on a machine with a record the results must be
bit-identical; on another one, the first chunk's training metrics must agree with every record to
``FIRST_CHUNK_RTOL`` (what differing float rounding allows; a change of semantics moves them far more).

Record on purpose (a change that is meant to change results: regenerate on every machine kind you can, and
say why in the commit), or add this machine's record to the existing ones (``--add-machine``):

    .venv/bin/python tests/golden/record.py --regenerate
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
GOLDEN_FILE = HERE / "golden.json"
REPO = HERE.parent.parent

# name -> `tradelab train` overrides (outputs, progress and summary printing are added by run_case).
CASES: dict[str, list[str]] = {
    "demo": ["experiment=demo"],
    "packed_sweep": [
        "agent.num_envs=8", "agent.num_steps=32", "agent.total_timesteps=8192", "agent.num_minibatches=4",
        "network.hidden_sizes=[32,32]", "run.chunk_updates=8", "run.tag=golden-sweep", "seed=3",
        "sweep.env.risk_pct=[0.005,0.02]", "sweep.agent.lr=[1.0e-4,1.0e-3]",
    ],
    "cartpole": [
        "env=gymnax", "env.id=CartPole-v1", "agent.num_envs=4", "agent.num_steps=64",
        "agent.total_timesteps=32768", "run.chunk_updates=16", "run.tag=golden-cartpole", "seed=7",
    ],
}
# eval_summary.json's `run` fields that measure the machine or the clock, not the result.
RUN_INFO_VOLATILE = ("wall_s", "compile_s", "train_s", "steps_per_s", "steps_per_s_all_points", "jax_version",
                     "python", "device")
METRICS_VOLATILE = ("time", "wall_s", "steps_per_s")
# Relative agreement of the first chunk's training metrics across machine kinds (measured: 7e-8 for the
# losses, 2e-5 for policy losses, 7e-4 for the demo's clip fraction between the two records), plus an absolute
# floor for values near zero.
FIRST_CHUNK_RTOL, FIRST_CHUNK_ATOL = 1e-3, 1e-4
LIBRARIES = ("jax", "jaxlib", "flax", "optax", "numpy", "gymnax")
ISA_FLAGS = ("sse4_2", "avx", "avx2", "fma", "avx512f", "avx512bw", "avx512vl", "avx512_bf16", "amx_tile")


def fingerprint() -> dict:
    """What decides XLA:CPU's floating-point results besides the program: CPU model and ISA, libraries."""
    from importlib.metadata import PackageNotFoundError, version

    model, flags = platform.processor(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    libs = {}
    for lib in LIBRARIES:
        try:
            libs[lib] = version(lib)
        except PackageNotFoundError:
            libs[lib] = None
    return {"machine": platform.machine(), "cpu": model, "isa": [f for f in ISA_FLAGS if f in flags],
            "libraries": libs}


def load() -> list[dict]:
    """The records: ``[{"fingerprint": ..., "cases": {case: [run dir records]}}]`` (the first file format,
    the cases alone, is one record of an unknown machine)."""
    data = json.loads(GOLDEN_FILE.read_text())
    if "machines" not in data:
        return [{"fingerprint": {"unrecorded": "recorded 2026-12-02 before fingerprints"}, "cases": data}]
    return data["machines"]


def run_dirs(outputs: Path) -> list[Path]:
    """Every run directory (one with a status.json) under ``outputs``, in path order."""
    return sorted(p.parent for p in outputs.rglob("status.json"))


def normalise(run_dir: Path) -> dict:
    summary = json.loads((run_dir / "eval_summary.json").read_text())
    for key in RUN_INFO_VOLATILE:
        summary["run"].pop(key, None)
    summary.pop("data_splits", None)  # the split ranges (facts of the config, added after the goldens)
    metrics = []
    for line in (run_dir / "metrics.jsonl").read_text().splitlines():
        rec = json.loads(line)
        metrics.append({k: v for k, v in rec.items() if k not in METRICS_VOLATILE})
    latest = json.loads((run_dir / "checkpoints" / "latest.json").read_text())
    ckpt = (run_dir / "checkpoints" / latest["file"]).read_bytes()
    return {
        "eval_summary": summary,
        "metrics": metrics,
        "checkpoint": {"file": latest["file"], "bytes": len(ckpt),
                       "sha256": hashlib.sha256(ckpt).hexdigest()},
    }


def run_case(name: str, outputs: Path) -> list[dict]:
    """Train case ``name`` into ``outputs`` in a fresh process; the normalised record of each run dir."""
    cmd = [sys.executable, "-m", "tradelab_jax.train", *CASES[name], f"run.outputs={outputs}",
           "run.progress=false", "run.print_summary=false"]
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    if proc.returncode != 0:
        raise RuntimeError(f"golden case {name} failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    dirs = run_dirs(outputs)
    # Directory names carry a UTC timestamp: keep only the part below it (".", or the point number).
    base = dirs[0].parent if len(dirs) > 1 else dirs[0]
    return [{"dir": "." if d == base else d.name, **normalise(d)} for d in dirs]


def record_all() -> dict[str, list[dict]]:
    out = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in CASES:
            out[name] = run_case(name, Path(tmp) / name)
    return out


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--regenerate", action="store_true",
                       help=f"re-train every case and overwrite {GOLDEN_FILE.relative_to(REPO)} with this "
                            "machine's record alone")
    group.add_argument("--add-machine", action="store_true",
                       help="re-train every case and add (or replace) this machine's record, keeping others")
    args = parser.parse_args(argv)
    if not (args.regenerate or args.add_machine):
        parser.error("nothing to do: pass --regenerate (or --add-machine) to write golden results on purpose")
    fp = fingerprint()
    print(f"recording the golden results on purpose: {', '.join(CASES)} on {fp['cpu']} -> {GOLDEN_FILE}",
          flush=True)
    machines = [m for m in load() if m["fingerprint"] != fp] if args.add_machine else []
    machines.append({"fingerprint": fp, "cases": record_all()})
    tmp = GOLDEN_FILE.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({"machines": machines}, indent=1, sort_keys=True) + "\n")
    tmp.replace(GOLDEN_FILE)
    print(f"wrote {GOLDEN_FILE}: {len(machines)} machine record(s)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
