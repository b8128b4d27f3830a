"""``tradelab bench train`` on a tiny budget: it runs, and its JSON has the expected rows and keys.

Timings are never asserted (the numbers depend on the machine and its load).
"""

from __future__ import annotations

import contextlib
import copy
import io
import json

import jax
import jax.numpy as jnp
import pytest

from tradelab_jax.agents.ppo import make_ppo_networks
from tradelab_jax.bench import flops, sb3_baseline
from tradelab_jax.bench import main as bench_main
from tradelab_jax.bench import train as bench_train
from tradelab_jax.errors import UserError

ROW_KEYS = {
    "id", "implementation", "env", "envs", "rollout", "epochs", "minibatches", "minibatch_size", "network",
    "points", "vec_env", "env_steps", "wall_s", "compile_s", "steps_per_s", "vs", "ratio", "target_ratio",
    "flops_per_env_step", "flops_per_s", "peak_fraction", "skipped",
}  # fmt: skip


@pytest.fixture(scope="module")
def quick_result() -> dict:
    """One tiny run for the whole module (one compile); SB3 rows run when SB3 is installed."""
    argv = ["train", "--quick", "--json", "--no-cartpole"]
    if not sb3_baseline.sb3_available():
        argv.append("--skip-sb3")
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        assert bench_main(argv) == 0
    return json.loads(out.getvalue())


def test_quick_run_emits_rows_machine_info_and_targets(quick_result):
    result = quick_result
    assert result["benchmark"] == "train"
    rows = result["rows"]
    assert [r["id"] for r in rows] == ["sb3-default", "jax-bench", "sb3-matched", "jax-matched"]
    for r in rows:
        assert r.keys() >= ROW_KEYS, ROW_KEYS - r.keys()
    for r in (rows[1], rows[3]):
        assert r["implementation"] == "tradelab (jax)"
        assert r["env_steps"] > 0 and r["wall_s"] > 0 and r["steps_per_s"] > 0 and r["compile_s"] > 0
        assert r["flops_per_env_step"] > 0 and r["peak_fraction"] > 0
    assert rows[1]["vs"] == "sb3-default" and rows[3]["vs"] == "sb3-matched"
    if sb3_baseline.sb3_available():
        assert rows[0]["envs"] == 1 and rows[0]["vec_env"] == "DummyVecEnv"
        assert rows[0]["steps_per_s"] > 0 and rows[2]["env_steps"] >= rows[2]["envs"] * rows[2]["rollout"]
        assert rows[1]["ratio"] > 0 and rows[3]["ratio"] > 0
        assert result["machine"]["torch_threads"] >= 1
    else:
        assert rows[0]["skipped"] and rows[2]["skipped"] and rows[1]["ratio"] is None
    machine = result["machine"]
    for key in ("cpu", "cores", "jax", "backend", "torch", "stable_baselines3", "torch_threads"):
        assert key in machine
    assert result["matmul_peak"]["flops_per_s"] > 0
    assert any("compile" in t["target"] for t in result["targets"])


def test_table_shows_every_row_and_skipped_sb3_rows(quick_result):
    result = copy.deepcopy(quick_result)
    for r in result["rows"]:
        if r["implementation"].startswith("sb3"):
            r.update(skipped="stable-baselines3 not installed (--skip-sb3)", steps_per_s=None)
        else:
            r["ratio"] = None
    table = bench_train.format_table(result)
    for r in result["rows"]:
        assert r["id"] in table
    assert "skipped: stable-baselines3 not installed" in table
    assert "matmul peak" in table


def test_missing_sb3_is_a_user_error_before_any_work(monkeypatch):
    monkeypatch.setattr(sb3_baseline, "sb3_available", lambda: False)
    with pytest.raises(UserError, match=r"pip install -e '\.\[bench\]'"):
        bench_main(["train", "--quick"])


@pytest.mark.parametrize("argv", [["--envs", "0"], ["--envs", "x"], ["--points", "0"], ["--sb3-steps", "0"],
                                  ["--min-time", "-1"], ["--matched-envs", "0"], ["--torch-threads", "0"]])
def test_bad_options_are_user_errors_before_any_work(argv):
    with pytest.raises(UserError):
        bench_train.main(["--skip-sb3", *argv])


def test_mlp_flop_model_matches_xla_count_of_the_networks():
    # XLA counts an unlooped forward pass exactly: the model's matmul FLOPs must be all but the
    # elementwise remainder (bias adds; tanh is a transcendental, not counted as a FLOP).
    obs_size, actions, batch = 6, 5, 128
    networks = make_ppo_networks((obs_size,), actions, (64, 64))
    params = networks.init(jax.random.PRNGKey(0))
    obs = jnp.zeros((batch, obs_size), jnp.float32)
    counted = flops.xla_flops(jax.jit(networks.apply).lower(params, obs).compile())
    model = flops.ppo_flops_per_env_step(obs_size, actions, (64, 64), epochs=1)["forward"] * batch
    assert counted is not None
    assert model <= counted <= 1.1 * model
