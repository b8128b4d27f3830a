"""`tradelab check lookahead --run RUN_DIR`: a trained agent's action probabilities up to a cut bar are
bit-identical whatever follows the cut, and a feature that starts to peek is caught through the policy."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from tradelab_jax import data, runs
from tradelab_jax import features as fs
from tradelab_jax.checks import cli, lookahead

DATASET = "binance_btcusdt_1m_2025-10"  # the smaller embedded dataset
TINY = [
    f"data.id={DATASET}", "env.episode_length=32", "agent.num_envs=2", "agent.num_steps=16",
    "agent.total_timesteps=256", "agent.num_minibatches=1", "agent.update_epochs=1",
    "network.hidden_sizes=[8]", "run.chunk_updates=4", "run.progress=false", "run.print_summary=false",
    "run.eval=false", "run.loggers=[]", "env.window=2",
]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, scaled) -> Path:
    """A real trading run (zscore and vwap_distance features, a 2-row window) trained by `tradelab train`."""
    outputs = tmp_path_factory.mktemp("outputs")
    cmd = [sys.executable, "-m", "tradelab_jax.cli", "train", *TINY, f"run.outputs={outputs}"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=scaled(240))
    assert proc.returncode == 0, proc.stderr
    return next(runs.iter_runs(outputs))


@pytest.fixture(scope="module")
def bars() -> dict[str, np.ndarray]:
    return {k: v[:3000] for k, v in data.load(DATASET).bars.items()}


def test_policy_probabilities_do_not_move_and_the_command_says_so(run_dir, capsys):
    assert cli.main(["lookahead", "--run", str(run_dir), "--bars", "3000", "--cuts", "2"]) == 0
    out = capsys.readouterr().out
    row = next(line for line in out.splitlines() if line.startswith(f"policy {run_dir.name}"))
    assert row.split()[-1] == "ok" and int(row.split()[-2]) > 0  # bars compared
    assert {"zscore_30", "vwap_distance_60_pct"} <= {line.split()[0] for line in out.splitlines()[1:]}


def test_the_episode_records_the_policys_own_probabilities(run_dir, bars):
    """What is compared is the greedy agent's own episode: rows of probabilities over the buckets whose
    argmax is the action the state then took."""
    from tradelab_jax.episode import load_policy, run_settings

    settings = run_settings(run_dir)
    matrix = fs.compute_features(bars, settings["features"])
    env, params = lookahead.from_arrays(bars, np.asarray(matrix.values), warmup=matrix.warmup, window=2,
                                        episode_length=32, random_start=False, **settings["knobs"])
    policy = load_policy(run_dir, env, params, settings["config"])
    steps = int(params.last_bar - params.start_min)
    out = lookahead._episode(env, params, jnp.zeros(steps, jnp.int32), policy.logits)
    probs = np.asarray(out["action_probs"], np.float64)
    assert probs.shape == (steps, env.num_actions)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)
    position = np.asarray(out["position"])
    greedy = probs.argmax(axis=1)
    assert len(set(greedy)) > 1 and np.any(position != 0)  # the agent trades, so its state matters


def test_a_feature_that_peeks_moves_the_policy(run_dir, bars, monkeypatch):
    """The run's zscore replaced by a centred 5-bar mean (it sees 2 bars ahead): the policy check names
    the action probabilities at the first decision bar whose observation reaches past the cut."""
    kinds = dict(fs.FEATURE_KINDS)
    kinds["zscore"] = fs._Kind(
        compute=lambda b, p: jnp.convolve(b["close"], jnp.ones(5) / 5, mode="same") / b["close"] - 1,
        defaults=kinds["zscore"].defaults, lookback=lambda p: 2, columns=fs._cols("close"),
        label=kinds["zscore"].label)
    monkeypatch.setattr(fs, "FEATURE_KINDS", kinds)
    fs._compute_values.clear_cache()  # its compile for these specs (earlier tests) holds the real zscore
    verdict = lookahead.check_policy(bars, run_dir, cuts=1, seed=5, perturbations=("random_walk",))
    t = lookahead.cut_bars(len(bars["ts"]), verdict_warmup(bars, run_dir), 1, 5)[0]
    assert verdict.first_moved == t - 1 and verdict.perturbation == "random_walk (action_probs)"
    assert cli.failure_sentence(verdict, "cuts") == (
        f"look-ahead: policy {run_dir.name} (action probabilities) moved at bar {t - 1} when bars after the "
        "cut were rewritten (random_walk (action_probs))")
    monkeypatch.undo()
    fs._compute_values.clear_cache()


def verdict_warmup(bars, run_dir) -> int:
    """The first decision bar of the run's env over these bars (the cut bars are drawn after it)."""
    from tradelab_jax.episode import run_settings

    settings = run_settings(run_dir)
    warmup = fs.compute_features(bars, settings["features"]).warmup
    return warmup + settings["window"] - 1
