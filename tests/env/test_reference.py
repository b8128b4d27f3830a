"""`replay` against the slow pure-Python model of the contract (tests/env/reference.py) on real bars.

x64: every discrete field agrees exactly and every number to ~1e-9. float32: the default dtype drifts by
rounding, so numbers are compared with float32-sized tolerances, and a discrete field may differ only at a
step where the exact model's deciding comparison was within float32 rounding of flipping (after which
the two runs follow different paths and comparison stops).
"""

from __future__ import annotations

import jax
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from env.helpers import bar_slice, sticky_actions
from env.reference import reference_replay
from tradelab_jax.env import replay

N_STEPS = 2000
DISCRETE = ("filled", "stop_hit", "terminated")
NUMERIC = (
    "target_position", "risk_units", "stop_distance", "order_size", "fill_price", "limit_fee",
    "stop_price", "exit_price", "stop_fee", "position", "cash", "equity", "reward",
)  # fmt: skip

COMBOS = [
    {},
    {"order_type": "market"},
    {"order_type": "market", "slippage_bps": 3.0},
    {"trailing_stop": True},
    {"trailing_stop": True, "order_type": "market", "slippage_bps": 5.0},
    {"maker_fee": -0.0001},
    {"maker_fee": -0.00005, "taker_fee": 0.0, "trailing_stop": True},
    {"stop_loss_bps": 10.0, "risk_pct": 0.02},
    {"stop_loss_bps": 15.0, "trailing_stop": True, "order_type": "market", "slippage_bps": 1.0},
    {"stop_loss_bps": 0.0},
    {"rebalance_band": 0.0, "min_order_notional": 5000.0},
    {"rebalance_band": 0.6},
    {"reward": "pnl", "max_drawdown": 0.03},
    {"position_buckets": (-2.0, 0.0, 2.0), "max_leverage": 1.5},
    {"position_buckets": (0.0, 0.25, 1.0), "stop_loss_bps": 200.0, "max_leverage": 1.0},
    {"risk_pct": 0.2, "stop_loss_bps": 30.0, "max_drawdown": 0.1, "order_type": "market"},
    # a market entry whose slipped price puts the stop above the open: exits at the open in the same bar
    {"order_type": "market", "slippage_bps": 5.0, "stop_loss_bps": 3.0},
]


def _actions(knobs: dict, seed: int, switch_prob: float) -> np.ndarray:
    n_actions = len(knobs.get("position_buckets", (0,) * 5))
    return sticky_actions(np.random.default_rng(seed), N_STEPS, n_actions, switch_prob)


def _reference_arrays(rows: list[dict]) -> dict[str, np.ndarray]:
    return {name: np.array([row[name] for row in rows]) for name in rows[0]}


def compare_x64(bars, actions, knobs) -> dict[str, np.ndarray]:
    ref = _reference_arrays(reference_replay(bars, actions, **knobs))
    with jax.enable_x64(True):
        out = replay(bars, actions, **knobs)
    assert out["equity"].dtype == np.float64
    assert len(out["t"]) == len(ref["t"])
    np.testing.assert_array_equal(out["t"], ref["t"])
    for name in DISCRETE:
        np.testing.assert_array_equal(out[name], ref[name], err_msg=name)
    for name in NUMERIC:
        finite = np.abs(ref[name][~np.isnan(ref[name])])
        scale = 1e-9 * (1.0 if name == "reward" or finite.size == 0 else max(float(finite.max()), 1.0))
        np.testing.assert_allclose(out[name], ref[name], rtol=1e-9, atol=scale, equal_nan=True, err_msg=name)
    return ref


# float32 tolerances: (rtol, atol) per field, atol relative to initial_cash for money.
F32_TOL = {
    "price": (2e-6, 0.0),  # fill, stop and exit prices: a few float32 ulps
    "units": (1e-4, 1e-7),  # base-asset quantities
    "fee": (1e-4, 1e-4),
    "money": (0.0, 1e-4),  # cash and equity, times initial_cash
    "reward": (0.0, 5e-6),
}
F32_KIND = {
    "fill_price": "price", "stop_price": "price", "exit_price": "price", "stop_distance": "price",
    "target_position": "units", "risk_units": "units", "order_size": "units", "position": "units",
    "limit_fee": "fee", "stop_fee": "fee", "cash": "money", "equity": "money", "reward": "reward",
}  # fmt: skip
FLIP_MARGIN = 1e-4  # a comparison this close (relative) may go either way in float32


def compare_f32(bars, actions, knobs) -> int:
    """Number of steps compared before the first (rounding-explained) divergence."""
    ref = _reference_arrays(reference_replay(bars, actions, **knobs))
    out = replay(bars, actions, **knobs)
    assert out["equity"].dtype == np.float32
    n = min(len(out["t"]), len(ref["t"]))
    sent_ref, sent_out = ref["order_size"][:n] != 0, out["order_size"][:n] != 0
    differs = sent_ref != sent_out
    for name in DISCRETE:
        differs |= ref[name][:n] != out[name][:n]
    first = int(np.argmax(differs)) if differs.any() else n
    if first < n:
        assert ref["margin"][first] < FLIP_MARGIN, f"step {first} differs with margin {ref['margin'][first]}"
    elif len(out["t"]) != len(ref["t"]):
        assert ref["margin"][n - 1] < FLIP_MARGIN, "termination differs without a near tie"
    cash0 = float(knobs.get("initial_cash", 10_000.0))
    for name in NUMERIC:
        rtol, atol = F32_TOL[F32_KIND[name]]
        atol = atol * cash0 if F32_KIND[name] == "money" else atol
        np.testing.assert_allclose(
            out[name][:first], ref[name][:first], rtol=rtol, atol=atol, equal_nan=True, err_msg=name
        )
    return first


def _combo_id(knobs: dict) -> str:
    return ",".join(f"{a}={b}" for a, b in knobs.items()) or "defaults"


@pytest.mark.parametrize("knobs", COMBOS, ids=_combo_id)
def test_replay_matches_reference_x64(btc_bars, knobs):
    bars = bar_slice(btc_bars, 40_000, 40_000 + N_STEPS + 1)
    for seed, switch_prob in ((0, 1.0), (1, 0.05)):
        ref = compare_x64(bars, _actions(knobs, seed, switch_prob), knobs)
        assert ref["filled"].sum() > 0


@pytest.mark.parametrize("knobs", COMBOS, ids=_combo_id)
def test_replay_matches_reference_float32(btc_oct_bars, knobs):
    bars = bar_slice(btc_oct_bars, 10_000, 10_000 + N_STEPS + 1)
    compared = [compare_f32(bars, _actions(knobs, seed, p), knobs) for seed, p in ((2, 1.0), (3, 0.05))]
    assert max(compared) > 100


def test_reference_exercises_the_contract(btc_oct_bars):
    """The combos reach stops, gap exits, trails, kills and crossings (else the tests prove little)."""
    bars = bar_slice(btc_oct_bars, 10_000, 10_000 + N_STEPS + 1)
    seen = {"stop": 0, "gap": 0, "trail": 0, "cross": 0, "kill": 0}
    for knobs in COMBOS:
        rows = reference_replay(bars, _actions(knobs, 3, 0.05), **knobs)
        ref = _reference_arrays(rows)
        hit = ref["stop_hit"]
        seen["stop"] += int(hit.sum())
        opens = bars["open"][ref["t"] + 1]
        slip = knobs.get("slippage_bps", 0.0) / 1e4
        at_open = [np.abs(ref["exit_price"] - opens * (1 + side * slip)) < 1e-9 * opens for side in (-1, 1)]
        seen["gap"] += int(np.sum(hit & (at_open[0] | at_open[1])))
        stops = ref["stop_price"]
        held = ~np.isnan(stops[1:]) & ~np.isnan(stops[:-1]) & ~ref["filled"][1:]
        seen["trail"] += int(np.sum(held & (stops[1:] != stops[:-1])))
        seen["cross"] += int(np.sum(ref["position"][1:] * ref["position"][:-1] < 0))
        seen["kill"] += int(ref["terminated"][-1])
    assert all(v > 0 for v in seen.values()), seen


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    order_type=st.sampled_from(["limit", "market"]),
    trailing_stop=st.booleans(),
    slippage_bps=st.sampled_from([0.0, 0.5, 4.0]),
    maker_fee=st.sampled_from([-0.0002, 0.0, 0.0002, 0.001]),
    taker_fee=st.sampled_from([0.0, 0.0005, 0.002]),
    risk_pct=st.floats(0.001, 0.1),
    stop_loss_bps=st.sampled_from([0.0, 5.0, 25.0, 50.0, 300.0]),
    max_leverage=st.floats(0.5, 10.0),
    rebalance_band=st.sampled_from([0.0, 0.1, 0.25, 0.9]),
    max_drawdown=st.sampled_from([0.02, 0.2, 1.0]),
    reward=st.sampled_from(["log_return", "pnl"]),
    switch_prob=st.sampled_from([1.0, 0.1, 0.02]),
    seed=st.integers(0, 2**16),
)
def test_replay_matches_reference_random_knobs(btc_bars, switch_prob, seed, **knobs):
    offset = 1000 + seed % 100_000
    bars = bar_slice(btc_bars, offset, offset + 501)
    actions = sticky_actions(np.random.default_rng(seed), 500, 5, switch_prob)
    compare_x64(bars, actions, knobs)
