"""Environments from a plain config dict: the trading env of a dataset split, or any gymnax env.

A trading config's dataset is loaded (and checksum-verified) once per process and its feature matrix
computed once over the whole series (:func:`dataset`); every split and sweep point of the run, its
evaluation and its ``eval_summary.json`` then share them.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from tradelab_jax.errors import UserError
from tradelab_jax.knobs import PARAM_KNOBS


def is_gymnax(config: dict[str, Any]) -> bool:
    return (config.get("env") or {}).get("kind") == "gymnax"


def trading_knobs(config: dict[str, Any]) -> dict[str, Any]:
    """The env section's knobs that :func:`tradelab_jax.env.make` takes (window is separate)."""
    env_cfg = config["env"]
    return {k: env_cfg[k] for k in PARAM_KNOBS if k in env_cfg}


@dataclass(frozen=True)
class Dataset:
    """A dataset as one run uses it: the verified bars and manifest, and the feature matrix over them."""

    market: Any  # tradelab_jax.data.MarketData
    features: Any  # tradelab_jax.features.FeatureMatrix


_DATASETS: OrderedDict[Any, Dataset] = OrderedDict()
_MAX_DATASETS = 2  # a process trains one run (or sweep) at a time; the UI and tests may alternate two


def dataset(config: dict[str, Any]) -> Dataset:
    """The config's dataset and features, loaded and verified once per process.

    The key holds the manifest's per-file sha256 values, so a dataset rewritten on disk (a new import)
    is loaded again; the feature specs are part of it too.
    """
    from tradelab_jax import data, features
    from tradelab_jax.data.lake import Lake

    lake = config["data"].get("lake")
    dataset_id = str(config["data"]["id"])
    specs = features.load_feature_set(config.get("features") or "default")
    the_lake = Lake.at(lake)
    manifest = the_lake.read_manifest(dataset_id)
    key = (str(the_lake.root), dataset_id, tuple(str(f.get("sha256")) for f in manifest.get("files", [])),
           specs)
    if key not in _DATASETS:
        market = data.load(dataset_id, lake=lake)
        _DATASETS[key] = Dataset(market, features.compute_features(market.bars, specs))
        while len(_DATASETS) > _MAX_DATASETS:
            _DATASETS.popitem(last=False)
    _DATASETS.move_to_end(key)
    return _DATASETS[key]


def make_env(config: dict[str, Any], split: str = "train", **overrides: Any) -> tuple[Any, Any]:
    """``(env, env_params)`` for ``config`` (plain dict); ``overrides`` replace trading-env knobs."""
    env_cfg = config["env"]
    if is_gymnax(config):
        import gymnax

        env_id = env_cfg["id"]
        if env_id not in gymnax.registered_envs:
            raise UserError(f"unknown gymnax env.id {env_id!r}; valid: {', '.join(gymnax.registered_envs)}")
        env, params = gymnax.make(env_id)
        if not hasattr(env.action_space(params), "n"):
            raise UserError(
                f"env.id {env_id!r} has a continuous action space; PPO here needs discrete actions"
            )
        return env, params
    if env_cfg.get("kind") != "trading":
        raise UserError(f"invalid env.kind {env_cfg.get('kind')!r}: expected trading or gymnax")
    from tradelab_jax import env as trading_env

    loaded = dataset(config)
    knobs = {**trading_knobs(config), **overrides}
    return trading_env.from_market(loaded.market, loaded.features, split=split,
                                   window=int(env_cfg.get("window", 1)), **knobs)


def batch_env_params(config_points: list[dict[str, Any]], env: Any, params: Any,
                     swept: tuple[str, ...] = ()) -> tuple[Any, Any]:
    """``(params, in_axes)`` with a leading ``[S]`` axis on the env knobs ``swept`` (the run plan's env
    axes, :meth:`RunPlan.swept`; never rediscovered by comparing the points' configs)."""
    import jax

    if is_gymnax(config_points[0]):
        return params, jax.tree.map(lambda _: None, params)
    from tradelab_jax.env import params_in_axes, sweep_params

    knobs = [trading_knobs(c) for c in config_points]
    if not swept:
        return params, params_in_axes(params, ())
    return sweep_params(params, **{k: [kn[k] for kn in knobs] for k in swept})
