"""TradingEnv: the gymnax 1.0 API, observations, resets, truncation vs termination, sweeps, recompiles."""

from __future__ import annotations

import importlib

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from env.helpers import bar_slice, sticky_actions
from tradelab_jax.env import (
    ACCOUNT_FEATURES,
    MARKET_FIELDS,
    TELEMETRY,
    EnvParams,
    EnvState,
    TradingEnv,
    from_arrays,
    replay,
    sweep_params,
)
from tradelab_jax.env.trading import valid_starts
from tradelab_jax.errors import UserError

replay_module = importlib.import_module("tradelab_jax.env.replay")  # the package exports the function


def _features(bars, n_features=2):
    """Two causal, finite-after-warm-up columns: 1-bar log return and 10-bar range (warm-up 10)."""
    close = np.asarray(bars["close"], np.float64)
    ret = np.full_like(close, np.nan)
    ret[1:] = np.log(close[1:] / close[:-1])
    rng = np.full_like(close, np.nan)
    high = np.asarray(bars["high"])
    low = np.asarray(bars["low"])
    for i in range(9, len(close)):
        rng[i] = high[i - 9 : i + 1].max() / low[i - 9 : i + 1].min() - 1
    return np.stack([ret, rng][:n_features], axis=1).astype(np.float32), 9


@pytest.fixture(scope="module")
def small(btc_bars):
    bars = bar_slice(btc_bars, 50_000, 53_000)
    feats, warmup = _features(bars)
    return bars, feats, warmup


def test_api_shapes_and_spaces(small):
    bars, feats, warmup = small
    env, params = from_arrays(bars, feats, warmup=warmup, window=3, episode_length=50)
    assert isinstance(params, EnvParams)
    assert env.num_actions == 5 and env.window == 3 and env.num_features == 2
    assert env.obs_size == 3 * 2 + len(ACCOUNT_FEATURES)
    assert env.action_space(params).n == 5
    assert env.observation_space(params).shape == (env.obs_size,)
    assert env.default_params is params
    obs, state = env.reset(jax.random.key(0))  # default params
    assert isinstance(state, EnvState)
    chex.assert_shape(obs, (env.obs_size,))
    assert obs.dtype == jnp.float32
    out = env.step(jax.random.key(1), state, 4, params)
    assert len(out) == 6
    obs2, state2, _reward, terminated, truncated, info = out
    chex.assert_shape(obs2, (env.obs_size,))
    assert set(TELEMETRY) <= set(info)
    assert {"terminated", "truncated", "final_observation"} <= set(info)
    assert int(state2.time) == 1 and int(state2.t) == int(state.t) + 1
    assert not bool(terminated) and not bool(truncated)


def test_observation_is_the_feature_window_then_the_account(small):
    bars, feats, warmup = small
    env, params = from_arrays(bars, feats, warmup=warmup, window=4, random_start=False)
    obs, state = env.reset(jax.random.key(0), params)
    t = int(state.t)
    assert t == warmup + 4 - 1
    np.testing.assert_array_equal(np.asarray(obs[:8]), feats[t - 3 : t + 1].reshape(-1))
    np.testing.assert_array_equal(np.asarray(obs[8:]), np.zeros(4, np.float32))  # fresh account
    obs, state, *_ = env.step(jax.random.key(1), state, 4, params)  # go long 1 risk unit
    t1 = int(state.t)
    np.testing.assert_array_equal(np.asarray(obs[:8]), feats[t1 - 3 : t1 + 1].reshape(-1))
    position_ru, unrealized, held, drawdown = np.asarray(obs[8:], np.float64)
    if float(state.position) != 0:  # the limit buy filled
        assert position_ru == pytest.approx(1.0, rel=2e-3)  # risk units drift with equity and price
        price = float(state.price)
        expected = float(state.position) * (price - float(state.entry_price)) / float(state.equity)
        assert unrealized == pytest.approx(expected, rel=1e-4, abs=1e-9)
        assert held == pytest.approx(1 / 1440)
    assert 0.0 <= drawdown <= 1.0


def test_bars_in_position_observation_is_capped_at_one_past_an_episode(small):
    # The trainer's evaluation trades a whole split through `transition`, past episode_length; the
    # observation must stay within what training showed the policy.
    from tradelab_jax.env.trading import account_features, initial_state, transition

    bars, feats, warmup = small
    _, params = from_arrays(bars, feats, warmup=warmup, episode_length=3, random_start=False,
                            stop_loss_bps=0.0)
    state = initial_state(params, params.start_min)
    held = []
    for _ in range(6):
        state, *_ = transition(state, jnp.asarray(4), params)
        held.append(float(account_features(state, params)[2]))
    bars_held = int(state.bars_in_position)
    assert bars_held >= 4, "the long never filled; pick other bars"
    assert max(held) == 1.0
    assert held[-1] == 1.0 and held[-bars_held] == pytest.approx(1 / 3)


def test_truncation_at_episode_length_auto_resets(small):
    bars, feats, warmup = small
    env, params = from_arrays(bars, feats, warmup=warmup, episode_length=3, random_start=False)
    _, state = env.reset(jax.random.key(0), params)
    start = int(state.t)
    for i in range(3):
        _obs, state, _reward, terminated, truncated, info = env.step(jax.random.key(i), state, 2, params)
    assert bool(truncated) and not bool(terminated)
    assert int(state.time) == 0 and int(state.t) == start  # reset to the (fixed) first valid bar
    assert int(info["t"]) == start + 2
    # final_observation is the observation of the truncated state (the learner bootstraps from it)
    np.testing.assert_array_equal(np.asarray(info["final_observation"][:2]), feats[start + 3])


def test_truncation_at_the_split_end_never_reads_past_it(small):
    bars, feats, warmup = small
    env, params = from_arrays(bars, feats, warmup=warmup, split=(100, 140), episode_length=1000,
                              random_start=True)
    assert (int(params.start_min), int(params.start_max), int(params.last_bar)) == (100, 100, 139)
    _, state = env.reset(jax.random.key(0), params)
    ts, truncs = [], []
    for i in range(40):
        _obs, state, _reward, _terminated, truncated, info = env.step(jax.random.key(i), state, i % 5, params)
        ts.append(int(info["t"]))
        truncs.append(bool(truncated))
    assert max(ts) == 138  # the last decision executes in bar 139, the split's last bar
    assert truncs.index(True) == 38 and ts[38] == 138


def test_valid_starts():
    def starts(split_start, split_stop, warmup, window, episode_length):
        return valid_starts(split_start=split_start, split_stop=split_stop, warmup=warmup, window=window,
                            episode_length=episode_length)

    assert starts(0, 100, 10, 1, 50) == (10, 49, 99)
    assert starts(20, 100, 10, 30, 5) == (39, 94, 99)  # the window's oldest row is warmed up too
    assert starts(0, 100, 10, 1, 500) == (10, 10, 99)  # a short split: one start, truncated at its end
    with pytest.raises(UserError, match="no bar to trade"):
        starts(0, 12, 11, 1, 5)


def test_random_starts_cover_the_valid_range(small):
    bars, feats, warmup = small
    env, params = from_arrays(bars, feats, warmup=warmup, split=(1000, 2000), episode_length=100)
    keys = jax.random.split(jax.random.key(0), 4000)
    _, states = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
    starts = np.asarray(states.t)
    assert starts.min() >= 1000 and starts.max() <= 1899
    counts = np.bincount((starts - 1000) // 100, minlength=9)  # 9 bins of 100 over [1000, 1900)
    assert counts.min() > 350 and counts.max() < 550, counts
    # seed-like keys (key(0), key(1), ...) must not give neighbouring starts
    _, seeded = jax.vmap(lambda k: env.reset(k, params))(jax.vmap(jax.random.key)(jnp.arange(200)))
    assert np.unique(np.asarray(seeded.t)).size > 150
    fixed_params = params.replace(random_start=jnp.array(False))
    _, fixed = jax.vmap(env.reset, in_axes=(0, None))(keys[:10], fixed_params)
    assert set(np.asarray(fixed.t).tolist()) == {1000}


def test_kill_switch_terminates_and_resets(small):
    bars, feats, warmup = small
    env, params = from_arrays(bars, feats, warmup=warmup, max_drawdown=0.0005, random_start=False,
                              order_type="market", max_leverage=10.0, risk_pct=0.2)
    _, state = env.reset(jax.random.key(0), params)
    start = int(state.t)
    for i in range(200):
        action = (i // 7) % 5
        _, state, _, terminated, _, info = env.step(jax.random.key(i), state, action, params)
        if bool(terminated):
            break
    assert bool(terminated), "the kill switch never fired"
    assert float(info["equity"]) <= 10_000 * (1 + 1e-6)
    assert int(state.time) == 0 and int(state.t) == start and float(state.cash) == 10_000.0
    assert float(state.position) == 0.0


def test_step_and_replay_share_one_transition(small):
    """The env's step and the replay API give the same telemetry for the same actions."""
    bars, feats, warmup = small
    knobs = {"trailing_stop": True, "stop_loss_bps": 15.0, "order_type": "market", "slippage_bps": 1.0}
    env, params = from_arrays(bars, feats, warmup=warmup, random_start=False, episode_length=400, **knobs)
    actions = sticky_actions(np.random.default_rng(0), 300, 5, 0.1)
    _obs, state = env.reset(jax.random.key(0), params)
    start = int(state.t)

    def scan_step(state, action):
        _, state, _, _terminated, _, info = env.step(jax.random.key(0), state, action, params)
        return state, {k: info[k] for k in (*TELEMETRY, "terminated")}

    _, stepped = jax.lax.scan(scan_step, state, jnp.asarray(actions))
    replayed = replay(bars, actions, start=start, **knobs)
    n = len(replayed["t"])
    for name in (*TELEMETRY, "terminated"):
        np.testing.assert_array_equal(np.asarray(stepped[name])[:n], replayed[name], err_msg=name)


def test_sweep_params_batches_knobs_and_broadcasts_market_arrays(small):
    bars, feats, warmup = small
    env, params = from_arrays(bars, feats, warmup=warmup, random_start=False)
    values = {"risk_pct": [0.005, 0.01, 0.02], "order_type": ["limit", "market", "market"],
              "trailing_stop": [False, True, False], "maker_fee": [-0.0001, 0.0002, 0.0]}
    batched, in_axes = sweep_params(params, **values)
    for name in MARKET_FIELDS:
        assert getattr(in_axes, name) is None
        assert getattr(batched, name) is getattr(params, name)  # never copied per environment
    assert in_axes.risk_pct == 0 and in_axes.taker_fee is None
    chex.assert_shape(batched.risk_pct, (3,))
    keys = jax.random.split(jax.random.key(0), 3)
    _, states = jax.vmap(env.reset, in_axes=(0, in_axes))(keys, batched)
    step = jax.vmap(env.step, in_axes=(0, 0, None, in_axes))
    _, states, _, _, _, info = step(keys, states, 4, batched)
    for i in range(3):
        single = params.replace(**{k: getattr(batched, k)[i] for k in values})
        _, s = env.reset(keys[i], single)
        _, _, _, _, _, one = env.step(keys[i], s, 4, single)
        for name in ("order_size", "filled", "cash", "equity", "reward"):
            np.testing.assert_array_equal(np.asarray(info[name][i]), np.asarray(one[name]), err_msg=name)
    with pytest.raises(UserError, match="same number of values"):
        sweep_params(params, risk_pct=[0.01, 0.02], stop_loss_bps=[10.0])
    with pytest.raises(UserError, match="unknown knob"):
        sweep_params(params, risk=[0.01])
    with pytest.raises(UserError, match="risk_pct"):
        sweep_params(params, risk_pct=[0.01, -1.0])


def test_step_compiles_once_for_a_batch_of_differing_knobs(small):
    bars, feats, warmup = small
    env, params = from_arrays(bars, feats, warmup=warmup)
    n = 4
    rng = np.random.default_rng(0)

    def draw():
        return sweep_params(
            params,
            risk_pct=rng.uniform(0.001, 0.05, n), stop_loss_bps=rng.uniform(0, 100, n),
            maker_fee=rng.uniform(-1e-4, 1e-3, n), taker_fee=rng.uniform(0, 1e-3, n),
            slippage_bps=rng.uniform(0, 5, n), order_type=rng.integers(0, 2, n),
            trailing_stop=rng.integers(0, 2, n).astype(bool), reward=rng.integers(0, 2, n),
            max_drawdown=rng.uniform(0.05, 1, n), episode_length=rng.integers(5, 50, n),
            position_buckets=[rng.uniform(-2, 2, 5) for _ in range(n)],
        )

    batched, in_axes = draw()

    @jax.jit
    @chex.assert_max_traces(n=1)
    def step(keys, states, actions, batched):
        return jax.vmap(env.step, in_axes=(0, 0, 0, in_axes))(keys, states, actions, batched)

    keys = jax.random.split(jax.random.key(0), n)
    _, state = jax.vmap(env.reset, in_axes=(0, in_axes))(keys, batched)
    for _ in range(3):
        _, state, *_ = step(keys, state, jnp.arange(n) % 5, batched)
        batched, _ = draw()
    # another env object with the same shapes is equal, so the public step reuses its compile
    other_env, _ = from_arrays(bars, feats, warmup=warmup, risk_pct=0.03, order_type="market")
    assert other_env == env and hash(other_env) == hash(env)


def test_replay_compiles_once_across_knob_combinations(small, monkeypatch):
    bars, _, _ = small
    counted = jax.jit(chex.assert_max_traces(replay_module._replay_impl, n=1))
    monkeypatch.setattr(replay_module, "_replay_jit", counted)
    actions = sticky_actions(np.random.default_rng(1), 200, 5, 0.2)
    combos = (
        {}, {"order_type": "market", "slippage_bps": 2.0}, {"trailing_stop": True},
        {"maker_fee": -0.0001, "reward": "pnl"},
        {"stop_loss_bps": 0.0, "position_buckets": [-2, -1, 0, 1, 2]},
    )
    for knobs in combos:
        replay(bars, actions, start=10, **knobs)


@pytest.mark.parametrize(
    ("knobs", "match"),
    [({"risk_pct": 0.0}, "risk_pct"), ({"order_type": "stop"}, "order_type"),
     ({"reward": "sharpe"}, "reward"),
     ({"stop_loss_bps": -1}, "stop_loss_bps"), ({"max_drawdown": 1.5}, "max_drawdown"),
     ({"position_buckets": []}, "position_buckets"), ({"episode_length": 0}, "episode_length"),
     ({"initial_cash": float("nan")}, "initial_cash"), ({"leverage": 2}, "unknown knob")],
)
def test_bad_knobs_are_user_errors(small, knobs, match):
    bars, feats, warmup = small
    with pytest.raises(UserError, match=match):
        from_arrays(bars, feats, warmup=warmup, **knobs)


def test_bad_inputs_are_user_errors(small):
    bars, feats, warmup = small
    with pytest.raises(UserError, match="need bars up to"):
        replay(bars, np.zeros(len(bars["close"]), np.int32))
    with pytest.raises(UserError, match="actions must lie"):
        replay(bars, np.array([0, 5]))
    with pytest.raises(UserError, match="bars lack"):
        replay({"close": bars["close"]}, np.array([0]))
    with pytest.raises(UserError, match="NaN"):
        from_arrays(bars, feats, warmup=0)  # the features are NaN before their warm-up
    with pytest.raises(UserError, match="rows"):
        from_arrays(bars, feats[:-1], warmup=warmup)
    with pytest.raises(UserError, match="no data"):
        TradingEnv().default_params  # noqa: B018


def test_buckets_beyond_one_are_capped_at_max_leverage(small):
    bars, _, _ = small
    out = replay(bars, np.array([2, 0, 2]), position_buckets=[-5.0, 0.0, 5.0], max_leverage=2.0,
                 stop_loss_bps=0.0, order_type="market")
    close = bars["close"][:3]
    equity_before = np.concatenate([[10_000.0], out["equity"][:-1]])
    np.testing.assert_allclose(np.abs(out["target_position"]) * close, 2.0 * equity_before, rtol=1e-6)


def test_stop_disabled_means_no_stop_and_leverage_sizing(small):
    bars, _, _ = small
    out = replay(bars, np.full(500, 4), stop_loss_bps=0.0, order_type="market")
    assert not out["stop_hit"].any() and np.isnan(out["stop_price"]).all()
    np.testing.assert_allclose(out["risk_units"][0], 3.0 * 10_000 / bars["close"][0], rtol=1e-6)


def test_step_with_every_params_leaf_batched(small):
    """vmapping over whole EnvParams (market arrays too) gives the same steps as one env at a time."""
    bars, feats, warmup = small
    env, params = from_arrays(bars, feats, warmup=warmup, random_start=False,
                              order_type="market", stop_loss_bps=5.0)
    n = 2
    batched = jax.tree.map(lambda x: jnp.stack([x] * n), params)
    keys = jax.random.split(jax.random.key(0), n)
    _, states = jax.vmap(env.reset)(keys, batched)
    _, single = env.reset(keys[0], params)
    step = jax.vmap(env.step, in_axes=(0, 0, None, 0))
    for i in range(30):
        action = jnp.asarray(i // 3 % 5)
        _, states, rewards, _, _, info = step(keys, states, action, batched)
        _, single, reward, _, _, one = env.step(keys[0], single, action, params)
        np.testing.assert_array_equal(np.asarray(rewards[0]), np.asarray(reward))
        np.testing.assert_array_equal(np.asarray(info["equity"][1]), np.asarray(one["equity"]))
