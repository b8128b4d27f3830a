"""Choosing what to train and test on (issue 11 item 3): ``data.start``/``data.end`` and ``data.split.*``.

A sub-period and split fractions go from the command line to the env and into ``eval_summary.json``
(``data_splits``); bad values are one sentence (exit 2) before any directory exists. The oracle for the
ranges is the dataset itself, read back with ``data.load`` and cut by hand.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from tradelab_jax import data, runs, train
from tradelab_jax.data.schema import ms_to_iso, parse_time
from tradelab_jax.errors import UserError

from .helpers import only_child

TINY_TRADING = [
    "agent.num_envs=2", "agent.num_steps=16", "agent.total_timesteps=64", "agent.num_minibatches=1",
    "agent.update_epochs=1", "network.hidden_sizes=[8]", "run.chunk_updates=2", "run.progress=false",
    "run.print_summary=false", "env.episode_length=64",
]


def _compose(overrides):
    from .test_config_errors import _compose as compose

    return compose(overrides)


def test_the_default_split_is_the_envs_70_15_15_cut():
    from tradelab_jax.training import envs

    record = envs.split_record(_compose([]))
    market = data.load("binance_btcusdt_1m")
    n = len(market)
    assert record["period"] == [ms_to_iso(int(market.ts[0])), ms_to_iso(int(market.ts[-1])), n]
    cuts = [0, round(n * 0.7), round(n * 0.85), n]
    for i, name in enumerate(("train", "val", "test")):
        lo, hi = cuts[i], cuts[i + 1]
        assert record[name] == [ms_to_iso(int(market.ts[lo])), ms_to_iso(int(market.ts[hi - 1])), hi - lo]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (["data.start=2025-06-08", "data.end=2025-06-01"],
         "data.start 2025-06-08T00:00:00Z must be before data.end 2025-06-01T00:00:00Z"),
        (["data.start=2030-01-01"], "the sub-period from 2030-01-01T00:00:00Z (data.start) to the last bar "
                                    "(data.end) holds 0 bar(s) of binance_btcusdt_1m, which covers"),
        (["data.end=yesterday"], "invalid data.end 'yesterday': give an ISO date or date-time"),
        (["data.split.train=0.9", "data.split.val=0.1"],
         "data.split.train=0.9 and data.split.val=0.1 must leave bars to train and test on"),
        (["data.split.train=1.5"], "data.split.train must be a fraction of the bars in [0, 1), got 1.5"),
        (["data.split.val=-0.1"], "data.split.val must be a fraction of the bars in [0, 1), got -0.1"),
        (["data.split.val_start=2025-07-01"],
         "data.split.val_start and data.split.test_start go together"),
        (["data.split.val_start=2025-07-01", "data.split.test_start=2025-06-01"],
         "split dates must be in order"),
        # a split with no tradable bar after the warm-up (59 bars of the default features)
        (["data.split.val_start=2025-05-20T00:30", "data.split.test_start=2025-08-01"],
         "the train split (30 bars, 2025-05-20T00:00:00Z to 2025-05-20T00:29:00Z) has no bar to trade after "
         "the feature warm-up (59 bars)"),
        (["data.start=2025-06-01", "data.end=2025-06-01T00:40", "data.split.train=0.5",
          "data.split.val=0.49"],
         "the test split of the 40 bars is empty with data.split.train=0.5 and data.split.val=0.49"),
        (["data.start=2025-06-01", "data.end=2025-06-01T00:40", "data.split.train=0.5", "data.split.val=0.47",
          "env.window=3"],
         "the test split (1 bars, 2025-06-01T00:39:00Z to 2025-06-01T00:39:00Z) has no bar to trade"),
    ],
)
def test_bad_periods_and_splits_are_one_sentence_before_any_directory(overrides, expected, outputs):
    with pytest.raises(UserError) as info:
        train.main([*overrides, f"run.outputs={outputs}"])
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
    assert not outputs.exists()


def test_the_cli_refuses_a_bad_sub_period_with_exit_2(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "train", "data.start=2025-06-08",
                           "data.end=2025-06-01", f"run.outputs={tmp_path / 'out'}"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == ["error: data.start 2025-06-08T00:00:00Z must be before data.end 2025-06-01T00:00:00Z"]
    assert not (tmp_path / "out").exists()


def test_a_sub_period_and_split_train_end_to_end(tmp_path):
    out = tmp_path / "out"
    proc = subprocess.run(
        [sys.executable, "-m", "tradelab_jax.train", *TINY_TRADING, "data.start=2025-06-01",
         "data.end=2025-06-04T12:00", "data.split.train=0.6", f"run.outputs={out}", "run.tag=period"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    run_dir = only_child(out)
    config = runs.read_config(run_dir)
    assert config["data"]["start"] == "2025-06-01" and config["data"]["split"]["train"] == 0.6
    summary = runs.read_eval_summary(run_dir)

    # The oracle: the bars of [start, end) read back from the lake and cut 60/15/25 by hand.
    market = data.load("binance_btcusdt_1m", start="2025-06-01", end="2025-06-04T12:00")
    ts = np.asarray(market.ts)
    n = len(ts)
    assert ts[0] == parse_time("2025-06-01") and ts[-1] < parse_time("2025-06-04T12:00")
    cuts = [0, round(n * 0.6), round(n * 0.75), n]
    want = {"period": [ms_to_iso(int(ts[0])), ms_to_iso(int(ts[-1])), n]}
    for i, name in enumerate(("train", "val", "test")):
        want[name] = [ms_to_iso(int(ts[cuts[i]])), ms_to_iso(int(ts[cuts[i + 1] - 1])), cuts[i + 1] - cuts[i]]
    assert summary["data_splits"] == want

    # Every evaluated step lies in its split: the first decision at the split's first bar (the features'
    # warm-up is covered by the history before the sub-period), the last fill in its last bar.
    tel = pd.read_parquet(run_dir / runs.TELEMETRY_FILE)
    for i, name in ((1, "val"), (2, "test")):
        table = summary["splits"][name]
        assert table["first_bar"] == want[name][0] and table["last_bar"] == want[name][1]
        assert table["bars"] == want[name][2] - 1
        steps = tel[tel["split"] == name]
        assert steps["ts"].min() == ts[cuts[i] + 1] and steps["ts"].max() == ts[cuts[i + 1] - 1]
