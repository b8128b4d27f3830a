"""The run plan: a composed config turned, once, into everything a run needs.

``tradelab train`` composes one config (Hydra), converts it to a plain dict, and hands it here. The plan
holds the points of the run (one for a single run; the cartesian grid of the ``sweep.*`` axes for a packed
sweep) with their complete configs, their values on the axes and their run directories, plus the
evaluation settings. The runner, evaluation, resume and the summary consume it; the traced per-point
values (``PPOHyper`` leaves, swept ``EnvParams`` knobs) come straight from the axes, not from comparing
expanded configs.

Which keys may be axes is the knob table's business (:data:`tradelab_jax.knobs.SWEEPABLE_KEYS`).
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from tradelab_jax import runs
from tradelab_jax.errors import UserError
from tradelab_jax.knobs import SWEEPABLE_AGENT, SWEEPABLE_KEYS, sweepable_message


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


def _empty_sweep(config: dict[str, Any]) -> dict[str, Any]:
    sweep = copy.deepcopy(config.get("sweep") or {})
    sweep["seed"] = None
    for group in ("env", "agent"):
        sweep[group] = dict.fromkeys(sweep.get(group) or {})
    return sweep


def fold_axis(config: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """``[("fold", [0, .., F-1])]`` for a cross-validation config (``cv.kind`` not none), else ``[]``.

    The fold is one more point axis, the outermost: a fold's points differ from another fold's only in
    their traced start bounds (training.envs.batch_env_params), so folds x seeds x sweep values are one
    compiled program. Its value is written into each point's ``cv.fold``; ``cv.fold=K`` on the command
    line trains fold K alone (the same windows as in the whole run).
    """
    cv = config.get("cv") or {}
    if str(cv.get("kind") or "none") == "none":
        return []
    folds = cv.get("folds")
    if isinstance(folds, bool) or not isinstance(folds, int) or folds < 2:
        raise UserError(f"cv.folds must be an integer >= 2, got {folds!r}")
    if cv.get("fold") is not None:  # one fold trained alone (cv.fold=K): the same windows, one point per seed
        return [("fold", [int(cv["fold"])])]
    return [("fold", list(range(folds)))]


def point_axes(config: dict[str, Any]) -> list[tuple[str, list[Any]]]:
    """Every axis a run's points vary along: the fold (cross-validation), then the ``sweep.*`` axes. A
    config with any is packed (several points in one program, under ``multirun/``)."""
    return fold_axis(config) + sweep_axes(config)


def expand(config: dict[str, Any]) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """``[(point config, {dotted key: value}), ...]``: one complete config per grid point (row-major).

    Without ``sweep.*`` values (and without cross-validation) this is the config itself as the single
    point, with ``{}``.
    """
    axes = point_axes(config)
    points = []
    for combo in itertools.product(*(values for _, values in axes)):
        point = copy.deepcopy(config)
        point["sweep"] = _empty_sweep(config)
        values = {}
        for (key, _), value in zip(axes, combo, strict=True):
            values[key] = value
            if key == "seed":
                point["seed"] = int(value)
            elif key == "fold":
                point["cv"]["fold"] = int(value)
            else:
                group, name = key.split(".", 1)
                point[group][name] = value
        points.append((point, values))
    return points


@dataclass(frozen=True)
class Point:
    """One trained agent: its complete config (written as ``config.yaml``), its values on the sweep
    axes (``{}`` for a single run) and its run directory."""

    config: dict[str, Any]
    values: dict[str, Any]
    dir: Path


@dataclass(frozen=True)
class EvalPlan:
    enabled: bool
    splits: tuple[str, ...]  # trading env: the held-out splits to evaluate
    episodes: int  # gymnax env: greedy episodes to average


@dataclass(frozen=True)
class RunPlan:
    """A single run (one point, ``root`` None) or a packed sweep (``root/<n>/`` per point)."""

    points: tuple[Point, ...]
    keys: tuple[str, ...]  # the sweep axes, in order
    root: Path | None
    resume: bool = False
    # The whole sweep when this plan is one process's share of it (:meth:`share`); None: the plan is whole.
    sweep: RunPlan | None = None

    @property
    def whole(self) -> RunPlan:
        """The whole run: this plan, or the sweep this process trains a share of."""
        return self.sweep if self.sweep is not None else self

    def share(self, indices: Sequence[int]) -> RunPlan:
        """The points ``indices`` of this plan: one process's share of a multi-process run, or the points of
        a resumed sweep that are not done yet. The same program as the whole sweep's (:meth:`swept` still
        sees every point, so a knob swept across processes stays traced), its own run directories."""
        return RunPlan(points=tuple(self.points[i] for i in indices), keys=self.keys, root=self.root,
                       resume=self.resume, sweep=self.whole)

    @property
    def base(self) -> dict[str, Any]:
        """The first point's config: everything but the axes is the same for every point."""
        return self.points[0].config

    @property
    def configs(self) -> list[dict[str, Any]]:
        return [p.config for p in self.points]

    @property
    def dirs(self) -> list[Path]:
        return [p.dir for p in self.points]

    @property
    def packed(self) -> bool:
        return self.root is not None

    @property
    def where(self) -> Path:
        """The directory a user names to resume or cancel the whole run."""
        return self.root if self.root is not None else self.points[0].dir

    @cached_property
    def spec(self) -> Any:
        """The static PPO spec (one compiled program for every point)."""
        from tradelab_jax.training.runner import ppo_spec

        return ppo_spec(self.base)

    @property
    def eval(self) -> EvalPlan:
        run = self.base["run"]
        return EvalPlan(enabled=bool(run.get("eval", True)),
                        splits=tuple(run.get("eval_splits") or ("val", "test")),
                        episodes=int(run["eval_episodes"]))

    def swept(self, group: str) -> tuple[str, ...]:
        """The knobs of ``group`` (``env``/``agent``) that take more than one value on the axes."""
        out = []
        for key in self.keys:
            g, _, name = key.partition(".")
            if g == group and len({repr(p.values[key]) for p in self.whole.points}) > 1:
                out.append(name)
        return tuple(out)

    def hyper_values(self) -> dict[str, list[float]]:
        """Every traced PPO knob's value per point (the ``[S]`` leaves of ``PPOHyper``)."""
        return {k: [float(p.config["agent"][k]) for p in self.points] for k in SWEEPABLE_AGENT}

    def seeds(self) -> list[int]:
        return [int(p.config["seed"]) for p in self.points]

    def packed_record(self) -> dict[str, Any]:
        """``packed.json``: each point's directory and values, and the axes; a cross-validation run adds
        its folds' windows (``folds``, training.envs.fold_record)."""
        record = {"points": [{"dir": p.dir.name, **p.values} for p in self.whole.points],
                  "keys": list(self.keys)}
        if "fold" in self.keys:
            from tradelab_jax.training.envs import fold_record, folds_of

            record["cv"] = {k: v for k, v in self.base["cv"].items() if k != "fold"}
            record["folds"] = [fold_record(self.base, f) for f in folds_of(self.base)]
        return record


def plan_run(plain: dict[str, Any], out_dir: Path) -> RunPlan:
    """The plan of a new run (``out_dir`` is its directory) or packed sweep (``out_dir/<n>/`` per point)."""
    expanded = expand(plain)
    keys = tuple(expanded[0][1])
    packed = len(expanded) > 1 or bool(keys)
    dirs = [out_dir / str(n) for n in range(len(expanded))] if packed else [out_dir]
    points = tuple(Point(cfg, values, d) for (cfg, values), d in zip(expanded, dirs, strict=True))
    return RunPlan(points=points, keys=keys, root=out_dir if packed else None)


def plan_resume(path: Path, runtime: dict[str, Any] | None = None) -> RunPlan:
    """The plan that continues a run directory, or every point of a packed sweep directory.

    The points' configs are their saved ``config.yaml`` (with the ``runtime`` run options a resume may
    change); a packed sweep's axes come from its ``packed.json``.
    """
    packed_file = path / runs.PACKED_FILE
    if packed_file.exists():
        import json

        record = json.loads(packed_file.read_text(encoding="utf-8"))
        by_dir = {str(p["dir"]): {k: v for k, v in p.items() if k != "dir"} for p in record["points"]}
        dirs, root, keys = runs.point_dirs(path), path, tuple(record.get("keys") or ())
    else:
        by_dir, dirs, root, keys = {}, [path], None, ()
    points = []
    for d in dirs:
        config = runs.read_config(d)
        config["run"].update(runtime or {})
        config["run"]["resume"] = None
        points.append(Point(config, by_dir.get(d.name, {}), d))
    plan = RunPlan(points=tuple(points), keys=keys, root=root, resume=True)
    # The points a resume trains (runs.left_to_train) are a share of the whole sweep (its statistics cover
    # every point once they are done).
    left = set(runs.left_to_train(dirs))
    return plan if not left or len(left) == len(dirs) else plan.share(
        [i for i, d in enumerate(dirs) if d in left])
