"""Structured-config schemas (registered in Hydra's ConfigStore) and their conversion to static specs.

Each ``conf/<group>/<option>.yaml`` starts from one of these schemas
(``defaults: [/<group>_<option>_schema@_here_, _self_]``), so a misspelt key or a value of the wrong type
fails when Hydra composes the config, before any compile. The schemas are stored at the ConfigStore's
root, outside every config group, so ``tradelab train --help`` lists only the real options of each group.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from omegaconf import MISSING

# Env knobs that keep every shape (traced EnvParams leaves): allowed as packed-sweep axes.
SWEEPABLE_ENV = (
    "risk_pct", "stop_loss_bps", "max_leverage", "max_drawdown", "trailing_stop", "maker_fee", "taker_fee",
    "slippage_bps", "order_type", "rebalance_band", "min_order_notional", "initial_cash", "reward",
)  # fmt: skip
# PPO knobs that are traced leaves (PPOHyper).
SWEEPABLE_AGENT = ("lr", "ent_coef", "clip_eps", "vf_coef", "gamma", "gae_lambda", "max_grad_norm")


@dataclass
class DataConfig:
    id: str = "binance_btcusdt_1m"
    lake: str | None = None  # None: $TRADELAB_LAKE or the repo's data/


@dataclass
class TradingEnvConfig:
    """The trading environment's knobs (units and meaning: docs/execution-semantics.md)."""

    kind: str = "trading"
    # risk
    risk_pct: float = 0.01
    stop_loss_bps: float = 50.0
    max_leverage: float = 3.0
    max_drawdown: float = 0.5
    trailing_stop: bool = False
    # fees
    maker_fee: float = 0.0002
    taker_fee: float = 0.0005
    slippage_bps: float = 0.0
    # orders
    order_type: str = "limit"
    rebalance_band: float = 0.25
    min_order_notional: float = 0.0
    position_buckets: list[float] = field(default_factory=lambda: [-1.0, -0.5, 0.0, 0.5, 1.0])
    # account, reward and episodes
    initial_cash: float = 10_000.0
    reward: str = "log_return"
    episode_length: int = 1440
    window: int = 1
    random_start: bool = True


@dataclass
class GymnaxEnvConfig:
    """Any environment registered in gymnax (``gymnax.registered_envs``) with its default params."""

    kind: str = "gymnax"
    id: str = "CartPole-v1"


@dataclass
class PPOConfig:
    name: str = "ppo"
    total_timesteps: int = 500_000  # per run (per sweep point); rounded down to whole updates
    num_envs: int = 4
    num_steps: int = 128
    update_epochs: int = 4
    num_minibatches: int = 4
    lr: float = 2.5e-4
    anneal_lr: bool = True
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip_eps: float = 0.2
    ent_coef: float = 0.01
    vf_coef: float = 0.5
    max_grad_norm: float = 0.5
    normalize_advantages: bool = True


@dataclass
class MLPConfig:
    name: str = "mlp"
    hidden_sizes: list[int] = field(default_factory=lambda: [64, 64])
    activation: str = "tanh"


@dataclass
class RunConfig:
    tag: str = "train"
    outputs: str | None = None  # root of run directories; None: $TRADELAB_OUTPUTS or the repo's outputs/
    dir: str | None = None  # an explicit run directory (e.g. one the UI queued); overrides outputs/tag
    resume: str | None = None  # a run (or packed sweep) directory to continue from its last checkpoint
    chunk_updates: int = 10  # PPO updates per compiled chunk: progress, metrics and checkpoint cadence
    keep_checkpoints: int = 2
    progress: bool = True  # tqdm bar on stderr
    eval: bool = True  # evaluate on the held-out splits after training
    eval_splits: list[str] = field(default_factory=lambda: ["val", "test"])
    eval_episodes: int = 32  # gymnax environments: greedy episodes to average
    pack: bool = False  # with -m: pack the sweepable keys of a multirun into one compiled program
    print_summary: bool = True


@dataclass
class SweepEnvConfig:
    risk_pct: list[float] | None = None
    stop_loss_bps: list[float] | None = None
    max_leverage: list[float] | None = None
    max_drawdown: list[float] | None = None
    trailing_stop: list[bool] | None = None
    maker_fee: list[float] | None = None
    taker_fee: list[float] | None = None
    slippage_bps: list[float] | None = None
    order_type: list[str] | None = None
    rebalance_band: list[float] | None = None
    min_order_notional: list[float] | None = None
    initial_cash: list[float] | None = None
    reward: list[str] | None = None


@dataclass
class SweepAgentConfig:
    lr: list[float] | None = None
    ent_coef: list[float] | None = None
    clip_eps: list[float] | None = None
    vf_coef: list[float] | None = None
    gamma: list[float] | None = None
    gae_lambda: list[float] | None = None
    max_grad_norm: list[float] | None = None


@dataclass
class SweepConfig:
    """Packed-sweep axes: the cartesian product trains in one process and one compile."""

    seed: list[int] | None = None
    env: SweepEnvConfig = field(default_factory=SweepEnvConfig)
    agent: SweepAgentConfig = field(default_factory=SweepAgentConfig)


@dataclass
class Config:
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    features: Any = None  # a feature set mapping (conf/features/, owned by tradelab_jax.features)
    env: Any = MISSING  # TradingEnvConfig or GymnaxEnvConfig
    agent: PPOConfig = field(default_factory=PPOConfig)
    network: MLPConfig = field(default_factory=MLPConfig)
    run: RunConfig = field(default_factory=RunConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)


# ConfigStore name -> schema; the root config and every group option's defaults list name one of these.
SCHEMAS: dict[str, type] = {
    "config_schema": Config,  # conf/config.yaml
    "data_schema": DataConfig,  # conf/data/*.yaml
    "env_trading_schema": TradingEnvConfig,  # conf/env/trading.yaml
    "env_gymnax_schema": GymnaxEnvConfig,  # conf/env/gymnax.yaml
    "agent_ppo_schema": PPOConfig,  # conf/agent/ppo.yaml
    "network_mlp_schema": MLPConfig,  # conf/network/mlp.yaml
    "run_schema": RunConfig,  # conf/run/default.yaml
}
_REGISTERED = False


def register_configs() -> None:
    """Store the schemas in Hydra's ConfigStore (idempotent).

    They go to the store's root, not into the config groups: a schema stored in group ``agent`` would be
    listed by ``--help`` (and accepted on the command line) as an ``agent=`` option. A group option extends
    its schema through an absolute default placed at its own package, e.g. ``conf/agent/ppo.yaml`` starts
    with ``defaults: [/agent_ppo_schema@_here_, _self_]`` (Hydra's "Extending Configs").
    """
    global _REGISTERED
    if _REGISTERED:
        return
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    for name, node in SCHEMAS.items():
        cs.store(name=name, node=node)
    _REGISTERED = True
