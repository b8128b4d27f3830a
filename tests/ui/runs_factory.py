"""Synthetic run directories that follow the run-directory contract (written with tradelab_jax.runs)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from tradelab_jax import runs

T0 = 1_760_486_400_000  # 2025-10-15T00:00:00Z in ms


def make_run(
    root: Path,
    name: str,
    *,
    status: str = "done",
    seed: int = 0,
    risk: float = 0.01,
    agent_equity=(10_000.0, 10_100.0, 9_900.0, 10_300.0),
    bh_equity=(10_000.0, 9_950.0, 10_050.0, 10_000.0),
    dataset: str = "binance_btcusdt_1m_2025-10",
    tag: str | None = None,
    pid: int | None = None,
    started: str = "2025-11-26T11:00:00Z",
    checkpoint: int | None = None,
) -> Path:
    """A run directory; ``checkpoint=<update>`` also writes a (fake) checkpoint, as a resumable run has."""
    d = root / name
    d.mkdir(parents=True, exist_ok=True)
    tag = tag or name.split("_", 1)[-1]
    runs.write_config(
        d,
        {
            "seed": seed,
            "data": {"id": dataset},
            "features": {"name": "default"},
            "env": {"kind": "trading", "risk_pct": risk, "stop_loss_bps": 50.0, "order_type": "limit"},
            "agent": {"total_timesteps": 256},
            "run": {"tag": tag},
        },
    )
    runs.write_status(
        d,
        status=status,
        pid=pid,
        started_at=started,
        env_steps=256,
        total_env_steps=256,
        progress=1.0 if status == "done" else 0.5,
    )
    for u in (1, 2):
        runs.append_metrics(
            d,
            {
                "update": u,
                "env_steps": 128 * u,
                "steps_per_s": 100.0 * u,
                "mean_episode_return": 0.5 * u,
                "loss": 1.0 / u,
                "policy_loss": 0.1,
                "value_loss": 0.2,
                "entropy": 1.5,
                "approx_kl": 0.01,
            },
        )
    if checkpoint is not None:
        runs.write_checkpoint(d, checkpoint, b"fake runner state", {"env_steps": 128 * checkpoint})
    if status != "done":
        return d
    agent, bh = np.asarray(agent_equity, float), np.asarray(bh_equity, float)
    frames = []
    for split in ("val", "test"):
        for policy, eq in (("agent", agent), ("buy_and_hold", bh), ("flat", np.full_like(agent, 10_000.0))):
            n = len(eq)
            filled = np.zeros(n, bool)
            filled[1] = policy == "agent"
            frames.append(
                pd.DataFrame(
                    {
                        "split": split,
                        "policy": policy,
                        "t": np.arange(n),
                        "ts": T0 + 60_000 * (np.arange(n) + 1),
                        "close": 100.0 + np.arange(n),
                        "target_position": 1.0,
                        "order_size": np.where(filled, 2.0, 0.0),
                        "filled": filled,
                        "fill_price": np.where(filled, 101.0, np.nan),
                        "limit_fee": np.where(filled, 0.04, 0),
                        "stop_hit": np.zeros(n, bool),
                        "exit_price": np.nan,
                        "stop_fee": 0.0,
                        "position": 1.0,
                        "cash": 0.0,
                        "equity": eq,
                        "reward": 0.0,
                    }
                )
            )
    pd.concat(frames, ignore_index=True).to_parquet(d / runs.TELEMETRY_FILE, index=False)

    def stats(eq):
        peak = np.maximum.accumulate(eq)
        return {
            "total_return": eq[-1] / 10_000.0 - 1.0,
            "sharpe": 1.25,
            "max_drawdown": float(np.max(1 - eq / peak)),
            "fees_paid": 0.04,
            "trades": 1,
        }

    runs.write_eval_summary(
        d,
        {
            "run": {"dataset_id": dataset, "seed": seed},
            "splits": {
                s: {"bars": len(agent), "agent": stats(agent), "buy_and_hold": stats(bh)}
                for s in ("val", "test")
            },
        },
    )
    return d
