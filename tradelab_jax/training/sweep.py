"""Packed sweeps: ``sweep.*`` lists -> a cartesian grid of complete single-run configs."""

from __future__ import annotations

import copy
import itertools
from typing import Any

from tradelab_jax.errors import UserError
from tradelab_jax.training.config import SWEEPABLE_AGENT, SWEEPABLE_ENV

SWEEPABLE_KEYS = ("seed", *(f"env.{k}" for k in SWEEPABLE_ENV), *(f"agent.{k}" for k in SWEEPABLE_AGENT))


def sweepable_message() -> str:
    return "sweepable keys: " + ", ".join(SWEEPABLE_KEYS)


def sweep_axes(config: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """``[(dotted key, values), ...]`` of the sweep section, in the order seed, env.*, agent.*."""
    sweep = config.get("sweep") or {}
    axes: list[tuple[str, list[Any]]] = []
    if sweep.get("seed") is not None:
        axes.append(("seed", list(sweep["seed"])))
    for group in ("env", "agent"):
        for name, values in (sweep.get(group) or {}).items():
            if values is not None:
                axes.append((f"{group}.{name}", list(values)))
    for key, values in axes:
        if key not in SWEEPABLE_KEYS:
            raise UserError(f"sweep.{key} changes a shape and cannot be packed; {sweepable_message()}")
        if not values:
            raise UserError(f"sweep.{key} is an empty list; give at least one value")
    env = config.get("env") or {}
    if env.get("kind") == "gymnax" and any(k.startswith("env.") for k, _ in axes):
        raise UserError("sweep.env.* knobs belong to the trading env; with env=gymnax sweep seed and agent.*")
    return axes


def empty_sweep(config: dict[str, Any]) -> dict[str, Any]:
    sweep = copy.deepcopy(config.get("sweep") or {})
    sweep["seed"] = None
    for group in ("env", "agent"):
        sweep[group] = dict.fromkeys(sweep.get(group) or {})
    return sweep


def expand_sweep(config: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``[(point config, {dotted key: value}), ...]``: one complete config per grid point (row-major).

    Without ``sweep.*`` values this is the config itself as the single point.
    """
    axes = sweep_axes(config)
    points = []
    for combo in itertools.product(*(values for _, values in axes)):
        point = copy.deepcopy(config)
        point["sweep"] = empty_sweep(config)
        assignment = {}
        for (key, _), value in zip(axes, combo, strict=True):
            assignment[key] = value
            if key == "seed":
                point["seed"] = int(value)
            else:
                group, name = key.split(".", 1)
                point[group][name] = value
        points.append((point, assignment))
    return points


def is_packed(config: dict[str, Any]) -> bool:
    return bool(sweep_axes(config))
