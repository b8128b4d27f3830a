"""Read what was trained: run, packed-sweep, multirun and CV (packed points with a ``fold`` key) directories.

Each point gives its out-of-sample split's metrics per policy (eval_summary.json) and its per-bar returns
per policy (telemetry.parquet equity). Configurations are points grouped by every key except seed and fold.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tradelab_jax import runs
from tradelab_jax.errors import UserError
from tradelab_jax.knobs import ENV_KNOBS
from tradelab_jax.tracking import flat  # light: imports no logger library until one is used

METRICS = ("total_return", "sharpe", "sortino", "max_drawdown", "fees_paid", "trades", "exposure")
NOT_CONFIG = ("seed", "fold")


@dataclass
class Point:
    dir: Path
    seed: int | None
    fold: int | None
    config: dict
    split: str | None = None
    metrics: dict = field(default_factory=dict)  # policy -> metric -> value
    returns: dict = field(default_factory=dict)  # policy -> per-bar returns, fraction per bar (np.ndarray)
    summary: dict = field(default_factory=dict)


def discover(path) -> tuple[str, list[Point]]:
    """(kind, points) of a run ('run'), packed sweep ('sweep' or 'cv') or multirun ('multirun') directory."""
    root = Path(path)
    if not root.is_dir():
        raise UserError(f"{path} is no directory; give a run, packed sweep or multirun directory")
    if runs.is_run_dir(root):
        s = runs.read_eval_summary(root) or {}
        return "run", [Point(root, (s.get("run") or {}).get("seed"), None, {})]
    if runs.is_sweep_dir(root):
        packed = json.loads((root / runs.PACKED_FILE).read_text())
        pts = [Point(root / str(p["dir"]), p.get("seed"), p.get("fold"),
                     {k: v for k, v in p.items() if k not in (*NOT_CONFIG, "dir")})
               for p in packed.get("points", [])]
        cv = "fold" in packed.get("keys", []) or "folds" in packed or any(p.fold is not None for p in pts)
        return ("cv" if cv else "sweep"), pts
    jobs = [d for d in runs.point_dirs(root) if runs.is_run_dir(d)]
    if jobs:
        pts = []
        for d in jobs:
            keys = flat(runs.read_config(d))
            cfg = {k: v for k, v in keys.items() if k not in NOT_CONFIG
                   and not k.startswith(("run.", "hydra.")) and not k.endswith(".seed")}
            pts.append(Point(d, keys.get("seed"), keys.get("cv.fold"), cfg))
        # only the keys that differ between jobs name a configuration
        varying = {k for k in set().union(*(p.config for p in pts))
                   if len({json.dumps(p.config.get(k), sort_keys=True, default=str) for p in pts}) > 1}
        for p in pts:
            p.config = {k: p.config.get(k) for k in sorted(varying)}
        return "multirun", pts
    raise UserError(f"{path} holds no run (status.json), packed sweep (packed.json) or multirun "
                    "(numbered run folders); give one of those directories")


def load_point(p: Point) -> Point:
    """Fill ``p`` from its eval_summary.json (test split, else the last split) and telemetry.parquet.

    The per-bar returns are those ``env.metrics.summarize`` takes its Sharpe from: equity after each step
    over the equity before it, the first step measured from ``env.initial_cash``."""
    s = runs.read_eval_summary(p.dir)
    if not s or not s.get("splits"):
        return p
    p.summary = s
    splits = s["splits"]
    p.split = "test" if "test" in splits else list(splits)[-1]
    table = splits[p.split]
    for pol, row in table.items():
        if isinstance(row, dict):
            p.metrics[pol] = {m: row.get(m) for m in METRICS}
    tel = p.dir / "telemetry.parquet"
    if tel.is_file():
        import pandas as pd

        try:
            cfg = runs.read_config(p.dir)
        except (OSError, runs.RunFileError):
            cfg = {}
        cash = float((cfg.get("env") or {}).get("initial_cash", ENV_KNOBS["initial_cash"].default))
        df = pd.read_parquet(tel, columns=["split", "policy", "t", "equity"])
        df = df[df["split"] == p.split]
        for pol, g in df.groupby("policy"):
            eq = np.concatenate([[cash], g.sort_values("t")["equity"].to_numpy(dtype=float)])
            p.returns[str(pol)] = eq[1:] / eq[:-1] - 1.0
    return p


def collect(path) -> tuple[str, list[Point]]:
    kind, pts = discover(path)
    pts = [load_point(p) for p in pts]
    return kind, [p for p in pts if p.metrics]
