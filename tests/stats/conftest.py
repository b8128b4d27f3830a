"""A tiny real packed sweep (2 seeds x 2 risk levels on the small shipped dataset), trained once for the
stats and report tests in a fresh process, as a user runs `tradelab train`."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parents[2]
TINY_TRADING = [
    "data.id=binance_btcusdt_1m_2025-10", "env.episode_length=8", "agent.num_envs=2", "agent.num_steps=16",
    "agent.total_timesteps=128", "agent.num_minibatches=1", "agent.update_epochs=1",
    "network.hidden_sizes=[8]", "run.chunk_updates=2", "run.progress=false", "run.print_summary=false",
    "run.eval_splits=[test]",
]


def train(run_dir: Path, *overrides: str, timeout: float = 300) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "TRADELAB_LAKE"}
    proc = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "train", *TINY_TRADING, *overrides,
                           f"run.dir={run_dir}"], cwd=REPO_ROOT, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


@pytest.fixture(scope="session")
def tiny_sweep(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("stats") / "sweep"
    train(root, "sweep.seed=[0,1]", "sweep.env.risk_pct=[0.005,0.01]")
    return root
