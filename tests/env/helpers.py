"""Helpers shared by the environment tests."""

from __future__ import annotations

import numpy as np


def bar_slice(bars: dict[str, np.ndarray], start: int, stop: int) -> dict[str, np.ndarray]:
    return {k: v[start:stop] for k, v in bars.items()}


def sticky_actions(rng: np.random.Generator, n: int, n_actions: int, switch_prob: float) -> np.ndarray:
    """Random bucket indices that change with probability ``switch_prob`` per bar (positions persist,
    so stops and trails get exercised, unlike i.i.d. actions that re-size every bar)."""
    switches = rng.random(n) < switch_prob
    switches[0] = True
    draws = rng.integers(0, n_actions, n)
    idx = np.maximum.accumulate(np.where(switches, np.arange(n), 0))
    return draws[idx].astype(np.int32)
