"""The work a parity check repeats on each backend: the feature matrix, fixed-action replays, a short run.

Every workload is deterministic given its arguments (a fixed bar slice, a seeded action sequence, a seeded
training config), so two results differ only by how the backend / precision / program computed them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

DEFAULT_DATASET = "binance_btcusdt_1m"
DEFAULT_BARS = 20_000  # the first bars of the dataset: enough for every feature's warm-up, quick on CPU
ROLLOUT_START = 100
ROLLOUT_STEPS = 5_000
ACTION_SEED = 0
MEAN_HOLD_BARS = 30  # actions persist for ~30 bars, so stops get a chance to trigger

# Knob combinations replayed with the same actions: both order types, trailing stops on and off, a tight
# stop (more stop exits) and both reward kinds.
KNOB_COMBOS: dict[str, dict[str, Any]] = {
    "limit": {},
    "market": {"order_type": "market", "slippage_bps": 1.0},
    "limit_trailing": {"trailing_stop": True, "stop_loss_bps": 20.0},
    "market_trailing_pnl": {"order_type": "market", "slippage_bps": 1.0, "trailing_stop": True,
                            "stop_loss_bps": 20.0, "reward": "pnl"},
}

# replay() telemetry that must match exactly (plus sign(position), derived below).
DISCRETE_TELEMETRY = ("t", "filled", "stop_hit", "terminated")

# A short PPO run on the trading env (4 updates of 4 envs x 32 steps, one update per chunk so metrics.jsonl
# holds every update's losses), evaluated on the test split: `tradelab train` overrides.
TRAINING_OVERRIDES: tuple[str, ...] = (
    "env=trading", "agent.num_envs=4", "agent.num_steps=32", "agent.total_timesteps=512",
    "agent.update_epochs=1", "agent.num_minibatches=2", "network.hidden_sizes=[16]", "run.chunk_updates=1",
    "run.progress=false", "run.print_summary=false", "run.eval_splits=[test]", "seed=0",
)  # fmt: skip


def load_bars(dataset: str = DEFAULT_DATASET, n_bars: int = DEFAULT_BARS, lake: Any = None
              ) -> dict[str, np.ndarray]:
    """The first ``n_bars`` bars of a lake dataset (host numpy arrays, float64 prices)."""
    from tradelab_jax import data
    from tradelab_jax.errors import UserError

    market = data.load(dataset, lake=lake)
    if n_bars < 1000:
        raise UserError(f"--bars {n_bars} is too few: use at least 1000 so every feature warms up")
    return {k: np.asarray(v[:n_bars]) for k, v in market.bars.items()}


def action_sequence(n: int, *, seed: int = ACTION_SEED, num_actions: int = 5,
                    mean_hold: int = MEAN_HOLD_BARS) -> np.ndarray:
    """``[n]`` int32 bucket indices that change at random (geometric holding times), from ``seed``."""
    rng = np.random.default_rng(seed)
    change = rng.random(n) < 1.0 / mean_hold
    change[0] = True
    picks = rng.integers(0, num_actions, size=n)
    idx = np.maximum.accumulate(np.where(change, np.arange(n), 0))
    return picks[idx].astype(np.int32)


def compute_feature_matrix(bars: Mapping[str, np.ndarray], feature_set: str = "full",
                           *, float32_inputs: bool = False) -> dict[str, np.ndarray]:
    """The feature matrix as the product computes it, or (``float32_inputs``) from float32 price arrays.

    The product path hands host float64 bars to ``compute_features``, which computes in float64 and
    stores float32. With ``float32_inputs`` the bars become float32 device arrays first, so every
    indicator runs in float32: that is the computation the float32-vs-x64 check measures.
    """
    import jax.numpy as jnp

    from tradelab_jax import features

    specs = features.load_feature_set(feature_set)
    if float32_inputs:
        bars = {k: (v if k == "ts" else jnp.asarray(np.asarray(v, np.float32))) for k, v in bars.items()}
    matrix = features.compute_features(bars, specs)
    return {"values": np.asarray(matrix.values), "names": np.asarray(matrix.names),
            "warmup": np.asarray(matrix.warmup)}


def run_rollouts(bars: Mapping[str, np.ndarray], *, steps: int = ROLLOUT_STEPS, start: int = ROLLOUT_START,
                 combos: Mapping[str, Mapping[str, Any]] = KNOB_COMBOS) -> dict[str, np.ndarray]:
    """``replay`` of one seeded action sequence under each knob combination.

    Returns ``{"<combo>.<field>": [T]}`` telemetry arrays.
    """
    from tradelab_jax.env import replay

    steps = min(steps, len(bars["close"]) - start - 1)
    actions = action_sequence(steps)
    out: dict[str, np.ndarray] = {}
    for combo, knobs in combos.items():
        telemetry = replay(bars, actions, start=start, **knobs)
        for key, value in telemetry.items():
            out[f"{combo}.{key}"] = np.asarray(value)
    return out


def save_arrays(path: Path, arrays: Mapping[str, np.ndarray]) -> None:
    from tradelab_jax.io import atomic_path

    with atomic_path(path, suffix=".npz") as tmp, open(tmp, "wb") as f:
        np.savez(f, **arrays)


def load_arrays(path: Path) -> dict[str, np.ndarray]:
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def training_argv(run_dir: Path, extra: Sequence[str] = ()) -> list[str]:
    """``tradelab train`` arguments of the parity training run, written into ``run_dir``.

    ``extra`` overrides replace the defaults' values for the same keys (the last value of a key wins).
    """
    merged: dict[str, str] = {}
    for override in (*TRAINING_OVERRIDES, *extra, f"run.dir={run_dir}"):
        merged[override.split("=", 1)[0].lstrip("+~")] = override
    return list(merged.values())
