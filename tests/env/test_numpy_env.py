"""The numpy benchmark env (bench/numpy_env.py) implements the same contract as the JAX env."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from env.helpers import bar_slice, sticky_actions
from tradelab_jax.bench.numpy_env import NumpyTradingEnv
from tradelab_jax.env import TELEMETRY, from_arrays
from tradelab_jax.env.trading import initial_state


@pytest.mark.parametrize(
    "knobs",
    [{}, {"order_type": "market", "slippage_bps": 2.0, "trailing_stop": True, "stop_loss_bps": 10.0},
     {"maker_fee": -0.0001, "reward": "pnl", "max_drawdown": 0.02, "risk_pct": 0.05}],
)
def test_numpy_env_matches_the_jax_env(btc_oct_bars, knobs):
    bars = bar_slice(btc_oct_bars, 5_000, 6_500)
    close = bars["close"]
    feats = np.stack([np.r_[0.0, np.diff(np.log(close))], np.log(bars["volume"] + 1)], 1).astype(np.float32)
    with jax.enable_x64(True):
        env, params = from_arrays(bars, feats, window=2, warmup=1, episode_length=300, **knobs)
        np_env = NumpyTradingEnv.from_env_params(params, window=2)
        obs_np, _ = np_env.reset(seed=3)  # a random start of its own; the JAX env starts there too
        state = initial_state(params, np_env.t)
        obs = env.get_obs(state, params)
        np.testing.assert_allclose(np.asarray(obs), obs_np, rtol=1e-6)
        actions = sticky_actions(np.random.default_rng(4), 600, 5, 0.1)
        for i, action in enumerate(actions):
            obs_np, reward_np, term_np, trunc_np, info_np = np_env.step(int(action))
            obs, state, reward, term, trunc, info = env.step(jax.random.key(i), state, int(action), params)
            assert float(reward) == pytest.approx(reward_np, rel=1e-9, abs=1e-12)
            for name in TELEMETRY:
                np.testing.assert_allclose(np.asarray(info[name]), info_np[name], rtol=1e-9, atol=1e-9,
                                           err_msg=f"{name} at step {i}")
            assert (bool(term), bool(trunc)) == (term_np, trunc_np)
            if term_np or trunc_np:
                break
            np.testing.assert_allclose(np.asarray(obs), obs_np, rtol=1e-5, atol=1e-6, err_msg=str(i))
        assert i > 10


def test_numpy_env_is_a_gymnasium_env(btc_oct_bars):
    import gymnasium

    bars = bar_slice(btc_oct_bars, 0, 500)
    _, params = from_arrays(bars, np.zeros((500, 3), np.float32), episode_length=20)
    env = NumpyTradingEnv.from_env_params(params)
    assert isinstance(env, gymnasium.Env)
    obs, _ = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    steps = 0
    while True:
        obs, reward, terminated, truncated, _ = env.step(env.action_space.sample())
        steps += 1
        assert env.observation_space.contains(obs) and np.isfinite(reward)
        if terminated or truncated:
            break
    assert steps == 20
