"""Shared settings for the training tests."""

from __future__ import annotations

from pathlib import Path

# A CartPole budget that compiles and runs in seconds: 8 updates of 2 envs x 16 steps, chunks of 2.
TINY_GYMNAX = [
    "env=gymnax", "agent.num_envs=2", "agent.num_steps=16", "agent.total_timesteps=256",
    "agent.update_epochs=1", "agent.num_minibatches=2", "network.hidden_sizes=[16]", "run.chunk_updates=2",
    "run.progress=false", "run.print_summary=false",
]


def only_child(path: Path) -> Path:
    children = [p for p in path.iterdir() if p.is_dir()]
    assert len(children) == 1, children
    return children[0]
