"""Properties of the contract that hold for every knob setting (hypothesis), checked through `replay`.

Identities are checked in float64 (``jax.enable_x64``) so they hold to rounding; the NaN/inf sweep runs
in the default float32 over whole real datasets.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from env.helpers import bar_slice, sticky_actions
from tradelab_jax.env import make, replay

N_STEPS = 400
PROPERTY_SETTINGS = settings(max_examples=30, deadline=None,
                             suppress_health_check=[HealthCheck.function_scoped_fixture])

knob_sets = st.fixed_dictionaries({
    "order_type": st.sampled_from(["limit", "market"]),
    "trailing_stop": st.booleans(),
    "slippage_bps": st.sampled_from([0.0, 1.0, 5.0]),
    "maker_fee": st.sampled_from([-0.0002, 0.0, 0.0002]),
    "taker_fee": st.sampled_from([0.0, 0.0005, 0.001]),
    "risk_pct": st.floats(0.002, 0.1),
    "stop_loss_bps": st.sampled_from([0.0, 3.0, 20.0, 50.0, 150.0]),
    "max_leverage": st.floats(0.5, 5.0),
    "rebalance_band": st.sampled_from([0.0, 0.25, 0.5]),
    "max_drawdown": st.sampled_from([0.05, 0.5, 1.0]),
    "position_buckets": st.sampled_from([(-1.0, -0.5, 0.0, 0.5, 1.0), (-3.0, -1.0, 0.0, 1.5, 3.0)]),
})  # fmt: skip


def _run(bars, seed, switch_prob, knobs):
    actions = sticky_actions(np.random.default_rng(seed), N_STEPS, 5, switch_prob)
    with jax.enable_x64(True):
        return replay(bars, actions, **knobs)


def _window(btc_bars, seed):
    offset = 1000 + (seed * 7919) % 120_000
    return bar_slice(btc_bars, offset, offset + N_STEPS + 1)


@PROPERTY_SETTINGS
@given(knobs=knob_sets, seed=st.integers(0, 2**20), switch_prob=st.sampled_from([1.0, 0.1, 0.02]))
def test_equity_changes_only_by_price_moves_and_fees(btc_bars, knobs, seed, switch_prob):
    """E[t+1] - E[t] = held position x close move + traded qty x (close - fill) + stopped qty x (exit -
    close) - fees: nothing else moves cash + position value."""
    bars = _window(btc_bars, seed)
    out = _run(bars, seed, switch_prob, knobs)
    t = out["t"]
    c0, c1 = bars["close"][t], bars["close"][t + 1]
    before = np.concatenate([[0.0], out["position"][:-1]])
    equity_before = np.concatenate([[10_000.0], out["equity"][:-1]])
    traded = np.where(out["filled"], out["order_size"], 0.0)
    after_fill = before + traded
    expected = (
        before * (c1 - c0)
        + np.where(out["filled"], traded * (c1 - np.nan_to_num(out["fill_price"])), 0.0)
        + np.where(out["stop_hit"], after_fill * (np.nan_to_num(out["exit_price"]) - c1), 0.0)
        - out["limit_fee"]
        - out["stop_fee"]
    )
    np.testing.assert_allclose(out["equity"] - equity_before, expected, rtol=0, atol=1e-7)
    np.testing.assert_allclose(out["cash"] + out["position"] * c1, out["equity"], rtol=1e-12)


@PROPERTY_SETTINGS
@given(
    price=st.floats(0.01, 1e6),
    maker_fee=st.floats(-0.0005, 0.005, allow_subnormal=False),  # XLA:CPU flushes subnormals to 0
    taker_fee=st.floats(0.0, 0.005, allow_subnormal=False),
    risk_pct=st.floats(0.001, 0.5),
    order_type=st.sampled_from(["limit", "market"]),
)
def test_a_round_trip_at_one_price_costs_exactly_the_two_fees(
    price, maker_fee, taker_fee, risk_pct, order_type
):
    bars = {k: np.full(3, price) for k in ("open", "high", "low", "close")}
    knobs = {"maker_fee": maker_fee, "taker_fee": taker_fee, "risk_pct": risk_pct, "order_type": order_type,
             "max_drawdown": 1.0}
    with jax.enable_x64(True):
        out = replay(bars, np.array([4, 2]), **knobs)  # long one bucket, then flat
    assert out["filled"].all() and not out["stop_hit"].any()
    rate = maker_fee if order_type == "limit" else taker_fee
    qty = abs(out["order_size"][0])
    assert out["order_size"][1] == pytest.approx(-qty, rel=1e-15)
    np.testing.assert_allclose(out["limit_fee"], rate * qty * price, rtol=1e-12, atol=1e-290)
    assert out["position"][1] == 0.0
    assert out["equity"][1] - 10_000.0 == pytest.approx(-2 * rate * qty * price, rel=1e-9, abs=1e-9)


@PROPERTY_SETTINGS
@given(knobs=knob_sets, seed=st.integers(0, 2**20), switch_prob=st.sampled_from([1.0, 0.1, 0.02]))
def test_no_fee_without_a_fill(btc_bars, knobs, seed, switch_prob):
    out = _run(_window(btc_bars, seed), seed, switch_prob, knobs)
    assert np.all(out["limit_fee"][~out["filled"]] == 0)
    assert np.all(np.isnan(out["fill_price"][~out["filled"]]))
    assert np.all(out["order_size"][out["filled"]] != 0)
    assert np.all(out["stop_fee"][~out["stop_hit"]] == 0)
    assert np.all(np.isnan(out["exit_price"][~out["stop_hit"]]))


@PROPERTY_SETTINGS
@given(knobs=knob_sets, seed=st.integers(0, 2**20), switch_prob=st.sampled_from([0.1, 0.02]))
def test_stop_exits_at_the_stop_or_a_gapped_open_within_the_bar(btc_bars, knobs, seed, switch_prob):
    bars = _window(btc_bars, seed)
    out = _run(bars, seed, switch_prob, knobs)
    slip = knobs["slippage_bps"] / 1e4
    nxt = out["t"] + 1
    o, h, lo = bars["open"][nxt], bars["high"][nxt], bars["low"][nxt]
    before = np.concatenate([[0.0], out["position"][:-1]])
    prev_stop = np.concatenate([[np.nan], out["stop_price"][:-1]])
    side = np.sign(before + np.where(out["filled"], out["order_size"], 0.0))
    for i in np.flatnonzero(out["stop_hit"]):
        exit_price = out["exit_price"][i]
        assert lo[i] * (1 - slip) * (1 - 1e-12) <= exit_price <= h[i] * (1 + slip) * (1 + 1e-12)
        level = exit_price / (1 - side[i] * slip)
        long_gap = side[i] > 0 and o[i] <= level * (1 + 1e-12)
        gapped = long_gap or (side[i] < 0 and o[i] >= level * (1 - 1e-12))
        if not out["filled"][i]:  # the stop was set before this bar: exit at it, or at an open beyond it
            through = o[i] <= prev_stop[i] if side[i] > 0 else o[i] >= prev_stop[i]
            assert level == pytest.approx(o[i] if through else prev_stop[i], rel=1e-12)
        elif abs(level - o[i]) <= 1e-9 * o[i]:
            assert gapped


@PROPERTY_SETTINGS
@given(knobs=knob_sets, seed=st.integers(0, 2**20), switch_prob=st.sampled_from([1.0, 0.1]))
def test_notional_at_sizing_never_exceeds_max_leverage_times_equity(btc_bars, knobs, seed, switch_prob):
    bars = _window(btc_bars, seed)
    out = _run(bars, seed, switch_prob, knobs)
    equity_before = np.concatenate([[10_000.0], out["equity"][:-1]])
    notional = np.abs(out["target_position"]) * bars["close"][out["t"]]
    assert np.all(notional <= knobs["max_leverage"] * equity_before * (1 + 1e-12))


TELEMETRY_NAN_WHERE = {"fill_price": "filled", "exit_price": "stop_hit"}


@pytest.mark.parametrize("dataset", ["btc_1m", "btc_1m_oct"])
@pytest.mark.parametrize("knobs", [{}, {"order_type": "market", "slippage_bps": 2.0, "trailing_stop": True}])
def test_no_nan_or_inf_in_telemetry_on_whole_datasets(btc_bars, btc_oct_bars, dataset, knobs):
    bars = btc_bars if dataset == "btc_1m" else btc_oct_bars
    n = len(bars["close"]) - 1
    actions = sticky_actions(np.random.default_rng(7), n, 5, 0.05)
    out = replay(bars, actions, max_drawdown=1.0, **knobs)
    assert len(out["t"]) == n  # no kill with max_drawdown 1 (random trading loses, but not everything)
    for name, values in out.items():
        values = np.asarray(values)
        if values.dtype == bool:
            continue
        if name in TELEMETRY_NAN_WHERE:
            happened = out[TELEMETRY_NAN_WHERE[name]]
            assert np.all(np.isfinite(values[happened])) and np.all(np.isnan(values[~happened])), name
        elif name == "stop_price":
            held = out["position"] != 0
            assert np.all(np.isfinite(values[held])) and np.all(np.isnan(values[~held])), name
        else:
            assert np.all(np.isfinite(values)), name


@pytest.mark.parametrize("dataset", ["binance_btcusdt_1m", "binance_btcusdt_1m_2025-10"])
def test_observations_are_finite_on_real_datasets(dataset):
    """Observations (full feature set, window 8, random starts, auto-resets) never hold NaN or inf."""
    env, params = make(dataset, features="full", split="train", window=8, episode_length=300)
    n_envs, n_steps = 32, 400

    @jax.jit
    def rollout(key):
        keys = jax.random.split(key, n_envs)
        obs, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)

        def body(carry, key):
            state, ok = carry
            k_act, k_step = jax.random.split(key)
            actions = jax.random.randint(k_act, (n_envs,), 0, env.num_actions)
            obs, state, reward, _, _, info = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_step, n_envs), state, actions, params
            )
            finite = jnp.all(jnp.isfinite(obs)) & jnp.all(jnp.isfinite(info["final_observation"]))
            return (state, ok & finite & jnp.all(jnp.isfinite(reward))), None

        (_, ok), _ = jax.lax.scan(body, (state, jnp.all(jnp.isfinite(obs))), jax.random.split(key, n_steps))
        return ok

    assert bool(rollout(jax.random.key(0)))
