"""The fold arithmetic of cross-validation over time (training/folds.py; issue 13 item 1).

The oracle is brute force: for every possible training start, the bars its episode decides on, the bars it
reads prices from and the bars its observations are computed from are listed one by one and compared with
each fold's test window and embargo. The folds' start ranges must allow no start that touches them, and (for
purged k-fold without an extra embargo) exclude no start that does not.
"""

from __future__ import annotations

import itertools
import json

import jax
import numpy as np
import pytest

from tradelab_jax.errors import UserError
from tradelab_jax.training.folds import bars_of, guard_bars, make_folds

N, L, WARMUP, WINDOW = 3000, 100, 59, 3


def reads(s: int, episode_length: int = L, warmup: int = WARMUP, window: int = WINDOW) -> tuple[set, set]:
    """``(decision and price bars, observation source bars)`` of an episode starting at decision bar ``s``.

    Decisions at ``s .. s+L-1``, each filled and marked in the next bar (prices up to ``s+L``); the
    observations at ``s .. s+L`` (the last one is the bootstrap value's) hold feature rows
    ``t-window+1 .. t``, and each row reads bars ``row-warmup .. row``.
    """
    traded = set(range(s, s + episode_length + 1))
    observed = set(range(s - window + 1 - warmup, s + episode_length + 1))
    return traded, observed


def leaks(s: int, fold) -> bool:
    """True when an episode from ``s`` decides in, prices from, or observes a bar of the fold's test window,
    or decides inside its embargo."""
    lo, hi = fold.test
    test = set(range(lo, hi))
    embargo = set(range(*fold.embargo))
    traded, observed = reads(s)
    return bool(traded & (test | embargo) or observed & test)


def possible_starts(n: int = N) -> range:
    """Every start of a whole episode with every observation row warmed up."""
    return range(guard_bars(WARMUP, WINDOW), n - 1 - L + 1)


@pytest.mark.parametrize("folds", [2, 3, 5])
def test_purged_kfold_windows_tile_the_bars_after_the_warm_up(folds):
    out = make_folds("purged_kfold", N, folds=folds, warmup=WARMUP, window=WINDOW, episode_length=L)
    assert [f.index for f in out] == list(range(folds))
    first = guard_bars(WARMUP, WINDOW)
    assert out[0].test[0] == first and out[-1].test[1] == N
    for a, b in itertools.pairwise(out):
        assert a.test[1] == b.test[0]  # disjoint and contiguous
    for f in out:
        assert f.test[1] - f.test[0] >= (N - first) // folds
        assert f.embargo == (f.test[1], min(N, f.test[1] + guard_bars(WARMUP, WINDOW)))


@pytest.mark.parametrize("embargo_bars", [0, 7, 300])
def test_purged_kfold_allows_exactly_the_starts_that_cannot_leak(embargo_bars):
    out = make_folds("purged_kfold", N, folds=4, warmup=WARMUP, window=WINDOW, episode_length=L,
                     embargo_bars=embargo_bars)
    for f in out:
        assert f.embargo[1] - f.embargo[0] == min(N - f.test[1], max(embargo_bars, WARMUP + WINDOW - 1))
        allowed = set(f.allowed_starts())
        clean = {s for s in possible_starts() if not leaks(s, f)}
        assert allowed <= clean, sorted(allowed - clean)[:5]
        # Nothing is thrown away beyond the purge and the embargo: the clean starts are all allowed.
        assert allowed == clean, sorted(clean - allowed)[:5]
        # The hole is the purge before the test window, the window itself and the embargo.
        lo = f.test[0]
        if f.hole_lo < f.hole_hi:
            assert f.hole_lo == lo - L and f.hole_hi == f.embargo[1]
        for s in allowed:
            assert s + L <= f.last_bar


@pytest.mark.parametrize("mode", ["rolling", "expanding"])
@pytest.mark.parametrize("embargo_bars", [0, 50])
def test_walk_forward_trains_only_before_each_test_window(mode, embargo_bars):
    out = make_folds("walk_forward", N, folds=4, warmup=WARMUP, window=WINDOW, episode_length=L,
                     test=400, train=700 if mode == "rolling" else None, embargo_bars=embargo_bars,
                     mode=mode)
    assert [f.test for f in out] == [(N - 1600 + 400 * k, N - 1200 + 400 * k) for k in range(4)]
    for f in out:
        lo, _ = f.test
        assert f.hole_lo == f.hole_hi  # one contiguous range of starts
        allowed = f.allowed_starts()
        assert min(allowed) == (max(guard_bars(WARMUP, WINDOW), lo - embargo_bars - 700) if mode == "rolling"
                                else guard_bars(WARMUP, WINDOW))
        # The last start's episode reads prices up to the bar before the gap of embargo_bars.
        assert max(allowed) + L == lo - embargo_bars - 1 == f.last_bar
        for s in (allowed[0], allowed[-1]):
            assert not leaks(s, f)
        assert all(max(reads(s)[0]) < lo - embargo_bars for s in allowed)


def test_walk_forward_default_lengths_are_shares_of_the_bars():
    out = make_folds("walk_forward", N, folds=5, warmup=WARMUP, window=WINDOW, episode_length=L)
    assert {f.test[1] - f.test[0] for f in out} == {N // 6}
    assert out[-1].test[1] == N


def test_lengths_take_bars_or_fractions():
    assert bars_of(250, 1000, "cv.test") == 250
    assert bars_of(0.25, 1000, "cv.test") == 250
    assert bars_of(250.0, 1000, "cv.test") == 250
    for bad in (0, -3, 1.5, True):
        with pytest.raises(UserError, match=r"cv\.test must be a number of bars"):
            bars_of(bad, 1000, "cv.test")


@pytest.mark.parametrize(
    ("kind", "kwargs", "expected"),
    [
        ("none", {}, "cv kind must be one of walk_forward, purged_kfold to make folds"),
        ("purged_kfold", {"folds": 1}, "cv.folds must be an integer >= 2, got 1"),
        ("purged_kfold", {"folds": 2, "embargo_bars": -1}, "cv.embargo_bars must be an integer >= 0"),
        ("purged_kfold", {"folds": 2000}, "purged k-fold with cv.folds=2000 does not fit 3000 bars"),
        ("walk_forward", {"folds": 3, "mode": "sideways"}, "cv.mode must be one of rolling, expanding"),
        ("walk_forward", {"folds": 3, "mode": "expanding", "train": 500},
         "cv.train=500 is the length of a rolling window; expanding walk-forward trains on every bar"),
        ("walk_forward", {"folds": 3, "test": 900}, "walk-forward with cv.folds=3 does not fit 3000 bars"),
        ("walk_forward", {"folds": 3, "test": 500, "train": 1600},
         "walk-forward with cv.folds=3 does not fit 3000 bars: fold 0 needs a training range"),
    ],
)
def test_folds_that_do_not_fit_are_one_sentence(kind, kwargs, expected):
    with pytest.raises(UserError) as info:
        make_folds(kind, N, warmup=WARMUP, window=WINDOW, episode_length=L, **{"folds": 2, **kwargs})
    assert expected in str(info.value) and "\n" not in str(info.value)


def test_sampled_starts_stay_in_the_allowed_starts_and_reach_both_sides_of_the_hole():
    from tradelab_jax.env import from_arrays
    from tradelab_jax.env.trading import sample_start

    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 1e-3, N)))
    bars = {"open": close, "high": close * 1.001, "low": close * 0.999, "close": close}
    _, params = from_arrays(bars, rng.normal(size=(N, 2)), warmup=WARMUP, window=WINDOW, episode_length=L)
    fold = make_folds("purged_kfold", N, folds=3, warmup=WARMUP, window=WINDOW, episode_length=L)[1]
    params = params.replace(**{name: params.start_min * 0 + getattr(fold, name)
                               for name in ("start_min", "start_max", "last_bar", "hole_lo", "hole_hi")})
    keys = jax.random.split(jax.random.PRNGKey(1), 20_000)
    starts = np.asarray(jax.vmap(sample_start, in_axes=(0, None))(keys, params))
    allowed = set(fold.allowed_starts())
    assert set(starts.tolist()) <= allowed
    assert not any(leaks(int(s), fold) for s in np.unique(starts))
    below, above = starts[starts < fold.hole_lo], starts[starts >= fold.hole_hi]
    assert below.size and above.size
    # Uniform over the allowed starts: each side gets its share (binomial, 6 sigma).
    share = (fold.hole_lo - fold.start_min) / len(allowed)
    sigma = np.sqrt(share * (1 - share) / starts.size)
    assert abs(below.size / starts.size - share) < 6 * sigma
    assert starts.min() == fold.start_min and starts.max() == fold.start_max


# ---------------------------------------------------------------------------------------------------------
# Folds as a plan axis: F folds x S seeds in one compiled program, each evaluated on its own test window.

CV_RUN = [
    "agent.num_envs=4", "agent.num_steps=16", "agent.total_timesteps=128", "agent.num_minibatches=1",
    "agent.update_epochs=1", "run.chunk_updates=2", "run.progress=false",
    "run.print_summary=false", "env.episode_length=64", "data.start=2025-06-01", "data.end=2025-06-03",
    "env.window=2", "sweep.seed=[0,1]",
]


def _plain(overrides):
    from .test_config_errors import _compose

    return _compose(overrides)


def _visited_bars(env, steps: int = 400, envs: int = 64):
    """A jitted ``fn(params) -> decision bars``: the env run as training runs it (reset, then ``steps``
    auto-resetting steps of random actions over ``envs`` environments)."""

    @jax.jit
    def run(params):
        keys = jax.random.split(jax.random.PRNGKey(7), envs)
        _, state = jax.vmap(env.reset, in_axes=(0, None))(keys, params)
        n_actions = env.num_actions

        def step(state, key):
            k_act, k_step = jax.random.split(key)
            actions = jax.random.randint(k_act, (envs,), 0, n_actions)
            _, state, _, _, _, _ = jax.vmap(env.step, in_axes=(0, 0, 0, None))(
                jax.random.split(k_step, envs), state, actions, params)
            return state, state.t

        _, ts = jax.lax.scan(step, state, jax.random.split(jax.random.PRNGKey(8), steps))
        return state.t, ts

    return run


def _fold_leaks_in_training(run, window, warmup, fold, params_i) -> list[str]:
    """Every decision bar, fill bar or observation source bar of the env run with one point's training
    params (``run`` from :func:`_visited_bars`) that touches the fold's test window or embargo."""
    first, ts = run(params_i)
    decided = np.unique(np.concatenate([np.asarray(first), np.asarray(ts).ravel()]))
    lo, hi = fold.test
    e_lo, e_hi = fold.embargo
    bad = [f"decision at {t}" for t in decided if lo <= t < hi or e_lo <= t < e_hi]
    # A decision at t fills in t+1 (before a test window that bar must be outside it too) and observes the
    # feature rows t-window+1..t, each computed from bars row-warmup..row.
    bad += [f"fill at {t + 1}" for t in decided if lo <= t + 1 < hi]
    bad += [f"observation at {t}" for t in decided if t >= hi and t - window + 1 - warmup < hi]
    assert decided.size > 50  # the sample covers many starts
    return bad


def fold_lookback(plan) -> int:
    from tradelab_jax.training.envs import dataset

    return dataset(plan.base).lookback


# Each case its own network width: a second case of the same shapes would reuse the first one's program.
@pytest.mark.parametrize(("kind", "extra"), [("purged_kfold", ["network.hidden_sizes=[7]"]),
                                             ("walk_forward", ["cv.train=600", "network.hidden_sizes=[6]"])])
def test_folds_train_in_one_program_without_touching_their_test_windows(kind, extra, tmp_path):
    from tradelab_jax import runs
    from tradelab_jax.training import session
    from tradelab_jax.training.envs import batch_env_params, folds_of, make_env

    plain = _plain([*CV_RUN, f"cv={kind}", "cv.folds=3", "cv.embargo_bars=5", *extra])
    folds = folds_of(plain)
    out = session.train_config(plain, tmp_path / kind)
    assert out["status"] == "done"
    # 3 folds x 2 seeds: one compiled chunk program (every chunk has the same size here).
    assert out["result"].timings["compiles"] == 1
    root = tmp_path / kind
    packed = json.loads((root / runs.PACKED_FILE).read_text())
    assert packed["keys"] == ["fold", "seed"]
    assert [(p["fold"], p["seed"]) for p in packed["points"]] == [(f, s) for f in range(3) for s in (0, 1)]
    assert [f["test"] for f in packed["folds"]] == [list(f.test) for f in folds]

    from tradelab_jax.training.plan import plan_resume

    plan = plan_resume(root)
    env, base = make_env(plan.base, "train")
    batched, axes = batch_env_params(plan.configs, env, base, swept=plan.swept("env"))
    run = _visited_bars(env)
    assert all(getattr(axes, f) == 0 for f in ("start_min", "start_max", "last_bar", "hole_lo", "hole_hi"))
    final = out["result"].state  # [S]-stacked host runner state: where each point's envs stopped
    for i, point in enumerate(plan.points):
        fold = folds[point.values["fold"]]
        assert point.config["cv"]["fold"] == fold.index
        params_i = jax.tree.map(lambda x, a, i=i: x[i] if a == 0 else x, batched, axes)
        assert (int(params_i.start_min), int(params_i.start_max), int(params_i.hole_lo),
                int(params_i.hole_hi), int(params_i.last_bar)) == (
            fold.start_min, fold.start_max, fold.hole_lo, fold.hole_hi, fold.last_bar)
        assert _fold_leaks_in_training(run, env.window, fold_lookback(plan), fold, params_i) == []
        t_end = np.asarray(final.env_state.t[i])
        assert not np.any((t_end >= fold.test[0]) & (t_end < max(fold.test[1], fold.embargo[1])))
        # Evaluated on its own test window, as the `test` split, with the baselines.
        summary = runs.read_eval_summary(point.dir)
        assert list(summary["splits"]) == ["test"]
        table = summary["splits"]["test"]
        assert table["bars"] == fold.test[1] - fold.test[0] - 1
        assert {"agent", "buy_and_hold", "flat", "random"} <= set(table)
        assert summary["data_splits"]["fold"]["test"] == list(fold.test)
        assert summary["data_splits"]["test"][2] == fold.test[1] - fold.test[0]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["cv=purged_kfold", "cv.folds=3", "cv.fold=3"], "invalid cv.fold=3: one fold of the cv.folds=3 to "
                                                        "train alone, 0 to 2"),
        (["cv.fold=2"], "cv.fold=2 picks a fold of a cross-validation, and cv is none"),
        (["cv=walk_forward", "cv.mode=sideways"], "invalid cv.mode 'sideways': use one of rolling, "
                                                  "expanding"),
        (["cv.kind=loo"], "invalid cv.kind 'loo': use one of none, walk_forward, purged_kfold"),
        (["cv=purged_kfold", "cv.folds=1"], "cv.folds must be an integer >= 2, got 1"),
        (["cv=walk_forward", "cv.folds=3", "cv.test=0.4"], "walk-forward with cv.folds=3 does not fit"),
        (["cv=purged_kfold", "env=gymnax"], "cv.kind=purged_kfold cuts a dataset's bars into folds"),
    ],
)
def test_bad_cv_values_are_one_sentence_before_any_directory(overrides, expected, outputs):
    from tradelab_jax import train

    with pytest.raises(UserError) as info:
        train.main([*overrides, f"run.outputs={outputs}"])
    assert expected in str(info.value) and "\n" not in str(info.value)
    assert not outputs.exists()


def test_one_fold_trained_alone_has_the_whole_runs_windows(tmp_path):
    """``cv.fold=K`` trains fold K alone (what ``tradelab bench folds`` runs once per process): one point per
    seed, with exactly the bounds fold K's points get in the run of every fold."""
    from tradelab_jax.training.envs import batch_env_params, folds_of, make_env
    from tradelab_jax.training.plan import plan_run

    plain = _plain([*CV_RUN, "cv=purged_kfold", "cv.folds=3", "cv.fold=1"])
    plan = plan_run(plain, tmp_path / "one")
    assert [p.values for p in plan.points] == [{"fold": 1, "seed": 0}, {"fold": 1, "seed": 1}]
    fold = folds_of(_plain([*CV_RUN, "cv=purged_kfold", "cv.folds=3"]))[1]
    env, base = make_env(plan.base, "train")
    batched, axes = batch_env_params(plan.configs, env, base, swept=plan.swept("env"))
    for i in range(2):
        p = jax.tree.map(lambda x, a, i=i: x[i] if a == 0 else x, batched, axes)
        assert (int(p.start_min), int(p.start_max), int(p.hole_lo), int(p.hole_hi), int(p.last_bar)) == (
            fold.start_min, fold.start_max, fold.hole_lo, fold.hole_hi, fold.last_bar)
