"""The env-side policies and the one episode runner (tradelab_jax.env.policies, tradelab_jax.env.rollout)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from env.helpers import bar_slice
from tradelab_jax.env import TELEMETRY, from_arrays, replay
from tradelab_jax.env.policies import (
    POLICIES,
    Constant,
    Replayed,
    Uniform,
    asset_return,
    baseline,
    buy_and_hold_index,
    flat_index,
    select,
    stack,
)
from tradelab_jax.env.rollout import rollout, run_episode, trim_at_termination


@pytest.mark.parametrize(
    ("buckets", "expected"),
    [([-1.0, -0.5, 0.0, 0.5, 1.0], 4),  # the default buckets: +1, as the golden evaluation has it
     ([-1.0, 0.0, 1.0, 2.0], 2),  # +1, not the levered +2 that argmax would pick
     ([-0.5, 0.0, 0.5], 2),  # no +1 bucket: the nearest, here the largest
     ([0.5, 1.5, 0.0], 0),  # a tie (both 0.5 away): the first
     ([1.0, -1.0, 1.0], 0),  # two +1 buckets: the first
     ([-1.0, 0.0], 1)],  # nothing long: the nearest is flat
)
def test_buy_and_hold_is_the_bucket_nearest_plus_one_first_on_a_tie(buckets, expected):
    assert buy_and_hold_index(buckets) == expected
    assert baseline("buy_and_hold", buckets) == Constant(expected)


@pytest.mark.parametrize(("buckets", "expected"), [([-1.0, -0.5, 0.0, 0.5, 1.0], 2), ([-1.0, 1.0], 0),
                                                   ([0.25, -0.1, 0.1], 1)])
def test_flat_is_the_bucket_nearest_zero_first_on_a_tie(buckets, expected):
    assert flat_index(buckets) == expected


def test_asset_return_is_last_close_over_first_decision_close():
    close = np.array([100.0, 50.0, 80.0, 110.0])
    assert asset_return(close, 1, 3) == pytest.approx(110.0 / 50.0 - 1.0, rel=0, abs=0)


def test_trim_keeps_rows_up_to_the_first_termination():
    tel = {"terminated": np.array([False, False, True, False, True]), "t": np.arange(5)}
    out = trim_at_termination(tel)
    np.testing.assert_array_equal(out["t"], [0, 1, 2])
    whole = trim_at_termination({**tel, "terminated": np.zeros(5, bool)})
    np.testing.assert_array_equal(whole["t"], np.arange(5))


@pytest.fixture(scope="module")
def small(btc_oct_bars):
    """A 3,000-bar slice with one feature (the close's log return) so observations vary."""
    bars = bar_slice(btc_oct_bars, 0, 3000)
    close = np.asarray(bars["close"], np.float64)
    features = np.zeros((close.size, 1), np.float32)
    features[1:, 0] = np.diff(np.log(close)) * 1e3
    return bars, features


def test_the_random_baseline_draws_each_step_from_a_split_of_the_carried_key(small):
    """The key rule the evaluation's recorded random baseline depends on: ``key, k = split(key)`` per step,
    the action ``randint(k, (), 0, A)``."""
    bars, features = small
    env, params = from_arrays(bars, features, warmup=1, episode_length=60, random_start=False)
    key = jax.random.key(7)
    out = run_episode(env, params, Uniform(5), key)
    expected = []
    for _ in range(60):
        key, k = jax.random.split(key)
        expected.append(int(jax.random.randint(k, (), 0, 5)))
    np.testing.assert_array_equal(out["action"], expected)


def test_replay_and_a_constant_policy_run_the_same_episode(small):
    """replay (actions given) and run_episode (a policy) go through the same runner."""
    bars, features = small
    start, n = 200, 800
    env, params = from_arrays(bars, features, warmup=1, episode_length=n, random_start=False,
                              split=(start, len(bars["close"])), trailing_stop=True, stop_loss_bps=20.0)
    episode = run_episode(env, params, Constant(4), jax.random.key(0))
    replayed = replay(bars, np.full(n, 4, np.int32), start=start, trailing_stop=True, stop_loss_bps=20.0)
    assert len(episode["t"]) == len(replayed["t"]) == n and int(episode["t"][0]) == start
    assert set(replayed) == {*TELEMETRY, "terminated"}
    for name in replayed:
        np.testing.assert_array_equal(episode[name], replayed[name], err_msg=name)
    assert (episode["action"] == 4).all() and episode["stop_hit"].any()


def test_a_replayed_sequence_is_followed_step_by_step(small):
    bars, features = small
    actions = np.array([4, 4, 0, 2, 3, 1], np.int32)
    env, params = from_arrays(bars, features, warmup=1, episode_length=actions.size, random_start=False)
    out = run_episode(env, params, Replayed(jnp.asarray(actions)), jax.random.key(0))
    np.testing.assert_array_equal(out["action"], actions)


def test_stacked_policies_under_vmap_trade_as_each_policy_alone(small):
    """The evaluation's program (every policy of the stack at once, the policy a traced index, the account
    frozen after a termination) gives each policy's own episode, including the kill switch's cut; greedy
    is a fixed linear actor here."""
    bars, features = small
    env, params = from_arrays(bars, features, warmup=1, episode_length=2000, random_start=False,
                              max_drawdown=0.03)
    weights = jnp.asarray(np.random.default_rng(0).normal(size=(5, env.obs_size)), jnp.float32)

    def logits(obs):
        return weights @ obs

    bh, flat = buy_and_hold_index(np.asarray(params.position_buckets)), 2
    start = int(params.start_min)

    def one(index, key):
        return rollout(env, params, select(stack(5, jnp.asarray(bh), jnp.asarray(flat), logits), index), key,
                       jnp.asarray(start), 2000, freeze=True)

    keys = jax.random.split(jax.random.key(3), len(POLICIES))
    together = jax.device_get(jax.jit(jax.vmap(one))(jnp.arange(len(POLICIES)), keys))
    alone = stack(5, bh, flat, logits)
    ended = []
    for j, name in enumerate(POLICIES):
        mine = trim_at_termination({k: v[j] for k, v in together.items()})
        theirs = run_episode(env, params, select(alone, j), keys[j], n_steps=2000)
        assert len(mine["t"]) == len(theirs["t"]), name
        np.testing.assert_array_equal(mine["action"], theirs["action"], err_msg=name)
        np.testing.assert_allclose(mine["equity"], theirs["equity"], rtol=1e-6, err_msg=name)
        ended.append(bool(mine["terminated"][-1]))
    assert len(set(together["action"][0].tolist())) > 1  # the greedy actor really trades
    assert ended[2] is False and any(ended)  # flat never stops; some policy meets the kill switch
