"""stats.json from the collected points (schema: docs/statistics.md) and its one-sentence verdict."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from tradelab_jax.fmt import fmt_int, fmt_num, fmt_pct
from tradelab_jax.io import atomic_write_json
from tradelab_jax.stats import intervals
from tradelab_jax.stats import pbo as pbo_mod
from tradelab_jax.stats import sharpe as sharpe_mod
from tradelab_jax.stats.collect import METRICS, Point, collect

STATS_FILE = "stats.json"
SCHEMA = 1
BEATS_METRICS = ("total_return", "sharpe")  # p_agent_beats is given for these
SIGNIFICANCE = 0.95


def _num(v):
    if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
        return None
    return float(v)


def _groups(points: list[Point], policy: str, metric: str) -> dict:
    """fold -> per-seed values (one group, fold None, when there are no folds)."""
    by_fold: dict = {}
    for p in points:
        v = _num((p.metrics.get(policy) or {}).get(metric))
        if v is not None:
            by_fold.setdefault(p.fold, []).append(v)
    return by_fold


def _summary(by_fold: dict) -> dict:
    """Per-seed/per-fold values, mean, median, IQM and its stratified-bootstrap 95 % interval."""
    groups = list(by_fold.values())
    vals = [v for g in groups for v in g]
    out = {"values": vals, "n": len(vals), "mean": None, "median": None, "iqm": None, "iqm_ci95": None,
           "reason": None}
    if not vals:
        out["reason"] = "no point has a defined value"
        return out
    out["mean"], out["median"], out["iqm"] = float(np.mean(vals)), float(np.median(vals)), intervals.iqm(vals)
    if all(len(g) < 2 for g in groups):
        out["reason"] = ("an interval needs at least 2 seeds (in at least one fold); "
                         f"{len(vals)} value(s), {max(len(g) for g in groups)} per fold")
    else:
        out["iqm_ci95"] = list(intervals.stratified_bootstrap_ci(groups))
    return out


def _beats(xa: dict, xb: dict) -> dict:
    """P(agent > baseline) within each fold, averaged over the folds both have values in."""
    folds = [f for f in xa if f in xb]
    n = sum(len(xa[f]) for f in folds)
    out = {"value": None, "n": n, "reason": None}
    if not xb:
        out["reason"] = "the baseline's value is undefined at every point (e.g. the Sharpe of a flat curve)"
    elif n < 2:
        out["reason"] = f"needs at least 2 agent runs (seeds or folds) to compare, got {n}"
    if out["reason"]:
        return out
    out["value"] = intervals.probability_of_improvement([xa[f] for f in folds], [xb[f] for f in folds])
    return out


def _fold_key(f):
    return -1 if f is None else int(f)


def _config_returns(points: list[Point], policy: str) -> np.ndarray | None:
    """The configuration's out-of-sample per-bar returns: per fold, the mean over its seeds (an equal-weight
    portfolio of the seeds' agents, truncated to the shortest episode: a kill switch ends one early), the
    folds' test windows then concatenated in fold order (they are disjoint, so this is one time series)."""
    by_fold: dict = {}
    for p in points:
        r = p.returns.get(policy)
        if r is not None and r.size:
            by_fold.setdefault(p.fold, []).append(r)
    if not by_fold:
        return None
    parts = []
    for f in sorted(by_fold, key=_fold_key):
        n = min(r.size for r in by_fold[f])
        parts.append(np.mean([r[:n] for r in by_fold[f]], axis=0))
    return np.concatenate(parts)


def _config_name(cfg: dict) -> str:
    return " ".join(f"{k}={v}" for k, v in cfg.items()) or "(one configuration)"


def compute(path) -> dict:
    """Every statistic of a run, packed sweep, multirun or CV directory (does not write)."""
    kind, points = collect(path)
    configs: dict[str, list[Point]] = {}
    for p in points:
        configs.setdefault(json.dumps(p.config, sort_keys=True, default=str), []).append(p)
    policies = sorted({pol for p in points for pol in p.metrics}, key=lambda x: (x != "agent", x))
    baselines = [pol for pol in policies if pol != "agent"]
    out_configs, returns = [], []
    for key, pts in configs.items():
        r = _config_returns(pts, "agent")
        entry = {"config": json.loads(key), "name": _config_name(pts[0].config),
                 "points": [{"dir": p.dir.name, "seed": p.seed, "fold": p.fold, "split": p.split}
                            for p in pts],
                 "seeds": len({p.seed for p in pts}),
                 "folds": len({p.fold for p in pts if p.fold is not None}),
                 "policies": {pol: {m: _summary(_groups(pts, pol, m)) for m in METRICS} for pol in policies},
                 "p_agent_beats": {}, "bars": int(r.size) if r is not None else 0,
                 "sharpe_per_bar": sharpe_mod.sharpe_per_bar(r) if r is not None else None}
        if "agent" in policies:
            entry["p_agent_beats"] = {b: {m: _beats(_groups(pts, "agent", m), _groups(pts, b, m))
                                          for m in BEATS_METRICS} for b in baselines}
        out_configs.append(entry)
        returns.append(r)
    result = {"schema": SCHEMA, "kind": kind, "configurations": len(out_configs),
              "points": len(points),
              "bootstrap": {"method": "stratified (seeds resampled within each fold), percentile interval",
                            "statistic": "IQM", "resamples": intervals.RESAMPLES,
                            "rng": f"numpy.random.default_rng({intervals.RNG_SEED})",
                            "rng_seed": intervals.RNG_SEED, "confidence": intervals.CONFIDENCE},
              "configs": out_configs, "best": None,
              "deflated_sharpe": {"value": None, "reason": "no configuration has an agent Sharpe ratio"},
              "pbo": None, "verdict": None}
    scored = [i for i, c in enumerate(out_configs) if _agent(c, "sharpe")["mean"] is not None]
    if scored:
        bi = max(scored, key=lambda i: _agent(out_configs[i], "sharpe")["mean"])
        best = out_configs[bi]
        result["best"] = {"index": bi, "name": best["name"], "config": best["config"],
                          "sharpe": _agent(best, "sharpe")["mean"], "selected_by": "mean agent Sharpe"}
        srs = [c["sharpe_per_bar"] for c in out_configs if c["sharpe_per_bar"] is not None]
        var = float(np.var(srs, ddof=1)) if len(srs) >= 2 else None
        dsr = sharpe_mod.deflated_sharpe(returns[bi] if returns[bi] is not None else np.zeros(0),
                                         len(out_configs), var)
        if len(out_configs) > 1 and var is None:
            dsr["reason"] = (f"only {len(srs)} of {len(out_configs)} configurations have a per-bar Sharpe "
                             "ratio")
        result["deflated_sharpe"] = dsr
    mats = [r for r in returns if r is not None and r.size]
    if len(out_configs) >= 2 and len(mats) == len(out_configs):
        n = min(m.size for m in mats)
        result["pbo"] = pbo_mod.pbo(np.stack([m[:n] for m in mats], axis=1))
    else:
        why = (f"needs at least 2 configurations, here {len(out_configs)}" if len(out_configs) < 2 else
               "some configurations have no per-bar returns (telemetry.parquet)")
        result["pbo"] = {"value": None, "blocks": pbo_mod.BLOCKS, "configurations": len(out_configs),
                         "reason": why}
    result["verdict"] = verdict(result)
    return result


def _agent(c: dict, metric: str) -> dict:
    return (c["policies"].get("agent") or {}).get(metric) or {"mean": None}


def verdict(s: dict) -> str:
    """One sentence: the best configuration's Sharpe with its interval, how much it traded, its deflated
    Sharpe probability (significant or not at 95 %) and the PBO; every missing number says why."""
    if not s.get("best"):
        return "no agent Sharpe ratio could be computed from this directory (no evaluated trading run in it)"
    n = s["configurations"]
    best = s["configs"][s["best"]["index"]]
    shp = _agent(best, "sharpe")
    runs_of = []
    if best["folds"]:
        runs_of.append(f"{best['folds']} folds")
    runs_of.append(f"{best['seeds']} seed{'s' if best['seeds'] != 1 else ''}")
    head = f"best of {n} configurations" if n > 1 else "1 configuration"
    parts = [f"{head} ({' x '.join(runs_of)}): agent Sharpe {fmt_num(shp['mean'])}"]
    if shp.get("iqm_ci95"):
        lo, hi = shp["iqm_ci95"]
        parts[0] += f" (IQM {fmt_num(shp['iqm'])}, 95 % interval {fmt_num(lo)} to {fmt_num(hi)})"
    else:
        parts[0] += " (no interval: one seed per fold)" if best["folds"] else " (no interval: a single seed)"
    trades, exposure = _agent(best, "trades").get("median"), _agent(best, "exposure").get("median")
    if trades is not None and exposure is not None:
        parts.append(f"median {fmt_int(round(trades))} trades, exposure {fmt_pct(exposure)}")
    d = s.get("deflated_sharpe") or {}
    if d.get("value") is None:
        parts.append(f"deflated Sharpe n/a ({d.get('reason')})")
    else:
        sig = "significant" if d["value"] >= SIGNIFICANCE else "not significant"
        what = "deflated Sharpe probability" if n > 1 else "probabilistic Sharpe ratio P(Sharpe > 0)"
        parts.append(f"{what} {d['value']:.2f}, {sig} at 95 %")
    p = s.get("pbo") or {}
    parts.append(f"PBO {p['value']:.2f}" if p.get("value") is not None else f"PBO n/a ({p.get('reason')})")
    return "; ".join(parts)


def write_stats(path) -> dict:
    """Compute and write ``<path>/stats.json`` (atomic, strict JSON)."""
    s = compute(path)
    atomic_write_json(Path(path) / STATS_FILE, s)
    return s


def after_training(where, cfg: dict) -> str | None:
    """The trainer's hook (training/session.finish): write stats.json into the run's or packed sweep's
    directory once every point is evaluated, and a Hydra multirun job's into the multirun's directory too;
    returns the verdict. A trading run only (gymnax runs have no
    split metrics) and only when it was evaluated. A failure here is one warning, never a failed run: the
    trained and evaluated run is done, and ``tradelab stats DIR`` can write the file again."""
    from tradelab_jax import runs

    if (cfg.get("env") or {}).get("kind") == "gymnax" or not (cfg.get("run") or {}).get("eval", True):
        return None
    verdict = _write_or_warn(Path(where))
    parent = Path(where).parent
    if runs.is_run_dir(where) and (parent / MULTIRUN_FILE).is_file() and not runs.is_sweep_dir(parent):
        # a Hydra multirun's job: the multirun's stats.json covers the jobs evaluated so far (the last job
        # to finish writes it over all of them), without a hook in Hydra's launcher
        _write_or_warn(parent)
    return verdict


MULTIRUN_FILE = "multirun.yaml"  # Hydra writes it at the top of a multirun (-m) directory


def _write_or_warn(where: Path) -> str | None:
    import sys

    try:
        return write_stats(where)["verdict"]
    except Exception as err:  # see after_training: never fail a done run
        print(f"warning: stats.json not written ({type(err).__name__}: {err}); run `tradelab stats {where}`",
              file=sys.stderr)
        return None
