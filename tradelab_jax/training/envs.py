"""Environments from a plain config dict: the trading env of a dataset split, or any gymnax env."""

from __future__ import annotations

from typing import Any

from tradelab_jax.errors import UserError


def is_gymnax(config: dict[str, Any]) -> bool:
    return (config.get("env") or {}).get("kind") == "gymnax"


def trading_knobs(config: dict[str, Any]) -> dict[str, Any]:
    """The env section's knobs that :func:`tradelab_jax.env.make` takes (window is separate)."""
    from tradelab_jax.env import KNOB_NAMES

    env_cfg = config["env"]
    return {k: env_cfg[k] for k in KNOB_NAMES if k in env_cfg}


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
    from tradelab_jax.features import load_feature_set

    features = config.get("features")
    specs = load_feature_set(features) if features else load_feature_set("default")
    knobs = {**trading_knobs(config), **overrides}
    return trading_env.make(
        config["data"]["id"], features=specs, split=split, lake=config["data"].get("lake"),
        window=int(env_cfg.get("window", 1)), **knobs,
    )


def batch_env_params(config_points: list[dict[str, Any]], env: Any, params: Any) -> tuple[Any, Any]:
    """``(params, in_axes)`` with a leading ``[S]`` axis on the knobs that differ between sweep points."""
    import jax

    if is_gymnax(config_points[0]):
        return params, jax.tree.map(lambda _: None, params)
    from tradelab_jax.env import params_in_axes, sweep_params

    knobs = [trading_knobs(c) for c in config_points]
    varying = [k for k in knobs[0] if any(kn[k] != knobs[0][k] for kn in knobs)]
    if not varying:
        return params, params_in_axes(params, ())
    return sweep_params(params, **{k: [kn[k] for kn in knobs] for k in varying})
