"""Per-bar Sharpe and the deflated Sharpe ratio (Bailey & Lopez de Prado, "The Deflated Sharpe Ratio",
Journal of Portfolio Management 2014). All Sharpe ratios here are per bar (not annualised)."""

from __future__ import annotations

import math

import numpy as np
from scipy import stats as sps

EULER_GAMMA = 0.5772156649015329


def sharpe_per_bar(returns) -> float | None:
    """Mean / standard deviation (ddof 1) of per-bar returns; None for fewer than 2 bars or a flat series."""
    r = np.asarray(returns, dtype=float)
    if r.size < 2:
        return None
    sd = r.std(ddof=1)
    if not np.isfinite(sd) or sd == 0:
        return None
    return float(r.mean() / sd)


def expected_max_sharpe(trials: int, variance: float) -> float:
    """E[max SR] of ``trials`` independent zero-skill trials whose Sharpes have ``variance`` (the paper's
    eq. 2, from the false strategy theorem: sqrt(V) ((1-g) Z^-1(1-1/N) + g Z^-1(1-1/(N e))), g the
    Euler-Mascheroni constant). One trial: 0, the mean of a single zero-skill Sharpe (nothing was
    selected)."""
    n = trials
    if n == 1:
        return 0.0
    return math.sqrt(variance) * ((1 - EULER_GAMMA) * sps.norm.ppf(1 - 1 / n)
                                  + EULER_GAMMA * sps.norm.ppf(1 - 1 / (n * math.e)))


def probabilistic_sharpe(sr: float, sr0: float, bars: int, skew: float, kurtosis: float) -> float:
    """PSR (Bailey & Lopez de Prado 2012; the DSR paper's eq. 1 with SR* = ``sr0``): P(true SR > sr0) given
    the observed per-bar ``sr`` over ``bars`` returns with their ``skew`` and (non-excess, 3 for a normal)
    ``kurtosis``: Z[(sr - sr0) sqrt(T-1) / sqrt(1 - skew sr + (kurtosis-1)/4 sr^2)]."""
    denom = 1 - skew * sr + (kurtosis - 1) / 4 * sr * sr
    return float(sps.norm.cdf((sr - sr0) * math.sqrt(bars - 1) / math.sqrt(denom)))


def deflated_sharpe(returns, trials: int, trial_sharpes_variance: float | None) -> dict:
    """The deflated Sharpe ratio of the selected (best) trial's per-bar ``returns``: its PSR against
    E[max SR] of ``trials`` trials whose per-bar Sharpes have ``trial_sharpes_variance``. With one trial
    nothing was selected and it is the PSR against 0. Returns {value, reason, sharpe, sr0, trials, variance,
    skew, kurtosis, bars}; value is None with a reason when it cannot be computed (too few bars, flat
    returns, an undefined variance of the trials)."""
    r = np.asarray(returns, dtype=float)
    out = {"value": None, "reason": None, "sharpe": sharpe_per_bar(r), "sr0": None, "trials": int(trials),
           "variance": trial_sharpes_variance, "skew": None, "kurtosis": None, "bars": int(r.size)}
    if trials < 1:
        out["reason"] = "no configuration was trained"
        return out
    if out["sharpe"] is None or r.size < 4:
        out["reason"] = "the best configuration's per-bar returns are flat or fewer than 4"
        return out
    if trials == 1:
        trial_sharpes_variance = out["variance"] = 0.0
    if trial_sharpes_variance is None or not np.isfinite(trial_sharpes_variance):
        out["reason"] = "the variance of the trials' Sharpe ratios is undefined"
        return out
    out["skew"] = float(sps.skew(r))
    out["kurtosis"] = float(sps.kurtosis(r, fisher=False))
    sr0 = expected_max_sharpe(trials, trial_sharpes_variance)
    out["sr0"] = float(sr0)
    denom = 1 - out["skew"] * out["sharpe"] + (out["kurtosis"] - 1) / 4 * out["sharpe"] ** 2
    if denom <= 0:
        out["reason"] = "the returns' skew and kurtosis make the Sharpe ratio's variance non-positive"
        return out
    out["value"] = probabilistic_sharpe(out["sharpe"], sr0, r.size, out["skew"], out["kurtosis"])
    return out
