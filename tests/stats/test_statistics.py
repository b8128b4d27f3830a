"""Hand-worked cases of every statistic and agreement with independent implementations: scipy's bootstrap
and Mann-Whitney U, vectorbt's deflated Sharpe ratio, the DSR paper's numerical example, a straight reading
of the CSCV paper's steps. (rliable itself does not import with pandas 3, and pypbo is not on PyPI.)"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats as sps

from tradelab_jax.stats import intervals, pbo, sharpe


def test_iqm_hand_worked():
    # 1..8: the middle half is 3, 4, 5, 6
    assert intervals.iqm([8, 1, 7, 2, 6, 3, 5, 4]) == pytest.approx(4.5)
    assert intervals.iqm([100, 0, 0, 0]) == pytest.approx(0.0)


def test_bootstrap_one_fold_agrees_with_scipy():
    x = np.random.default_rng(5).normal(1.0, 2.0, 12)
    lo, hi = intervals.stratified_bootstrap_ci([x], resamples=4000)
    ref = sps.bootstrap((x,), intervals.iqm, vectorized=False, method="percentile", n_resamples=4000,
                        random_state=1).confidence_interval
    assert lo == pytest.approx(ref.low, abs=0.25) and hi == pytest.approx(ref.high, abs=0.25)
    assert lo < intervals.iqm(x) < hi


def test_bootstrap_several_folds_agrees_with_a_plain_loop():
    # an independent per-draw loop of rliable's StratifiedBootstrap: each fold's seeds resampled in place
    rng = np.random.default_rng(9)
    groups = [rng.normal(0, 1, 4), rng.normal(3, 1, 5), rng.normal(-1, 2, 3)]
    draws = []
    loop_rng = np.random.default_rng(123)
    for _ in range(4000):
        pooled = np.concatenate([g[loop_rng.integers(0, g.size, g.size)] for g in groups])
        draws.append(sps.trim_mean(pooled, 0.25))
    ref = np.quantile(draws, [0.025, 0.975])
    lo, hi = intervals.stratified_bootstrap_ci(groups)
    assert lo == pytest.approx(ref[0], abs=0.12) and hi == pytest.approx(ref[1], abs=0.12)
    assert (lo, hi) == intervals.stratified_bootstrap_ci(groups)  # fixed RNG seed: reproducible


def test_bootstrap_resamples_within_folds():
    # each fold is constant, so resampling seeds within folds never changes the pooled values
    lo, hi = intervals.stratified_bootstrap_ci([[1.0, 1.0, 1.0], [5.0, 5.0, 5.0]], statistic=np.mean)
    assert lo == hi == pytest.approx(3.0)
    # resampling across folds would move it
    lo2, hi2 = intervals.stratified_bootstrap_ci([[1.0, 1.0, 1.0, 5.0, 5.0, 5.0]], statistic=np.mean)
    assert hi2 - lo2 > 1.0


def test_probability_of_improvement_is_mann_whitney():
    rng = np.random.default_rng(2)
    x, y = rng.normal(0.3, 1, 7), np.round(rng.normal(0, 1, 5), 1)
    u = sps.mannwhitneyu(x, y).statistic
    assert intervals.probability_of_improvement([x], [y]) == pytest.approx(u / (7 * 5))
    assert intervals.probability_of_improvement([[2, 2]], [[1, 2]]) == pytest.approx(0.75)
    # two folds averaged: 1 and 0
    assert intervals.probability_of_improvement([[3], [0]], [[1], [1]]) == pytest.approx(0.5)


def test_sharpe_per_bar_hand_worked():
    assert sharpe.sharpe_per_bar([0.01, 0.03]) == pytest.approx(0.02 / math.sqrt(2e-4))
    assert sharpe.sharpe_per_bar([0.01, 0.01]) is None
    assert sharpe.sharpe_per_bar([0.01]) is None


def test_deflated_sharpe_paper_example():
    # Bailey & Lopez de Prado (2014), numerical example: annualised SR 2.5 over T=1250 daily returns,
    # N=100 trials with annualised Sharpe variance 0.5, skew -3, kurtosis 10 -> E[max SR] 0.1132, DSR 0.9004
    sr, var = 2.5 / math.sqrt(250), 0.5 / 250
    sr0 = sharpe.expected_max_sharpe(100, var)
    assert sr0 == pytest.approx(0.1132, abs=5e-4)
    assert sharpe.probabilistic_sharpe(sr, sr0, 1250, -3.0, 10.0) == pytest.approx(0.9004, abs=1e-3)


def test_deflated_sharpe_from_returns_matches_formula_and_says_why_not():
    r = np.random.default_rng(0).normal(0.001, 0.01, 500)
    d = sharpe.deflated_sharpe(r, 10, 0.002)
    sr = r.mean() / r.std(ddof=1)
    z = (sr - d["sr0"]) * math.sqrt(499) / math.sqrt(
        1 - sps.skew(r) * sr + (sps.kurtosis(r, fisher=False) - 1) / 4 * sr**2)
    assert d["value"] == pytest.approx(sps.norm.cdf(z)) and d["bars"] == 500
    # one configuration: nothing selected, it is the PSR against 0
    one = sharpe.deflated_sharpe(r, 1, None)
    assert one["sr0"] == 0.0 and one["value"] == pytest.approx(sharpe.probabilistic_sharpe(
        sr, 0.0, 500, sps.skew(r), sps.kurtosis(r, fisher=False)))
    assert sharpe.deflated_sharpe(r, 0, None)["value"] is None
    assert "flat" in sharpe.deflated_sharpe(np.zeros(50), 5, 0.1)["reason"]
    assert "variance" in sharpe.deflated_sharpe(r, 5, None)["reason"]
    # more trials deflate more
    assert sharpe.deflated_sharpe(r, 100, 0.002)["value"] < d["value"]


def test_deflated_sharpe_agrees_with_vectorbt():
    vbt = pytest.importorskip("vectorbt")  # a dev dependency (pyproject's dev extra): CI has it
    import pandas as pd

    rng = np.random.default_rng(4)
    r = pd.DataFrame(rng.standard_t(5, (800, 6)) * 0.01 + np.linspace(0, 0.002, 6),
                     index=pd.date_range("2024-01-01", periods=800, freq="D"))
    acc = r.vbt.returns(freq="1D", year_freq="1D")  # annualisation factor 1: per-bar Sharpe ratios
    assert acc.ann_factor == 1
    ref = acc.deflated_sharpe_ratio().to_numpy()
    srs = [sharpe.sharpe_per_bar(r[c]) for c in r]
    var = float(np.var(srs, ddof=1))
    for c in r:
        assert sharpe.deflated_sharpe(r[c].to_numpy(), 6, var)["value"] == pytest.approx(ref[c], rel=1e-9)
    assert sharpe.expected_max_sharpe(6, var) == pytest.approx(
        vbt.returns.metrics.approx_exp_max_sharpe(0, var, 6))


def _pbo_reference(m, s):
    """An independent straight reading of the paper's steps (ranks by scipy.stats.rankdata)."""
    parts = np.array_split(np.arange(m.shape[0]), s)
    lam = []
    for c in itertools.combinations(range(s), s // 2):
        j = np.concatenate([parts[i] for i in c])
        jb = np.concatenate([parts[i] for i in range(s) if i not in c])
        r_is = m[j].mean(0) / m[j].std(0, ddof=1)
        r_oos = m[jb].mean(0) / m[jb].std(0, ddof=1)
        w = sps.rankdata(r_oos)[np.argmax(r_is)] / (m.shape[1] + 1)
        lam.append(math.log(w / (1 - w)))
    return np.mean(np.array(lam) <= 0)


def test_pbo_hand_worked_and_reference():
    rng = np.random.default_rng(1)
    noise = rng.normal(0, 0.01, (400, 6))
    dominant = noise.copy()
    dominant[:, 0] += 0.02  # one configuration better everywhere: never overfit
    assert pbo.pbo(dominant, 8)["value"] == 0.0
    assert pbo.pbo(dominant, 8)["combinations"] == math.comb(8, 4)
    # in-sample best is the out-of-sample worst: two configurations that swap halves of every block pair
    t = np.arange(400)
    a = np.where((t // 50) % 2 == 0, 0.01, -0.01) + rng.normal(0, 1e-3, 400)
    swapped = np.stack([a, -a], axis=1)
    assert pbo.pbo(swapped, 2)["value"] == pytest.approx(_pbo_reference(swapped, 2))
    assert pbo.pbo(noise, 8)["value"] == pytest.approx(_pbo_reference(noise, 8))
    assert 0.2 < pbo.pbo(noise, 8)["value"] < 0.8  # pure noise: about a coin flip


def test_pbo_says_why_not():
    assert "2 configurations" in pbo.pbo(np.zeros((100, 1)))["reason"]
    assert "16 bars" in pbo.pbo(np.ones((10, 3)), 8)["reason"]
    assert pbo.pbo(np.ones((100, 3)), 3)["value"] is None


def test_config_returns_average_seeds_within_a_fold_and_join_folds_in_time_order():
    from pathlib import Path

    from tradelab_jax.stats.collect import Point
    from tradelab_jax.stats.compute import _config_returns, _summary

    def pt(fold, seed, r):
        return Point(Path(f"{fold}-{seed}"), seed, fold, {}, returns={"agent": np.asarray(r, float)})

    pts = [pt(1, 0, [0.3, 0.5]), pt(0, 0, [0.1, 0.2, 0.9]), pt(0, 1, [0.3, 0.4]), pt(1, 1, [0.5, 0.7])]
    # fold 0: seeds cut to the shorter episode (2 bars) and averaged, then fold 1
    assert _config_returns(pts, "agent") == pytest.approx([0.2, 0.3, 0.4, 0.6])
    one_seed = _summary({0: [1.0], 1: [2.0]})
    assert one_seed["iqm_ci95"] is None and "2 seeds" in one_seed["reason"] and one_seed["mean"] == 1.5
    assert _summary({})["reason"] and _summary({})["mean"] is None
