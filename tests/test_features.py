"""Feature sets: YAML loading and checking, and compute_features on the real BTC 1m series."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pandas as pd
import pytest
import talib
from omegaconf import OmegaConf

from tradelab_jax.errors import UserError
from tradelab_jax.features import (
    FEATURE_KINDS,
    FeatureMatrix,
    compute_features,
    load_feature_set,
    parse_specs,
)


@pytest.fixture(scope="module")
def bars(shared_data) -> dict[str, np.ndarray]:
    df = pd.read_parquet(shared_data / "binance_spot_btcusdt_1m_2025-05-20_2025-08-18" / "btcusdt_1m.parquet")
    return {k: df[k].to_numpy() for k in df.columns}


@pytest.fixture(scope="module")
def full(bars) -> FeatureMatrix:
    return compute_features(bars, load_feature_set("full"))


# ---------------------------------------------------------------------------------------------------------
# Loading


def test_default_is_the_predecessors_pair():
    specs = load_feature_set("default")
    assert [s.name for s in specs] == ["zscore_30", "vwap_distance_60_pct"]
    assert [(s.kind, s.param("window")) for s in specs] == [("zscore", 30), ("vwap_distance", 60)]
    hash(specs)  # static under jit


def test_full_covers_every_kind():
    assert {s.kind for s in load_feature_set("full")} == set(FEATURE_KINDS)


def test_path_and_hydra_mapping_give_the_same_specs(repo_root):
    path = repo_root / "conf" / "features" / "full.yaml"
    by_name = load_feature_set("full")
    assert load_feature_set(path) == by_name
    # The file is also the Hydra group `features`: what Hydra composes loads the same.
    composed = OmegaConf.to_container(OmegaConf.load(path), resolve=True)
    assert load_feature_set(composed) == by_name


@pytest.mark.parametrize(
    "entries,match",
    [
        (
            [{"kind": "macd_signal"}],
            r"unknown feature kind 'macd_signal'; valid kinds: zscore, vwap_distance",
        ),
        ([{"kind": "zscore", "windw": 3}], r"unknown parameter 'windw'; valid: .*window"),
        ([{"kind": "atr", "window": 0}], r"window must be an integer >= 1, got 0"),
        ([{"kind": "rsi", "window": 1}], r"\(rsi\): window must be an integer >= 2, got 1"),
        ([{"kind": "atr", "unit": "percent"}], r"unit must be one of frac, pct, bps"),
        ([{"kind": "zscore"}, {"kind": "zscore"}], r"duplicate feature names zscore_30"),
        ([], r"non-empty list"),
        (["zscore"], r"mapping with a 'kind'"),
    ],
)
def test_bad_feature_entries_are_one_sentence(entries, match):
    with pytest.raises(UserError, match=match):
        parse_specs(entries)


def test_unknown_set_names_the_valid_ones():
    with pytest.raises(UserError, match=r"unknown feature set 'nope'; valid: .*default.*full"):
        load_feature_set("nope")
    with pytest.raises(UserError, match="invalid feature set"):
        load_feature_set("..")


def test_missing_column_names_feature_and_columns(bars):
    specs = parse_specs([{"kind": "zscore"}, {"kind": "taker_imbalance", "window": 5}])
    with pytest.raises(
        UserError,
        match=r"feature 'taker_imbalance_5' needs column\(s\) taker_buy_volume.*"
        r"available columns: ts, open, high, low, close, volume",
    ):
        compute_features(bars, specs)


def test_optional_feature_is_left_out_or_used(bars):
    specs = parse_specs([{"kind": "clv"}, {"kind": "taker_imbalance", "optional": True}])
    assert compute_features(bars, specs).names == ("clv",)
    rng = np.random.default_rng(1)
    with_taker = {**bars, "taker_buy_volume": bars["volume"] * rng.uniform(size=len(bars["volume"]))}
    fm = compute_features(with_taker, specs)
    assert fm.names == ("clv", "taker_imbalance_1")
    buy, v = with_taker["taker_buy_volume"], bars["volume"]
    np.testing.assert_allclose(np.asarray(fm.values[:, 1]), (2 * buy - v) / v, atol=1e-5)


# ---------------------------------------------------------------------------------------------------------
# Computing on the real series


def test_full_matrix_shape_names_warmup(full, bars):
    specs = load_feature_set("full")
    active = [s for s in specs if s.kind != "taker_imbalance"]
    t = len(bars["close"])
    assert full.values.shape == (t, len(active)) and full.values.dtype == jnp.float32
    assert full.names == tuple(s.name for s in active)
    assert full.warmup == max(s.lookback for s in active) == 60
    v = np.asarray(full.values)
    assert np.isfinite(v[full.warmup :]).all()
    for j, spec in enumerate(active):
        # Each column is NaN exactly on its own warm-up: never zero-filled, never late.
        assert np.isnan(v[: spec.lookback, j]).all() and np.isfinite(v[spec.lookback, j]), spec.name


def test_values_match_independent_oracles(full, bars):
    c = pd.Series(bars["close"])
    col = {n: np.asarray(full.values[:, i], np.float64) for i, n in enumerate(full.names)}
    # close z-score(30): pandas population std (ddof=0)
    mean, std = c.rolling(30).mean(), c.rolling(30).std(ddof=0)
    z = ((c - mean) / std).to_numpy()
    ok = np.isfinite(z) & (std.to_numpy() > 1e-3)
    np.testing.assert_allclose(col["zscore_30"][ok], z[ok], rtol=1e-5, atol=1e-5)
    # VWAP distance(60) in percent: pandas rolling sums
    tp = (pd.Series(bars["high"]) + pd.Series(bars["low"]) + c) / 3
    vol = pd.Series(bars["volume"])
    vw = (tp * vol).rolling(60).sum() / vol.rolling(60).sum()
    np.testing.assert_allclose(
        col["vwap_distance_60_pct"][59:], (100 * (c / vw - 1)).to_numpy()[59:], atol=2e-5
    )
    # RSI, ATR and MACD through TA-Lib
    np.testing.assert_allclose(col["rsi_14"][14:], (talib.RSI(bars["close"], 14)[14:] - 50) / 50, atol=1e-5)
    atr = talib.ATR(bars["high"], bars["low"], bars["close"], 14) / bars["close"] * 1e4
    np.testing.assert_allclose(col["atr_14_bps"][14:], atr[14:], rtol=1e-4)
    hist = talib.MACD(bars["close"], 12, 26, 9)[2] / bars["close"] * 1e4
    np.testing.assert_allclose(col["macd_hist_12_26_9_bps"][33:], hist[33:], atol=1e-4)
    assert np.all(np.abs(col["clv"]) <= 1) and np.all(np.abs(col["rsi_14"][14:]) <= 1)


def test_session_vwap_resets_at_utc_midnight(full, bars):
    j = full.names.index("session_vwap_distance_pct")
    day = bars["ts"] // 86_400_000
    first = np.flatnonzero(np.diff(day)) + 1
    tp = (bars["high"] + bars["low"] + bars["close"]) / 3
    want = 100 * (bars["close"][first] / tp[first] - 1)  # a session's first bar: VWAP = its typical price
    np.testing.assert_allclose(np.asarray(full.values[first, j]), want, atol=1e-5)


def test_compute_features_is_causal(bars, full):
    """Rewriting the bars after t leaves every feature at bars <= t bit-for-bit unchanged."""
    t = 100_000
    edited = {k: v.copy() for k, v in bars.items()}
    for k in ("open", "high", "low", "close"):
        edited[k][t + 1 :] *= 1.07
    edited["volume"][t + 1 :] = edited["volume"][t + 1 :][::-1]
    a = np.asarray(full.values)
    b = np.asarray(compute_features(edited, load_feature_set("full")).values)
    np.testing.assert_array_equal(a[: t + 1], b[: t + 1])
    assert not np.allclose(a[t + 1 :], b[t + 1 :])


def test_compute_features_jits_for_fixed_specs(bars):
    specs = load_feature_set("default")
    sub = {k: jnp.asarray(bars[k][:5_000], jnp.float32) for k in ("high", "low", "close", "volume")}
    fm = jax.jit(compute_features, static_argnums=1)(sub, specs)
    assert (
        isinstance(fm, FeatureMatrix)
        and fm.names == ("zscore_30", "vwap_distance_60_pct")
        and fm.warmup == 59
    )
    np.testing.assert_array_equal(np.asarray(fm.values), np.asarray(compute_features(sub, specs).values))


def test_norm_window_is_a_past_only_zscore(bars):
    specs = parse_specs([{"kind": "log_return"}, {"kind": "log_return", "norm_window": 500}])
    sub = {k: v[:20_000] for k, v in bars.items()}
    fm = compute_features(sub, specs)
    assert fm.names == ("log_return_bps", "log_return_bps_n500") and fm.warmup == 1 + 499
    raw = pd.Series(np.asarray(fm.values[:, 0], np.float64))
    want = ((raw - raw.rolling(500).mean()) / raw.rolling(500).std(ddof=0)).to_numpy()
    got = np.asarray(fm.values[:, 1])
    assert np.isnan(got[:500]).all()
    np.testing.assert_allclose(got[500:], want[500:], atol=1e-4)


def test_float64_bars_are_computed_in_float64(bars):
    """numpy float64 bars keep their cents (float64 arithmetic), JAX float32 arrays do not; both store f32."""
    sub = {k: v[:3_000] for k, v in bars.items()}
    specs = load_feature_set("default")
    host = compute_features(sub, specs)
    f32 = compute_features({k: jnp.asarray(v, jnp.float32) for k, v in sub.items() if k != "ts"}, specs)
    assert host.values.dtype == f32.values.dtype == jnp.float32
    c = pd.Series(sub["close"])
    z = ((c - c.rolling(30).mean()) / c.rolling(30).std(ddof=0)).to_numpy()
    np.testing.assert_allclose(np.asarray(host.values[29:, 0]), z[29:], rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(f32.values[29:, 0]), z[29:], atol=2e-3)  # the lost cents
