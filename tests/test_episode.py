"""`tradelab episode`: one instrumented episode -> telemetry.parquet, summary.json, equity.png."""

from __future__ import annotations

import json

import pandas as pd
import pytest

from tradelab_jax import cli
from tradelab_jax.env import TELEMETRY
from tradelab_jax.episode import main

DATASET = "binance_btcusdt_1m_2025-10"


def _run(tmp_path, *args):
    out = tmp_path / "out"
    argv = ["--dataset", DATASET, "--split", "test", "--out", str(out), "--episode-length", "400", *args]
    assert main(argv) == 0
    return out, json.loads((out / "summary.json").read_text())


def test_buy_and_hold_episode_writes_three_outputs(tmp_path, capsys):
    out, summary = _run(tmp_path, "--policy", "buy_and_hold", "--knob", "trailing_stop=true")
    assert "total return" in capsys.readouterr().out
    frame = pd.read_parquet(out / "telemetry.parquet")
    assert len(frame) == summary["metrics"]["steps"] == 400
    assert {"split", "policy", "ts", "close", "action", "terminated", *TELEMETRY} <= set(frame.columns)
    bars = pd.read_parquet(out / "telemetry.parquet", columns=["t", "ts"])
    assert (bars["ts"].diff().dropna() == 60_000).all()  # consecutive 1m bars (of the step's bar t+1)
    assert (frame["action"] == 4).all() and frame["t"].is_monotonic_increasing
    assert summary["knobs"]["trailing_stop"] is True and summary["knobs"]["maker_fee"] == 0.0002
    for key in ("total_return", "sharpe", "max_drawdown", "trades", "fees_paid", "stops_hit"):
        assert key in summary["metrics"]
    assert summary["metrics"]["exposure"] > 0.5
    assert (out / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_flat_and_seeded_random_policies(tmp_path):
    _, flat = _run(tmp_path / "flat", "--policy", "flat")
    assert flat["metrics"]["total_return"] == 0.0 and flat["metrics"]["trades"] == 0
    _, first = _run(tmp_path / "a", "--policy", "random", "--seed", "3")
    _, again = _run(tmp_path / "b", "--policy", "random", "--seed", "3")
    assert first["metrics"] == again["metrics"]
    assert first["metrics"]["trades"] > 50


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--policy", "best"], "expected random, flat, buy_and_hold or an existing run directory"),
     (["--policy", "{tmp}"], "is not a run directory: it has no config.yaml"),
     (["--policy", "flat", "--knob", "leverage=2"], "unknown knob 'leverage'"),
     (["--policy", "flat", "--knob", "risk_pct"], "expected NAME=VALUE"),
     (["--policy", "flat", "--knob", "random_start=true"], "set by the episode command")],
)
def test_user_errors(tmp_path, capsys, args, message):
    args = [a.replace("{tmp}", str(tmp_path)) for a in args]
    code = cli.main(["episode", "--dataset", DATASET, "--out", str(tmp_path / "o"), *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_trained_run_dir_policy_replays_the_trainers_test_evaluation(tmp_path):
    """`--policy RUN_DIR` rebuilds the agent from its checkpoint; over the whole test split its greedy
    actions and equity must equal the trainer's own evaluation of that agent (telemetry.parquet), and its
    summary the split's eval_summary.json. The run's episode_length (8 bars) is far shorter than the test
    split: it scales the agent's bars_in_position observation but must not cut the episode."""
    import numpy as np

    from tradelab_jax import runs, train

    assert train.main([
        f"data.id={DATASET}", "env.episode_length=8", "agent.num_envs=2", "agent.num_steps=16",
        "agent.total_timesteps=64", "agent.num_minibatches=1", "agent.update_epochs=1",
        "network.hidden_sizes=[8]", "run.chunk_updates=2", "run.progress=false", "run.print_summary=false",
        f"run.outputs={tmp_path / 'outputs'}", "run.tag=ep", "seed=4",
    ]) == 0
    run_dir = next(runs.iter_runs(tmp_path / "outputs"))
    out = tmp_path / "episode"
    assert main(["--split", "test", "--policy", str(run_dir), "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dataset"] == DATASET and summary["policy"] == str(run_dir)
    assert summary["knobs"]["episode_length"] == 8
    mine = pd.read_parquet(out / "telemetry.parquet")
    theirs = pd.read_parquet(run_dir / "telemetry.parquet")
    theirs = theirs[(theirs["split"] == "test") & (theirs["policy"] == "agent")]
    assert len(mine) == len(theirs) > 1000
    np.testing.assert_array_equal(mine["t"].to_numpy(), theirs["t"].to_numpy())
    np.testing.assert_array_equal(mine["action"].to_numpy(), theirs["action"].to_numpy())
    np.testing.assert_allclose(mine["equity"].to_numpy(), theirs["equity"].to_numpy(), rtol=1e-6)
    test = json.loads((run_dir / "eval_summary.json").read_text())["splits"]["test"]
    agent, metrics = test["agent"], summary["metrics"]
    assert agent["trades"] > 0  # the agent trades, so bars_in_position matters
    assert (metrics["steps"], metrics["trades"]) == (agent["steps"], agent["trades"])
    assert metrics["fees_paid"] == pytest.approx(agent["fees_paid"], rel=1e-9)
    assert metrics["total_return"] == pytest.approx(agent["total_return"], rel=1e-9)
    assert summary["asset_return"] == pytest.approx(test["asset_return"], rel=1e-12)
    assert summary["terminated"] == agent["terminated"]
    assert summary["first_decision"] == test["first_bar"]  # one timestamp format (data.schema.ms_to_iso)
    if not agent["terminated"]:
        assert summary["last_mark"] == test["last_bar"]


def test_buy_and_hold_means_the_bucket_nearest_plus_one_in_episode_evaluation_and_parity(tmp_path):
    """With buckets [-1, 0, 1, 2] buy_and_hold is bucket index 2 (+1 risk unit), not the levered +2 that the
    largest bucket would be: in the trainer's evaluation, in `tradelab episode` over the same split, and in
    parity's re-run of the run directory, whose buy_and_hold rows must match exactly."""
    from tradelab_jax import runs, train
    from tradelab_jax.parity import checks, worker

    assert train.main([
        f"data.id={DATASET}", "env.position_buckets=[-1.0,0.0,1.0,2.0]", "agent.num_envs=2",
        "agent.num_steps=16", "agent.total_timesteps=32", "agent.num_minibatches=1", "agent.update_epochs=1",
        "network.hidden_sizes=[8]", "run.progress=false", "run.print_summary=false", "run.eval_splits=[test]",
        f"run.outputs={tmp_path / 'outputs'}", "run.tag=bh", "seed=2",
    ]) == 0
    run_dir = next(runs.iter_runs(tmp_path / "outputs"))
    evaluation = runs.read_eval_summary(run_dir)
    assert evaluation["policies"]["buy_and_hold"].startswith("always bucket index 2 (target +1 risk units)")
    theirs = pd.read_parquet(run_dir / "telemetry.parquet")
    theirs = theirs[(theirs["split"] == "test") & (theirs["policy"] == "buy_and_hold")]
    assert set(theirs["action"]) == {2}

    out = tmp_path / "episode"
    assert main(["--dataset", DATASET, "--split", "test", "--policy", "buy_and_hold", "--out", str(out),
                 "--knob", "position_buckets=[-1, 0, 1, 2]"]) == 0
    mine = pd.read_parquet(out / "telemetry.parquet")
    assert set(mine["action"]) == {2}
    assert len(mine) == len(theirs) > 1000
    import numpy as np

    np.testing.assert_array_equal(mine["t"].to_numpy(), theirs["t"].to_numpy())
    np.testing.assert_allclose(mine["equity"].to_numpy(), theirs["equity"].to_numpy(), rtol=1e-6)
    metrics = json.loads((out / "summary.json").read_text())["metrics"]
    bh = evaluation["splits"]["test"]["buy_and_hold"]
    assert (metrics["steps"], metrics["trades"]) == (bh["steps"], bh["trades"]) and bh["trades"] > 0
    assert metrics["total_return"] == pytest.approx(bh["total_return"], rel=1e-9)

    rerun = tmp_path / "parity_rerun"
    assert worker.rerun(run_dir, rerun)["status"] == "done"
    rows = [r for r in checks.compare_eval(rerun, run_dir, "exact") if "buy_and_hold" in r.name]
    assert rows and all(r.ok and r.mismatches == 0 for r in rows), rows
    assert runs.read_eval_summary(rerun)["policies"]["buy_and_hold"] == evaluation["policies"]["buy_and_hold"]


def test_an_episode_the_kill_switch_ended_says_so(tmp_path, capsys):
    """A 1 % max_drawdown stops a fee-paying random policy within 400 steps: the printed summary and
    summary.json say the kill switch ended it, when, and at what equity below which peak (§5)."""
    out, summary = _run(tmp_path, "--policy", "random", "--knob", "max_drawdown=0.01")
    printed = capsys.readouterr().out
    kill = summary["kill_switch"]
    steps = summary["metrics"]["steps"]
    frame = pd.read_parquet(out / "telemetry.parquet")
    assert summary["terminated"] and steps == len(frame) < 400 and frame["terminated"].iloc[-1]
    assert kill["steps"] == steps and kill["at"] == summary["last_mark"] and kill["max_drawdown"] == 0.01
    peak = max(summary["knobs"]["initial_cash"], frame["equity"].max())
    assert kill["peak_equity"] == pytest.approx(peak)
    assert kill["equity"] == pytest.approx(frame["equity"].iloc[-1])
    assert kill["equity"] <= kill["peak_equity"] * (1 - 0.01)
    below = 100 * (1 - kill["equity"] / kill["peak_equity"])
    assert (f"the kill switch ended the episode at {kill['at']} after {steps} steps: equity "
            f"{kill['equity']:.2f} is {below:.2f}% below its peak {kill['peak_equity']:.2f} (max_drawdown 1%)"
            in printed)
    _, held = _run(tmp_path / "bh", "--policy", "buy_and_hold")
    assert held["kill_switch"] is None and "kill switch" not in capsys.readouterr().out
