"""Probability of backtest overfitting by combinatorially symmetric cross-validation (CSCV; Bailey,
Borwein, Lopez de Prado & Zhu, "The Probability of Backtest Overfitting", J. Computational Finance 2016)."""

from __future__ import annotations

import itertools

import numpy as np

BLOCKS = 8


def _sharpe_cols(m: np.ndarray) -> np.ndarray:
    sd = m.std(axis=0, ddof=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = m.mean(axis=0) / sd
    return np.where(sd > 0, s, 0.0)


def pbo(returns, blocks: int = BLOCKS) -> dict:
    """``returns``: [T bars, N configurations] per-bar returns. Split T into ``blocks`` (S, even) sub-blocks;
    for every choice of S/2 blocks as in-sample, take the in-sample best configuration (Sharpe) and its
    relative out-of-sample rank w = rank / (N + 1); PBO is the share of choices with logit(w) <= 0.
    Returns {value, reason, blocks, combinations, configurations, bars}."""
    m = np.asarray(returns, dtype=float)
    out = {"value": None, "reason": None, "blocks": int(blocks), "combinations": 0,
           "configurations": int(m.shape[1]) if m.ndim == 2 else 0, "bars": int(m.shape[0]) if m.ndim else 0}
    if m.ndim != 2 or m.shape[1] < 2:
        out["reason"] = "needs at least 2 configurations"
        return out
    if blocks < 2 or blocks % 2:
        out["reason"] = f"the number of sub-blocks must be even and at least 2, got {blocks}"
        return out
    if m.shape[0] < 2 * blocks:
        out["reason"] = f"needs at least {2 * blocks} bars common to every configuration, got {m.shape[0]}"
        return out
    parts = np.array_split(np.arange(m.shape[0]), blocks)
    n = m.shape[1]
    logits = []
    for ins in itertools.combinations(range(blocks), blocks // 2):
        is_idx = np.concatenate([parts[i] for i in ins])
        oos_idx = np.concatenate([parts[i] for i in range(blocks) if i not in ins])
        best = int(np.argmax(_sharpe_cols(m[is_idx])))
        oos = _sharpe_cols(m[oos_idx])
        rank = float(np.sum(oos < oos[best]) + 0.5 * (np.sum(oos == oos[best]) - 1) + 1)  # 1 = worst
        w = rank / (n + 1)
        logits.append(np.log(w / (1 - w)))
    out["combinations"] = len(logits)
    out["value"] = float(np.mean(np.asarray(logits) <= 0))
    return out
