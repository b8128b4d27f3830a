"""A stand-in for ``python -m tradelab_jax.train`` that follows the run-directory contract in milliseconds.

It reads ``run.dir=`` from its arguments (the point directories the UI created under it, or the directory
itself; for a sweep also ``packed.json`` and a ``.hydra/`` folder at the group's top, as the real trainer
writes), then writes status/metrics/a checkpoint per chunk and honours CANCEL files and SIGTERM at chunk
boundaries, like the real runner. ``run.resume=<dir>`` continues a run (or every point of a packed sweep)
from its last checkpoint, removing CANCEL files first, as the real trainer does. ``FAKE_TRAIN_MODE``:
``ok`` (default), ``slow`` (runs until cancelled), ``fail`` (a user error, exit 2), ``hang`` (ignores
SIGTERM; only SIGKILL stops it), ``crash`` (dies without a word). ``FAKE_TRAIN_GATE=<file>``: after its
first chunk it waits (at that chunk boundary, still honouring a cancel) until the file exists, so a test
can look at a run mid-way for as long as it needs instead of racing ``FAKE_TRAIN_DELAY``.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

from tradelab_jax import runs
from tradelab_jax.io import atomic_write_json


def main() -> int:
    args = sys.argv[1:]
    resume = any(a.startswith("run.resume=") for a in args)
    key = "run.resume=" if resume else "run.dir="
    run_dir = Path(next(a.split("=", 1)[1] for a in args if a.startswith(key)).strip("'"))
    mode = os.environ.get("FAKE_TRAIN_MODE", "ok")
    chunks = 10_000 if mode in ("slow", "hang") else int(os.environ.get("FAKE_TRAIN_CHUNKS", "3"))
    delay = float(os.environ.get("FAKE_TRAIN_DELAY", "0.05"))
    gate = os.environ.get("FAKE_TRAIN_GATE")
    dirs = runs.point_dirs(run_dir) or [run_dir]
    stop: dict[str, int | None] = {"sig": None}
    if mode == "hang":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
    else:
        signal.signal(signal.SIGTERM, lambda s, f: stop.update(sig=s))
    print("fake trainer args:", " ".join(args), flush=True)
    if mode == "crash":
        os._exit(9)
    if mode == "fail":
        print("error: agent.total_timesteps=1 is less than one update", flush=True)
        return 2
    if resume:
        start = _resume(run_dir, dirs, chunks)
    else:
        start = 0
        _start(args, run_dir, dirs, chunks)
    for c in range(start + 1, chunks + 1):
        time.sleep(delay)
        for d in dirs:
            runs.append_metrics(
                d,
                {
                    "update": c,
                    "env_steps": c * 100,
                    "steps_per_s": 1000.0 + c,
                    "mean_episode_return": 0.1 * c,
                    "loss": 1.0 / c,
                },
            )
            runs.write_checkpoint(d, c, b"fake runner state", {"env_steps": c * 100})
            runs.write_status(
                d, update=c, env_steps=c * 100, progress=c / chunks, mean_episode_return=0.1 * c
            )
        print(f"fake: chunk {c}/{chunks}", flush=True)
        if gate and c == start + 1 and c < chunks:
            while not (Path(gate).exists() or _stopping(mode, stop, run_dir, dirs)):
                time.sleep(0.01)
        if c < chunks and _stopping(mode, stop, run_dir, dirs):
            for d in dirs:
                runs.write_status(d, status="cancelled", ended_at=runs.utc_now(), pid=None)
            return 130
    for d in dirs:
        runs.write_eval_summary(d, {"run": {"dataset_id": "fake_ds"}, "splits": {}})
        runs.write_status(d, status="done", progress=1.0, ended_at=runs.utc_now(), pid=None)
    return 0


def _stopping(mode: str, stop: dict[str, int | None], run_dir: Path, dirs: list[Path]) -> bool:
    """A SIGTERM or a CANCEL file stops the run at a chunk boundary (never in ``hang`` mode)."""
    if mode == "hang":
        return False
    return stop["sig"] is not None or any(runs.cancel_requested(d) for d in [run_dir, *dirs])


def _start(args: list[str], run_dir: Path, dirs: list[Path], chunks: int) -> None:
    tag = next((a.split("=", 1)[1] for a in args if a.startswith("run.tag=")), "fake")
    if len(dirs) > 1 or dirs[0] != run_dir:  # a packed sweep: the real trainer's files at the group's top
        atomic_write_json(run_dir / runs.PACKED_FILE, {"points": [{"dir": d.name} for d in dirs]})
        (run_dir / ".hydra").mkdir(exist_ok=True)
        runs.write_config(run_dir / ".hydra", {"hydra": "not a run"})
    for n, d in enumerate(dirs):
        runs.write_config(
            d,
            {
                "seed": n,
                "data": {"id": "fake_ds"},
                "env": {"kind": "trading", "risk_pct": 0.01},
                "run": {"tag": tag},
            },
        )
        runs.write_status(
            d,
            status="running",
            pid=os.getpid(),
            started_at=runs.utc_now(),
            update=0,
            env_steps=0,
            total_env_steps=chunks * 100,
            progress=0.0,
        )


def _resume(run_dir: Path, dirs: list[Path], chunks: int) -> int:
    """Continue from the points' last checkpoint (the chunk number), as ``run.resume`` does."""
    for d in {run_dir, *dirs}:
        (d / runs.CANCEL_FILE).unlink(missing_ok=True)
    found = [runs.latest_checkpoint(d) for d in dirs]
    if any(f is None for f in found):
        print(f"error: cannot resume {run_dir}: it has no checkpoint", flush=True)
        sys.exit(2)
    start = min(int(meta["update"]) for _, meta in found)
    for d in dirs:
        runs.write_status(
            d,
            status="running",
            pid=os.getpid(),
            resumed_at=runs.utc_now(),
            ended_at=None,
            error=None,
            total_env_steps=chunks * 100,
        )
    print(f"fake: resumed at chunk {start}", flush=True)
    return start


if __name__ == "__main__":
    sys.exit(main())
