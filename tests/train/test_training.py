"""End to end through `tradelab train` (in-process): the run-directory contract, resume, sweeps, multiruns."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
from flax import serialization

from tradelab_jax import runs, train
from tradelab_jax.training import compose as tl_compose
from tradelab_jax.training.runner import TIMING_FIELDS, chunk_plan

from .helpers import TINY_GYMNAX, only_child

CONTRACT = ("config.yaml", "status.json", "metrics.jsonl", "checkpoints", "eval_summary.json",
            "telemetry.parquet", "equity.png")
METRIC_KEYS = ("update", "env_steps", "steps_per_s", "mean_episode_return", "loss", "policy_loss",
               "value_loss", "entropy", "approx_kl", "lr")


def _learning(metrics):
    return [{k: v for k, v in m.items() if k not in TIMING_FIELDS} for m in metrics]


def _final_state_bytes(run_dir):
    path, _ = runs.latest_checkpoint(run_dir)
    return path.read_bytes()


def test_chunk_plan_keeps_boundaries_on_resume():
    assert chunk_plan(10, 4) == [4, 4, 2]
    assert chunk_plan(10, 4, start=4) == [4, 2]
    assert chunk_plan(3, 10) == [3]


@pytest.mark.slow
def test_short_btc_run_writes_the_whole_contract(outputs):
    code = train.main([
        "agent.num_envs=4", "agent.num_steps=32", "agent.total_timesteps=768", "agent.num_minibatches=2",
        "agent.update_epochs=1", "network.hidden_sizes=[16]", "run.chunk_updates=2", "run.progress=false",
        f"run.outputs={outputs}", "run.tag=contract", "seed=3",
    ])
    assert code == 0
    run_dir = only_child(outputs)
    assert run_dir.name.endswith("Z_contract") and len(run_dir.name.split("_")[0]) == 16
    for name in CONTRACT:
        assert (run_dir / name).exists(), name
    status = runs.read_status(run_dir)
    assert status["status"] == "done" and status["progress"] == 1.0 and status["error"] is None
    assert status["started_at"] <= status["ended_at"]
    config = runs.read_config(run_dir)
    assert config["seed"] == 3 and config["env"]["kind"] == "trading" and config["agent"]["num_envs"] == 4
    metrics = runs.read_metrics(run_dir)
    assert [m["update"] for m in metrics] == [2, 4, 6]
    assert metrics[-1]["env_steps"] == 768
    for key in METRIC_KEYS:
        assert key in metrics[-1], key
    assert metrics[-1]["lr"] < metrics[0]["lr"]  # annealed
    summary = runs.read_eval_summary(run_dir)
    run = summary["run"]
    assert run["dataset_id"] == "binance_btcusdt_1m" and run["dataset_checksum"].startswith("sha256:")
    assert run["seed"] == 3 and run["env_steps"] == 768 and run["compile_s"] > 0 and run["steps_per_s"] > 0
    assert run["jax_version"] and run["device"].startswith("cpu")
    for split in ("val", "test"):
        table = summary["splits"][split]
        assert table["bars"] > 10_000
        for policy in ("agent", "buy_and_hold", "flat", "random"):
            row = table[policy]
            for key in ("total_return", "sharpe", "sortino", "max_drawdown", "calmar", "trades", "win_rate",
                        "turnover", "fees_paid", "stops_hit", "exposure"):
                assert key in row, (split, policy, key)
            assert -1.0 <= row["total_return"] < 10 and 0 <= row["max_drawdown"] <= 1
        assert table["flat"]["total_return"] == 0 and table["flat"]["trades"] == 0
        assert table["buy_and_hold"]["exposure"] > 0.9
    telemetry = pd.read_parquet(run_dir / "telemetry.parquet")
    assert set(telemetry["policy"]) == {"agent", "buy_and_hold", "flat", "random"}
    assert {"split", "t", "ts", "equity", "position", "fill_price", "stop_hit", "reward"} <= set(telemetry)
    assert (run_dir / "equity.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from tradelab_jax.training.session import print_summary

    printed = io.StringIO()
    print_summary([summary], stream=printed)
    assert "test split" in printed.getvalue() and "buy_and_hold" in printed.getvalue()


def _plain(overrides):
    """A composed, resolved config as the trainer receives it."""
    from hydra import compose, initialize_config_dir

    from tradelab_jax import paths

    tl_compose.register()
    with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
        return tl_compose.to_plain(compose("config", overrides=overrides))


@pytest.mark.slow
def test_cancel_and_resume_is_bit_identical_with_one_compile_per_chunk_shape(outputs):
    from tradelab_jax.training import session

    # 8 updates in chunks of 3: shapes 3, 3, 2 -> two compiles, then reused by every later run here.
    plain = _plain([*TINY_GYMNAX, "run.chunk_updates=3", "run.eval=false", "seed=5"])
    full = session.train_config(plain, outputs / "full")
    assert full["status"] == "done" and full["result"].timings["compiles"] <= 2
    # The same seed again, interrupted after the first chunk (a cancel between chunks) ...
    cut = outputs / "cut"
    result = session.train_config(plain, cut, should_stop=lambda update: update >= 3)
    assert result["status"] == "cancelled" and result["result"].timings["compiles"] == 0
    assert runs.read_status(cut)["status"] == "cancelled"
    assert runs.latest_checkpoint(cut)[1]["update"] == 3
    assert _learning(runs.read_metrics(cut)) == _learning(runs.read_metrics(outputs / "full"))[:1]
    # ... and resumed through the CLI: it ends bit-identical to the uninterrupted run.
    assert train.main([f"run.resume={cut}", "run.progress=false"]) == 0
    assert runs.read_status(cut)["status"] == "done" and runs.read_status(cut)["resumed_at"]
    assert _final_state_bytes(cut) == _final_state_bytes(outputs / "full")
    assert _learning(runs.read_metrics(cut)) == _learning(runs.read_metrics(outputs / "full"))
    state = serialization.msgpack_restore(_final_state_bytes(cut))
    assert int(state["update"]) == 8
    assert sorted(p.name for p in (cut / "checkpoints").iterdir())[-1] == "latest.json"


@pytest.mark.slow
def test_packed_sweep_of_4_and_multirun_of_2(outputs):
    # A packed sweep: 2 seeds x 2 learning rates in one program, one complete run directory per point.
    assert train.main([*TINY_GYMNAX, f"run.outputs={outputs}", "run.tag=packed", "run.eval_episodes=20",
                       "sweep.seed=[0,1]", "sweep.agent.lr=[0.001,0.0003]"]) == 0
    group = only_child(outputs / "multirun")
    assert group.name.endswith("_packed")
    points = runs.point_dirs(group)
    assert [p.name for p in points] == ["0", "1", "2", "3"]
    packed = json.loads((group / "packed.json").read_text())
    assert [(p["seed"], p["agent.lr"]) for p in packed["points"]] == [(0, 0.001), (0, 0.0003), (1, 0.001),
                                                                       (1, 0.0003)]
    for n, d in enumerate(points):
        cfg = runs.read_config(d)
        point = packed["points"][n]
        assert (cfg["seed"], cfg["agent"]["lr"]) == (point["seed"], point["agent.lr"])
        assert cfg["sweep"]["seed"] is None  # each point's config is a plain single run
        assert runs.read_status(d)["status"] == "done"
        summary = runs.read_eval_summary(d)
        assert summary["episodes"] >= 20 and summary["run"]["points"] == 4
        assert summary["run"]["seed"] == cfg["seed"]
        assert len(runs.read_metrics(d)) == 4
        assert (d / "telemetry.parquet").exists() and runs.latest_checkpoint(d) is not None
    # One compile for the whole sweep: every chunk had the same shape.
    assert packed["points"][0]["dir"] == "0"
    # Points differ: different seeds / learning rates train differently.
    assert _final_state_bytes(points[0]) != _final_state_bytes(points[1])

    # A Hydra multirun of 2: one process-job each, same layout.
    assert train.main(["-m", *TINY_GYMNAX, f"run.outputs={outputs}", "run.tag=multi", "run.eval=false",
                       "seed=0,1"]) == 0
    group = next(p for p in (outputs / "multirun").iterdir() if p.name.endswith("_multi"))
    points = runs.point_dirs(group)
    assert [p.name for p in points] == ["0", "1"]
    for d, seed in zip(points, (0, 1), strict=True):
        assert runs.read_config(d)["seed"] == seed
        assert runs.read_status(d)["status"] == "done"
        assert len(runs.read_metrics(d)) == 4


def test_multirun_of_sweepable_keys_is_packed_into_one_program():
    flags, overrides = tl_compose.pack_multirun(
        ["-m"], ["seed=0,1", "agent.ent_coef=0.0,0.01", "env.risk_pct=0.01", "run.pack=true"]
    )
    assert flags == []  # one process
    assert overrides == ["sweep.seed=[0,1]", "sweep.agent.ent_coef=[0.0,0.01]", "env.risk_pct=0.01",
                         "run.pack=true"]
    # A shape-changing key still varies across processes; each job packs the rest.
    flags, overrides = tl_compose.pack_multirun(["-m"], ["env.window=1,2", "seed=0,1", "run.pack=true"])
    assert flags == ["-m"] and overrides[:2] == ["env.window=1,2", "sweep.seed=[0,1]"]


def test_packed_sweep_on_the_trading_env_evaluates_every_point(outputs):
    # Regression: evaluation of the second point of a trading sweep once indexed bars with an equity value.
    assert train.main([
        "agent.num_envs=2", "agent.num_steps=16", "agent.total_timesteps=64", "agent.num_minibatches=1",
        "agent.update_epochs=1", "network.hidden_sizes=[8]", "run.chunk_updates=2", "run.progress=false",
        "run.print_summary=false", f"run.outputs={outputs}", "run.tag=tradesweep",
        "sweep.env.risk_pct=[0.005,0.02]",
    ]) == 0
    group = next(p for p in (outputs / "multirun").iterdir() if p.name.endswith("_tradesweep"))
    points = runs.point_dirs(group)
    assert [p.name for p in points] == ["0", "1"]
    for d, risk in zip(points, (0.005, 0.02), strict=True):
        assert runs.read_status(d)["status"] == "done"
        assert runs.read_config(d)["env"]["risk_pct"] == risk
        test = runs.read_eval_summary(d)["splits"]["test"]
        assert test["bars"] > 10_000 and "total_return" in test["agent"]


def test_status_keeps_the_last_known_episode_return(tmp_path):
    from tradelab_jax.training import session

    # 2 envs x 4 steps per update, one update per chunk: most chunks end no CartPole episode.
    plain = _plain([*TINY_GYMNAX, "agent.num_steps=4", "agent.total_timesteps=96", "run.chunk_updates=1",
                      "agent.num_minibatches=1", "run.eval=false", "seed=1"])
    run_dir = tmp_path / "run"
    assert session.train_config(plain, run_dir)["status"] == "done"
    returns = [m["mean_episode_return"] for m in runs.read_metrics(run_dir)]
    known = [r for r in returns if r is not None]
    assert returns[-1] is None and known, returns  # the case that used to leave status.json with null
    assert runs.read_status(run_dir)["mean_episode_return"] == known[-1]
