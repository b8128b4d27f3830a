"""The documented tolerances (docs/parity.md), per profile and quantity.

Profiles:
- ``exact``: the same program on the same platform (jit vs jit, two processes, a CPU run re-run on CPU).
  Everything must be bit-identical.
- ``x64``: float32 against a float64 (``JAX_ENABLE_X64``) reference on the same backend. The values
  below are about 8-10x the largest differences measured on the default workloads (20,000 bars of
  binance_btcusdt_1m, 5,000-step replays, a 4-update PPO run); docs/parity.md lists the measurements.
- ``backend``: float32 on another backend (GPU) against float32 on CPU. Reduction order, FMA contraction
  and TF32 matmuls move the last bits; the rollout and feature tolerances are the x64 ones (a float32
  result is within them of the exact value, so two float32 results are within about twice that of each
  other, and the x64 values carry that headroom). Training tolerances are provisional (10x the x64 ones)
  until measured on a GPU (``tradelab parity`` on a GPU machine prints the measurement).

Discrete quantities (fills, stop hits, signs of positions, episode ends, bar indices, update counters)
must match exactly in every profile.
"""

from __future__ import annotations

from tradelab_jax.parity.compare import Tolerance

PROFILES = ("exact", "x64", "backend")

# Indicators computed in float32 vs float64, absolute tolerance in each feature's own unit (names are
# those of conf/features/full.yaml; "_bps" / "_pct" in a name is its unit).
FEATURES_F32_ATOL: dict[str, float] = {
    "zscore": 2e-3,
    "vwap_distance": 5e-5,
    "session_vwap_distance": 5e-5,
    "rsi": 2e-3,
    "atr": 3e-3,
    "bollinger_pctb": 1e-3,
    "bollinger_bandwidth": 1e-4,
    "macd_hist": 1e-3,
    "log_return": 1e-2,
    "realized_vol": 1e-4,
    "volume_zscore": 2e-5,
    "taker_imbalance": 1e-5,
    "column": 1e-4,
}
# Close location value (2c - h - l) / (h - l) is ill-conditioned in float32: a quiet 1-minute bar's range
# at ~100,000 USD is a few cents, a few float32 ulps (0.0078), so its float32 value can be off by O(1).
# The product computes features in float64 for this reason; the float32 number is reported, not gated.
FEATURES_F32_REPORT_ONLY = ("clv",)
FEATURES_F32_DEFAULT_ATOL = 1e-3

# The product's feature path (float64 computation, float32 storage) on two backends: float64 rounding
# of transcendental functions differs by ulps, which the float32 storage mostly hides.
FEATURES_BACKEND = Tolerance(atol=1e-5, rtol=1e-5)

# replay() telemetry, float32 vs float64 (and GPU vs CPU), over 5,000 steps with default initial cash
# 10,000: errors accumulate with the number of fills, so longer replays need proportionally more.
ROLLOUT: dict[str, Tolerance] = {
    "cash": Tolerance(atol=1.0, rtol=1e-4),
    "equity": Tolerance(atol=1.0, rtol=1e-4),
    "position": Tolerance(atol=1e-6, rtol=1e-4),
    "order_size": Tolerance(atol=1e-6, rtol=1e-4),
    "target_position": Tolerance(atol=1e-6, rtol=1e-4),
    "risk_units": Tolerance(atol=1e-6, rtol=1e-4),
    "fill_price": Tolerance(rtol=1e-6),
    "stop_price": Tolerance(rtol=1e-6),
    "exit_price": Tolerance(rtol=1e-6),
    "stop_distance": Tolerance(rtol=1e-6),
    "limit_fee": Tolerance(atol=1e-3, rtol=1e-4),
    "stop_fee": Tolerance(atol=1e-3, rtol=1e-4),
    "reward": Tolerance(atol=5e-6, rtol=1e-4),
}
ROLLOUT_DEFAULT = Tolerance(atol=1e-6, rtol=1e-4)

# A 4-update PPO run. Float32 vs float64 environments moved the losses by <= 6e-8 and the parameters by
# <= 6e-8 (docs/parity.md); the tolerances keep ~10x headroom. Evaluation metrics follow a greedy policy
# over a whole split, where one flipped argmax changes a trade, so counts get a small absolute slack.
TRAINING_X64: dict[str, Tolerance] = {
    "loss": Tolerance(atol=1e-6, rtol=1e-4),
    "metric": Tolerance(atol=1e-6, rtol=1e-4),
    "params": Tolerance(atol=1e-6, rtol=1e-4),
    "eval": Tolerance(atol=1e-4, rtol=1e-4),
    "eval_count": Tolerance(atol=2.0, rtol=1e-2),
}
# Provisional until measured on a GPU: ten times the x64 values. Adam divides each update by the running
# gradient scale, so a parameter whose gradient is mostly rounding noise can move by up to ~lr per update
# whatever the noise's size; longer runs than the parity workload's 4 updates diverge further.
TRAINING_BACKEND: dict[str, Tolerance] = {
    k: Tolerance(atol=10 * v.atol, rtol=10 * v.rtol) for k, v in TRAINING_X64.items()
}


def _feature_kind(name: str) -> str:
    """``rsi_14`` -> ``rsi``; ``macd_hist_12_26_9_bps`` -> ``macd_hist`` (longest known prefix)."""
    known = sorted([*FEATURES_F32_ATOL, *FEATURES_F32_REPORT_ONLY], key=len, reverse=True)
    return next((k for k in known if name == k or name.startswith(k + "_")), name)


def feature_tolerance(profile: str, name: str, *, float32_compute: bool) -> tuple[Tolerance, bool]:
    """``(tolerance, gated)`` of one feature column."""
    if profile == "exact":
        return Tolerance.bits(), True
    if not float32_compute:
        return FEATURES_BACKEND, True
    kind = _feature_kind(name)
    if kind in FEATURES_F32_REPORT_ONLY:
        return Tolerance(atol=2.0), False
    return Tolerance(atol=FEATURES_F32_ATOL.get(kind, FEATURES_F32_DEFAULT_ATOL), rtol=1e-4), True


def rollout_tolerance(profile: str, field: str) -> Tolerance:
    if profile == "exact":
        return Tolerance.bits()
    return ROLLOUT.get(field, ROLLOUT_DEFAULT)


def training_tolerance(profile: str, what: str) -> Tolerance:
    """``what``: loss | metric | params | eval | eval_count."""
    if profile == "exact":
        return Tolerance.bits()
    table = TRAINING_X64 if profile == "x64" else TRAINING_BACKEND
    return table[what]
