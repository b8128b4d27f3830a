"""Structured-config schemas (registered in Hydra's ConfigStore) and their conversion to static specs.

Each ``conf/<group>/<option>.yaml`` starts from one of these schemas
(``defaults: [/<group>_<option>_schema@_here_, _self_]``), so a misspelt key or a value of the wrong type
fails when Hydra composes the config, before any compile. The schemas are stored at the ConfigStore's
root, outside every config group, so ``tradelab train --help`` lists only the real options of each group.
"""

from __future__ import annotations

from dataclasses import dataclass, field, make_dataclass
from typing import Any

from omegaconf import MISSING

from tradelab_jax.knobs import AGENT_KNOBS, ENV_KNOBS, RUN_KNOBS, SEED, SWEEPABLE_AGENT, SWEEPABLE_ENV, Knob

# The Python type of each knob kind in a config (choices are written by name).
_TYPES: dict[str, Any] = {"float": float, "int": int, "bool": bool, "choice": str, "buckets": list[float]}


def _fields(knobs: dict[str, Knob]) -> list[tuple[str, Any, Any]]:
    out = []
    for k in knobs.values():
        default = k.config_default()
        value = field(default_factory=lambda d=default: list(d)) if isinstance(default, list) else default
        out.append((k.name, _TYPES[k.kind], value))
    return out


def _sweep_fields(knobs: dict[str, Knob], names: tuple[str, ...]) -> list[tuple[str, Any, Any]]:
    return [(n, list[_TYPES[knobs[n].kind]] | None, None) for n in names]


@dataclass
class SplitConfig:
    """How the (sub-period's) bars are cut into train, val and test, in time order (docs/training.md).

    ``train`` and ``val`` are fractions of the bars (test gets the rest); ``val_start`` and ``test_start``
    (UTC dates, both or neither) cut at those instants instead.
    """

    train: float = 0.70
    val: float = 0.15
    val_start: str | None = None
    test_start: str | None = None


@dataclass
class DataConfig:
    id: str = "binance_btcusdt_1m"
    lake: str | None = None  # None: $TRADELAB_LAKE or the repo's data/
    start: str | None = None  # UTC "YYYY-MM-DD" or "YYYY-MM-DDTHH:MM": the sub-period [start, end)
    end: str | None = None  # None: the dataset's first (start) or last (end) bar
    split: SplitConfig = field(default_factory=SplitConfig)


@dataclass
class CVConfig:
    """Cross-validation over time (docs/training.md, "Splits and cross-validation"; training/folds.py).

    ``kind`` none trains on the train split as always; walk_forward and purged_kfold train one point per
    fold (and seed and sweep value) in one program and evaluate each on its fold's test window. ``test`` and
    ``train`` are lengths in bars (a whole number) or fractions of the bars (in (0, 1)); null: the default
    share. ``fold`` is set by the run plan on each point's config; given on the command line, that fold is
    trained alone.
    """

    kind: str = "none"  # none | walk_forward | purged_kfold
    folds: int = 5
    test: float | None = None
    train: float | None = None  # rolling walk-forward only
    embargo_bars: int = 0
    mode: str = "rolling"  # rolling | expanding (walk_forward)
    fold: int | None = None


# The trading environment's knobs (units and meaning: docs/execution-semantics.md), from the knob table.
TradingEnvConfig = make_dataclass("TradingEnvConfig", [("kind", str, "trading"), *_fields(ENV_KNOBS)])


@dataclass
class GymnaxEnvConfig:
    """Any environment registered in gymnax (``gymnax.registered_envs``) with its default params."""

    kind: str = "gymnax"
    id: str = "CartPole-v1"


PPOConfig = make_dataclass("PPOConfig", [("name", str, "ppo"), *_fields(AGENT_KNOBS)])


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
    chunk_updates: int = RUN_KNOBS["chunk_updates"].default
    keep_checkpoints: int = RUN_KNOBS["keep_checkpoints"].default
    progress: bool = True  # tqdm bar on stderr
    eval: bool = True  # evaluate on the held-out splits after training
    eval_splits: list[str] = field(default_factory=lambda: ["val", "test"])
    eval_episodes: int = RUN_KNOBS["eval_episodes"].default
    pack: bool = False  # with -m: pack the sweepable keys of a multirun into one compiled program
    print_summary: bool = True
    loggers: list[str] = field(default_factory=lambda: ["tensorboard"])  # docs/tracking.md
    mlflow_uri: str | None = None  # None: $MLFLOW_TRACKING_URI or sqlite under <outputs>/mlruns
    devices: str = "all"  # local devices a packed sweep's points are sharded over: all or a count
    point_block: int | None = None  # points vmapped together (None: one block per device); docs/clusters.md
    coordinator: str | None = None  # host:port of process 0 of a multi-process run (docs/clusters.md)
    num_processes: int | None = None
    process_id: int | None = None
    distributed_timeout_s: int = 120  # joining, and waiting on a peer, fails after this (one sentence)


SweepEnvConfig = make_dataclass("SweepEnvConfig", _sweep_fields(ENV_KNOBS, SWEEPABLE_ENV))
SweepAgentConfig = make_dataclass("SweepAgentConfig", _sweep_fields(AGENT_KNOBS, SWEEPABLE_AGENT))


@dataclass
class SweepConfig:
    """Packed-sweep axes: the cartesian product trains in one process and one compile."""

    seed: list[int] | None = None
    env: SweepEnvConfig = field(default_factory=SweepEnvConfig)
    agent: SweepAgentConfig = field(default_factory=SweepAgentConfig)


@dataclass
class Config:
    seed: int = SEED.default
    data: DataConfig = field(default_factory=DataConfig)
    features: Any = None  # a feature set mapping (conf/features/, owned by tradelab_jax.features)
    env: Any = MISSING  # TradingEnvConfig or GymnaxEnvConfig
    agent: PPOConfig = field(default_factory=PPOConfig)
    network: MLPConfig = field(default_factory=MLPConfig)
    run: RunConfig = field(default_factory=RunConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    cv: CVConfig = field(default_factory=CVConfig)


# ConfigStore name -> schema; the root config and every group option's defaults list name one of these.
SCHEMAS: dict[str, type] = {
    "config_schema": Config,  # conf/config.yaml
    "data_schema": DataConfig,  # conf/data/*.yaml
    "cv_schema": CVConfig,  # conf/cv/*.yaml
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
