"""Quantity-by-quantity comparisons of two workers' outputs or two run directories -> report rows."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from tradelab_jax import runs
from tradelab_jax.parity import tolerances as tols
from tradelab_jax.parity.compare import Row, Tolerance, compare_arrays, compare_text, missing_row
from tradelab_jax.parity.workloads import DISCRETE_TELEMETRY

# metrics.jsonl fields that count things (exact in every profile) and that measure time (never compared).
METRIC_COUNTS = ("update", "env_steps", "episodes")
# How many points were packed into the run's program: reported, never gated (a packed sweep's point is
# re-run on its own).
PACKING_KEYS = ("points", "seeds")
METRIC_LOSSES = ("loss", "policy_loss", "value_loss", "entropy", "approx_kl", "clip_frac")
# eval_summary.json "run" fields that describe the machine or the clock, not the result.
RUN_VOLATILE = ("device", "jax_version", "python", "wall_s", "compile_s", "train_s", "steps_per_s",
                "steps_per_s_all_points")  # fmt: skip


def _timing_fields() -> tuple[str, ...]:
    from tradelab_jax.training.runner import TIMING_FIELDS

    return tuple(TIMING_FIELDS)


def aggregate(group: str, name: str, parts: Iterable[tuple[str, Any, Any, Tolerance]], *,
              discrete: bool = False, report_only: str = "") -> Row:
    """One row over several arrays (e.g. one telemetry field across knob combinations).

    Maxima are taken part by part (each part's relative difference against its own scale); the note
    names the part with the most mismatches, else the largest relative difference. With ``report_only``
    (the reason) the row is reported but never fails.
    """
    rows = [(label, compare_arrays(group, label, a, b, tol, discrete=discrete)) for label, a, b, tol in parts]
    if not rows:
        return Row(group, name, "discrete" if discrete else "continuous", 0, 0.0, 0.0, 0, "-", True)
    kinds = {r.kind for _, r in rows}
    kind = "continuous" if "continuous" in kinds else rows[0][1].kind
    abs_values = [r.max_abs for _, r in rows if r.max_abs is not None]
    rel_values = [r.max_rel for _, r in rows if r.max_rel is not None]
    mismatches = sum(r.mismatches for _, r in rows)
    worst = max(rows, key=lambda lr: (lr[1].mismatches, lr[1].max_rel or 0.0, lr[1].max_abs or 0.0))
    notes = [r.note for _, r in rows if r.note]
    informative = worst[1].mismatches > 0 or bool(worst[1].max_abs)
    note = f"worst: {worst[0]}" if len(rows) > 1 and informative else ""
    if notes:
        note = "; ".join([note, *notes]) if note else "; ".join(notes)
    ok = all(r.ok for _, r in rows)
    tolerance = rows[0][1].tolerance
    if report_only:
        ok, tolerance = True, "report only"
        note = f"{report_only}; {note}" if note else report_only
    return Row(group, name, kind, sum(r.n for _, r in rows), max(abs_values) if abs_values else None,
               max(rel_values) if rel_values else None, mismatches, tolerance, ok, note)


# ---------------------------------------------------------------------------------------------------------
# Features and rollouts (worker outputs)


def compare_features(subject: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], profile: str, *,
                     float32_compute: bool, group: str = "features") -> list[Row]:
    """Column by column; ``float32_compute`` when the subject computed its indicators in float32."""
    names_a = [str(n) for n in subject["names"]]
    names_b = [str(n) for n in reference["names"]]
    rows = [compare_text(group, "names", names_a, names_b),
            compare_arrays(group, "warmup", subject["warmup"], reference["warmup"], Tolerance(),
                           discrete=True)]
    if names_a != names_b or subject["values"].shape != reference["values"].shape:
        return rows
    for j, name in enumerate(names_a):
        tol, gated = tols.feature_tolerance(profile, name, float32_compute=float32_compute)
        note = "" if gated else "ill-conditioned in float32 (see docs/parity.md)"
        rows.append(compare_arrays(group, name, subject["values"][:, j], reference["values"][:, j], tol,
                                   gated=gated, note=note))
    return rows


def _combos(arrays: Mapping[str, np.ndarray]) -> dict[str, dict[str, np.ndarray]]:
    out: dict[str, dict[str, np.ndarray]] = {}
    for key, value in arrays.items():
        combo, field = key.split(".", 1)
        out.setdefault(combo, {})[field] = value
    return out


def compare_rollouts(subject: Mapping[str, np.ndarray], reference: Mapping[str, np.ndarray], profile: str,
                     group: str = "rollouts") -> list[Row]:
    """Each telemetry field across every knob combination; discrete ones (and sign(position)) exactly."""
    sa, sb = _combos(subject), _combos(reference)
    rows: list[Row] = []
    missing = sorted(set(sa) ^ set(sb))
    for combo in missing:
        rows.append(missing_row(group, combo, "the subject" if combo not in sa else "the reference"))
    combos = [c for c in sb if c in sa]
    lengths = [(c, np.asarray(len(sa[c]["t"])), np.asarray(len(sb[c]["t"])), Tolerance()) for c in combos]
    rows.append(aggregate(group, "steps (episode end)", lengths, discrete=True))
    fields = [f for f in sb[combos[0]] if f in sa[combos[0]]] if combos else []
    exact = profile == "exact"

    def cut(c: str, f: str) -> tuple[np.ndarray, np.ndarray]:
        n = min(len(sa[c]["t"]), len(sb[c]["t"]))  # a different episode end is its own failure above
        return sa[c][f][:n], sb[c][f][:n]

    for f in fields:
        discrete = f in DISCRETE_TELEMETRY or sb[combos[0]][f].dtype.kind in "biu"
        tol = Tolerance.bits() if exact else (Tolerance() if discrete else tols.rollout_tolerance(profile, f))
        rows.append(aggregate(group, f, [(c, *cut(c, f), tol) for c in combos], discrete=discrete))
        if f == "position":
            pairs = [(c, *cut(c, f)) for c in combos]
            signs = [(c, np.sign(a), np.sign(b), Tolerance()) for c, a, b in pairs]
            rows.append(aggregate(group, "sign(position)", signs, discrete=True))
    return rows


# ---------------------------------------------------------------------------------------------------------
# Run directories


def check_finished_run(path: Path, what: str = "run directory") -> Path:
    """A finished (``done``) run directory, or a UserError naming what is wrong with ``path``."""
    from tradelab_jax.errors import UserError

    path = Path(path).expanduser()
    if not path.exists():
        raise UserError(f"{what} {str(path)!r} does not exist")
    if not path.is_dir():
        raise UserError(f"{what} {str(path)!r} is a file, not a run directory")
    if (path / runs.PACKED_FILE).exists():
        raise UserError(
            f"{str(path)!r} is a packed sweep; compare one of its points, e.g. {str(path / '0')!r}"
        )
    if not runs.is_run_dir(path) or not (path / runs.CONFIG_FILE).is_file():
        raise UserError(
            f"{str(path)!r} is not a run directory (it lacks {runs.STATUS_FILE} or {runs.CONFIG_FILE}); "
            "pass a directory written by `tradelab train`"
        )
    status = (runs.read_status(path) or {}).get("status")
    if status != "done":
        raise UserError(f"run {str(path)!r} is {status!r}, not 'done'; parity compares finished runs")
    return path.resolve()


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    if isinstance(tree, Mapping):
        for k, v in tree.items():
            out.update(_flatten(v, f"{prefix}{k}/"))
    else:
        out[prefix.rstrip("/")] = tree
    return out


def _checkpoint(run_dir: Path) -> tuple[dict[str, Any], int] | None:
    from flax import serialization

    found = runs.latest_checkpoint(run_dir)
    if found is None:
        return None
    path, meta = found
    return _flatten(serialization.msgpack_restore(path.read_bytes())), int(meta["update"])


def _num(v: Any) -> float:
    return float("nan") if v is None else float(v)


def compare_metrics(subject: Path, reference: Path, profile: str) -> list[Row]:
    a, b = runs.read_metrics(subject), runs.read_metrics(reference)
    group = "training"
    if not a or not b:
        return [missing_row(group, runs.METRICS_FILE, "the subject" if not a else "the reference")]
    rows = [compare_arrays(group, "metrics lines (updates)", [m.get("update") for m in a],
                           [m.get("update") for m in b], Tolerance(), discrete=True)]
    by_a = {m.get("update"): m for m in a}
    updates = [m.get("update") for m in b if m.get("update") in by_a]
    if not updates:  # nothing to line up: per-update rows would compare zero values and read "ok"
        rows[0].note = "no update number in common, so no per-update value is compared"
        return rows
    skip = set(_timing_fields())
    keys = [k for k in b[-1] if k not in skip]
    for key in keys:
        va = [by_a[u].get(key) for u in updates]
        vb = [m.get(key) for m in b if m.get("update") in by_a]
        if key in PACKING_KEYS:
            rows.append(_packing_row(group, key, va, vb))
            continue
        if key in METRIC_COUNTS:
            rows.append(compare_arrays(group, key, [_num(v) for v in va], [_num(v) for v in vb], Tolerance(),
                                       discrete=True))
            continue
        what = "loss" if key in METRIC_LOSSES else "metric"
        tol = tols.training_tolerance(profile, what)
        rows.append(compare_arrays(group, f"{key} per update", np.asarray([_num(v) for v in va]),
                                   np.asarray([_num(v) for v in vb]), tol))
    return rows


def _packing_row(group: str, name: str, a: Any, b: Any) -> Row:
    row = compare_text(group, name, a, b)
    row.tolerance, row.ok = "report only", True
    if a != b:
        row.note = f"packed differently: {a!r} vs {b!r}"
    return row


def compare_checkpoints(subject: Path, reference: Path, profile: str) -> list[Row]:
    group = "training"
    a, b = _checkpoint(subject), _checkpoint(reference)
    if a is None or b is None:
        return [missing_row(group, "final checkpoint", "the subject" if a is None else "the reference")]
    (la, ua), (lb, ub) = a, b
    rows = [compare_arrays(group, "final checkpoint update", ua, ub, Tolerance(), discrete=True)]
    params = [k for k in lb if k.startswith("params/")]
    missing = [k for k in params if k not in la]
    if missing:
        rows.append(missing_row(group, f"final params {missing[0]}", "the subject"))
        return rows
    tol = tols.training_tolerance(profile, "params")
    rows.append(aggregate(group, "final params", [(k.removeprefix("params/"), np.asarray(la[k]),
                                                   np.asarray(lb[k]), tol) for k in params]))
    if profile == "exact":
        rest = [k for k in lb if not k.startswith("params/") and k in la]
        rows.append(aggregate(group, "final runner state (optimizer, envs, key)",
                              [(k, np.asarray(la[k]), np.asarray(lb[k]), Tolerance.bits()) for k in rest]))
    return rows


def _is_count(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def compare_eval(subject: Path, reference: Path, profile: str) -> list[Row]:
    group = "eval"
    a, b = runs.read_eval_summary(subject), runs.read_eval_summary(reference)
    if a is None or b is None:
        return [missing_row(group, runs.EVAL_FILE, "the subject" if a is None else "the reference")]
    fa, fb = _flatten(a), _flatten(b)
    rows: list[Row] = []
    # Identity of the run: same seed, budget and data, compared exactly.
    for key in sorted(k for k in fb if k.startswith("run/") and k.split("/", 1)[1] not in RUN_VOLATILE):
        label = key.replace("/", ".")
        if key not in fa:
            rows.append(missing_row(group, label, "the subject"))
        elif key.split("/", 1)[1] in PACKING_KEYS:
            rows.append(_packing_row(group, label, fa[key], fb[key]))
        elif isinstance(fb[key], str | list) or fb[key] is None:
            rows.append(compare_text(group, label, fa[key], fb[key]))
        else:
            rows.append(compare_arrays(group, label, fa[key], fb[key], Tolerance(), discrete=True))
    # Results, one row per (split, policy) or top-level block: floats, then counts.
    blocks: dict[str, list[str]] = {}
    for key in fb:
        if key.startswith("run/"):
            continue
        parts = key.split("/")
        if parts[0] == "splits" and len(parts) > 3:
            block = "/".join(parts[:3])
        else:
            block = "/".join(parts[:-1]) or "summary"
        blocks.setdefault(block, []).append(key)
    exact = profile == "exact"
    for block, keys in blocks.items():
        label = block.replace("splits/", "").replace("/", ".")
        floats, counts, texts = [], [], []
        for key in keys:
            name = key[len(block) + 1:] if key.startswith(block + "/") else key
            if key not in fa:
                rows.append(missing_row(group, f"{label}.{name}", "the subject"))
                continue
            va, vb = fa[key], fb[key]
            if isinstance(vb, (str, list)) or isinstance(va, (str, list)):  # names, and facts such as
                texts.append((name, va, vb))  # data_splits' [first, last, bars]: equal or not
            elif _is_count(vb) and (_is_count(va) or va is None):
                counts.append((name, np.asarray(_num(va)), np.asarray(_num(vb)),
                               Tolerance.bits() if exact else tols.training_tolerance(profile, "eval_count")))
            elif isinstance(vb, bool) or isinstance(va, bool):
                texts.append((name, va, vb))
            elif vb is None and va is None:
                continue
            else:
                floats.append((name, np.asarray(_num(va)), np.asarray(_num(vb)),
                               Tolerance.bits() if exact else tols.training_tolerance(profile, "eval")))
        # Under JAX_ENABLE_X64, jax.random.randint draws int64 from another stream: the random baseline
        # trades different bars, so it is not comparable with a float32 run (GPU vs CPU it is).
        why = ("the random baseline draws another stream under x64"
               if profile == "x64" and block.endswith("/random") else "")
        if floats:
            rows.append(aggregate(group, f"{label} metrics", floats, report_only=why))
        if counts:
            row = aggregate(group, f"{label} counts", counts, report_only=why)
            row.kind = "discrete" if exact else "count"
            rows.append(row)
        for name, va, vb in texts:
            rows.append(compare_text(group, f"{label}.{name}", va, vb))
    return rows


# run.* keys that say where and how a run reports, not what it computes.
_REPORTING_KEYS = ("tag", "outputs", "dir", "resume", "progress", "print_summary", "keep_checkpoints",
                   "chunk_updates", "pack")


def compare_configs(subject: Path, reference: Path) -> list[Row]:
    """One row: do the two runs' config.yaml describe the same computation? (Names the first keys that do
    not, so a comparison of different experiments says so instead of a wall of shape mismatches.)"""
    try:
        a, b = runs.read_config(subject), runs.read_config(reference)
    except Exception:  # a run without a readable config is reported by the other rows
        return []
    for cfg in (a, b):
        for key in _REPORTING_KEYS:
            (cfg.get("run") or {}).pop(key, None)
        (cfg.get("data") or {}).pop("lake", None)  # a pod's lake path; the bars' checksum is compared
    fa, fb = _flatten(a), _flatten(b)  # keys like "agent/num_envs"
    differ = [k for k in sorted(set(fa) | set(fb)) if fa.get(k) != fb.get(k)]
    note = "; ".join(f"{k.replace('/', '.')}: {fa.get(k)!r} vs {fb.get(k)!r}" for k in differ[:4])
    if len(differ) > 4:
        note += f"; and {len(differ) - 4} more"
    note = f"the configs differ, so the runs are different experiments: {note}" if differ else ""
    return [compare_text("run", "config (what is computed)", not differ, True, note)]


def compare_runs(subject: Path, reference: Path, profile: str) -> list[Row]:
    """config.yaml, metrics.jsonl per update, the final checkpoint's parameters and eval_summary.json."""
    rows = [*compare_configs(subject, reference), *compare_metrics(subject, reference, profile),
            *compare_checkpoints(subject, reference, profile),
            *compare_eval(subject, reference, profile)]
    for row in rows:
        if row.max_abs is not None and not math.isfinite(row.max_abs):
            row.max_abs = None
    return rows


def run_points(run_dir: Path) -> int:
    """How many sweep points trained in the run's compiled program (1 for a plain run)."""
    summary = runs.read_eval_summary(run_dir) or {}
    return int((summary.get("run") or {}).get("points") or 1)


def run_device(run_dir: Path) -> str:
    """The device a run trained on, from its eval summary or status (``cpu:...``, ``gpu:...``)."""
    summary = runs.read_eval_summary(run_dir) or {}
    device = (summary.get("run") or {}).get("device") or (runs.read_status(run_dir) or {}).get("device") or ""
    return str(device)


def describe_run(run_dir: Path) -> dict[str, Any]:
    summary = runs.read_eval_summary(run_dir) or {}
    run = summary.get("run") or {}
    return {"dir": str(run_dir), "device": run_device(run_dir), "jax_version": run.get("jax_version"),
            "seed": run.get("seed"), "points": run_points(run_dir),
            "dataset_checksum": run.get("dataset_checksum")}
