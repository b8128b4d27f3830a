"""Recursive check (freqtrade's recursive-analysis): a feature computed on the series started ``k`` bars
later agrees with the full-series value once its documented warm-up has passed from the new start.

Windowed features must agree to float rounding (``TOL_EXACT``); recursive ones (EMA/Wilder smoothing:
rsi, atr, macd_hist) forget their start only asymptotically, so they are held to ``TOL_RECURSIVE`` after
``SETTLE`` times their documented warm-up; session-anchored ones after the next UTC day. docs/lookahead.md.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from tradelab_jax import features as fs
from tradelab_jax.checks.lookahead import Verdict

OFFSETS = (1, 17, 250, 1000)
TOL_EXACT = 1e-4  # absolute, in the feature's own unit (float32 storage of float64 sums)
TOL_RECURSIVE = 1e-2
RECURSIVE_KINDS = {"rsi": 1, "atr": 1, "macd_hist": 1}
SETTLE = 10
BARS_PER_DAY_1M = 1440


def compare_from(spec: fs.FeatureSpec, bars_per_day: int) -> tuple[int, float]:
    """(bars after a later start from which the values must agree, tolerance)."""
    base = spec.lookback
    if spec.kind == "session_vwap_distance":
        return base + bars_per_day, TOL_EXACT
    if spec.kind in RECURSIVE_KINDS:
        return SETTLE * max(base, 1) + max(int(spec.param("norm_window")) - 1, 0), TOL_RECURSIVE
    return base, TOL_EXACT


def check(bars: Mapping[str, np.ndarray], specs: Sequence[fs.FeatureSpec], *,
          offsets: Sequence[int] = OFFSETS, bars_per_day: int = BARS_PER_DAY_1M) -> list[Verdict]:
    """One verdict per feature; ``first_moved`` is the first full-series bar outside tolerance."""
    full = fs.compute_features(bars, specs)
    values = np.asarray(full.values, np.float64)
    active = [s for s in specs if s.name in full.names]
    verdicts = [Verdict(s.name) for s in active]
    n = len(bars["ts"])
    for k in offsets:
        if k >= n:
            continue
        later_bars = {c: v[k:] for c, v in bars.items()}
        later = np.asarray(fs.compute_features(later_bars, active).values, np.float64)
        for j, (spec, v) in enumerate(zip(active, verdicts, strict=True)):
            settle, tol = compare_from(spec, bars_per_day)
            a, b = values[k + settle:, j], later[settle:, j]
            v.cuts += 1
            v.bars += len(a)
            bad = ~(np.abs(a - b) <= tol * np.maximum(1.0, np.abs(a)))
            if bad.any() and v.ok:
                v.first_moved, v.perturbation = k + settle + int(np.argmax(bad)), f"start +{k}"
    return verdicts
