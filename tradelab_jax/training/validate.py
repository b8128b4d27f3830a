"""Semantic checks of a composed training config, run before Hydra makes any directory.

Hydra's schemas catch unknown keys and wrong types at compose time; this catches values that compose but
cannot train (``env.risk_pct=2``, ``agent.num_envs=0``, ``agent.gamma=1.5``, an unknown dataset or eval
split, a ``run.resume`` path that is not a run). Each failure is one :class:`UserError` sentence, raised
before the trainer writes a run directory or compiles anything, so a typo costs neither a failed run in
``outputs/`` nor a training that dies at evaluation time.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

from tradelab_jax import paths, runs
from tradelab_jax.errors import UserError
from tradelab_jax.knobs import AGENT_KNOBS, ENV_KNOBS, RUN_KNOBS, SEED, SWEEPABLE_AGENT, resolve_env_knobs

SPLITS = ("train", "val", "test")
# A maker rebate beyond this (a fraction of notional) is larger than major exchanges pay: a limit-order
# policy could then profit from churning alone, which is worth a warning, not a refusal.
LARGEST_REAL_REBATE = 0.0003


def check_resume(path: Any) -> Path:
    """The run (or packed sweep) directory ``run.resume`` names, if :func:`runs.resumable` lets the trainer
    continue it; refuses anything else."""
    resolved = Path(str(path)).expanduser().resolve()
    if runs.is_sweep_dir(resolved) or (resolved / runs.CONFIG_FILE).is_file():
        try:
            runs.resumable(resolved, for_trainer=True)
            # Read and verified here, before the trainer marks anything: a damaged checkpoint is refused
            # with the run left exactly as it was (the trainer reads it again when it restores).
            for d in runs.point_dirs(resolved) if runs.is_sweep_dir(resolved) else [resolved]:
                runs.read_checkpoint(d)
        except runs.NotResumable as why:
            raise UserError(f"run.resume={str(path)!r}: {why}") from None
        except runs.CheckpointError as why:
            raise UserError(f"cannot resume {resolved}: {why}") from None
        return resolved
    what = "does not exist" if not resolved.exists() else f"has no {runs.CONFIG_FILE}"
    raise UserError(f"run.resume={str(path)!r} is not a run directory ({resolved} {what}); give a run "
                    "directory from outputs/ (tradelab ui or ls outputs/ lists them)")


def check_run_dir(path: Any, what: str = "run.dir") -> None:
    """An explicit ``run.dir`` must be new, empty, or a run a launcher queued for this training (nothing
    stored is overwritten, and no run's files land among other files)."""
    resolved = paths.check_output_dir(str(path), what)
    # A CANCEL file placed ahead (stop after the first chunk), the launcher's console log and the numbered
    # point folders it queued (the UI's packed sweeps) are this run's own, not someone else's files.
    others = [p for p in resolved.iterdir() if p.name not in (runs.CANCEL_FILE, runs.CONSOLE_FILE)
              and not (p.is_dir() and p.name.isdigit() and (p / runs.STATUS_FILE).is_file())
              ] if resolved.is_dir() else []
    if others and runs.read_status(resolved) is None and not (resolved / runs.PACKED_FILE).is_file():
        raise UserError(f"{what}={str(path)!r} is a folder that already holds other files; a run directory "
                        "must be new or empty")
    packed = (resolved / runs.PACKED_FILE).is_file()
    for d in [resolved, *runs.point_dirs(resolved)] if packed else [resolved]:
        if runs.holds_run(d):
            raise UserError(f"{what}={str(path)!r} already holds a run ({runs.run_state(d, derive=False)}); "
                            f"choose another {what}, or continue it with run.resume={resolved}")


def _check_data(point: dict[str, Any]) -> None:
    from tradelab_jax.data.lake import Lake
    from tradelab_jax.features import load_feature_set

    Lake.at(point["data"].get("lake")).read_manifest(str(point["data"]["id"]))  # DataError if unknown
    load_feature_set(point.get("features") or "default")
    ENV_KNOBS["window"].check(point["env"].get("window", ENV_KNOBS["window"].default))


def _check_splits(plain: dict[str, Any]) -> None:
    """``data.start``/``data.end`` and ``data.split.*``: the sub-period holds bars, and the training split
    and every evaluated split have a bar to trade after the feature warm-up (training.envs)."""
    from tradelab_jax.training.envs import check_splits, cv_kind, dataset, folds_of

    if cv_kind(plain) != "none":
        dataset(plain)  # the sub-period holds bars
        folds_of(plain)  # the folds fit them (training/folds.py says why not, in one sentence)
        return
    run = plain["run"]
    evaluated = tuple(run.get("eval_splits") or ()) if run.get("eval", True) else ()
    check_splits(plain, tuple(dict.fromkeys(("train", *evaluated))))


def _check_cv(plain: dict[str, Any]) -> None:
    """``cv.*`` values that need no data: the kind, the walk-forward mode, ``cv.fold`` one of the folds."""
    from tradelab_jax.training.folds import CV_KINDS, WALK_MODES

    cv = plain.get("cv") or {}
    kind = cv.get("kind", "none")
    if kind not in CV_KINDS:
        raise UserError(f"invalid cv.kind {kind!r}: use one of {', '.join(CV_KINDS)} (or cv=<option>)")
    if kind == "none":
        if cv.get("fold") is not None:
            raise UserError(f"cv.fold={cv['fold']} picks a fold of a cross-validation, and cv is none; add "
                            "cv=walk_forward or cv=purged_kfold (or drop cv.fold)")
        return
    fold, folds = cv.get("fold"), cv.get("folds")
    if fold is not None and (isinstance(fold, bool) or not isinstance(fold, int) or not isinstance(folds, int)
                             or not 0 <= fold < folds):
        raise UserError(f"invalid cv.fold={fold!r}: one fold of the cv.folds={folds} to train alone, 0 to "
                        f"{folds - 1 if isinstance(folds, int) else 'cv.folds - 1'} (or null: every fold)")
    if cv.get("mode", "rolling") not in WALK_MODES:
        raise UserError(f"invalid cv.mode {cv.get('mode')!r}: use one of {', '.join(WALK_MODES)}")
    if (plain.get("env") or {}).get("kind") == "gymnax":
        raise UserError(f"cv.kind={kind} cuts a dataset's bars into folds; a gymnax env has none "
                        "(use cv=none)")


def _check_knobs(point: dict[str, Any], warned: set[float]) -> None:
    from tradelab_jax.training.envs import trading_knobs

    knobs = resolve_env_knobs(trading_knobs(point))
    rebate = -float(knobs["maker_fee"])
    if rebate > LARGEST_REAL_REBATE and rebate not in warned:
        warned.add(rebate)
        print(f"warning: env.maker_fee={-rebate} is a rebate of {rebate:.4%} per fill, more than major "
              f"exchanges pay (about {LARGEST_REAL_REBATE:.2%}); a policy can then profit from churning "
              "limit orders alone", file=sys.stderr)


def _check_gymnax(point: dict[str, Any]) -> None:
    import gymnax

    env_id = point["env"]["id"]
    if env_id not in gymnax.registered_envs:
        raise UserError(f"unknown gymnax env.id {env_id!r}; valid: {', '.join(gymnax.registered_envs)}")


# The keys a feature set mapping has (conf/features/*.yaml; its entries are checked by features.parse_specs).
FEATURE_SET_KEYS = ("name", "features")


def _check_keys(plain: dict[str, Any]) -> None:
    """Keys that nothing reads (added with Hydra's ``+key=value``, at any depth) are refused, not silently
    ignored: every mapping of the config is compared with its schema dataclass."""
    import dataclasses
    import typing

    from tradelab_jax.training.config import Config, GymnaxEnvConfig, TradingEnvConfig

    def walk(node: Any, schema: type, where: str) -> None:
        fields = {f.name: f for f in dataclasses.fields(schema)}
        extra = sorted(set(node) - set(fields))
        if extra:
            raise UserError(f"unknown config key {where + extra[0]!r} (added with +?); valid keys there: "
                            f"{', '.join(fields)}")
        hints = typing.get_type_hints(schema)
        for name, value in node.items():
            sub = hints.get(name)
            if isinstance(value, dict) and dataclasses.is_dataclass(sub):
                walk(value, sub, f"{where}{name}.")

    walk({k: v for k, v in plain.items() if k not in ("env", "features")}, Config, "")
    env = plain.get("env") or {}
    walk(env, GymnaxEnvConfig if env.get("kind") == "gymnax" else TradingEnvConfig, "env.")
    features = plain.get("features")
    if isinstance(features, dict):
        extra = sorted(set(features) - set(FEATURE_SET_KEYS))
        if extra:
            raise UserError(f"unknown config key {'features.' + extra[0]!r} (added with +?); valid keys "
                            f"there: {', '.join(FEATURE_SET_KEYS)}")


def check_config(plain: dict[str, Any]) -> None:
    """Raise :class:`UserError` (one sentence) if the resolved config ``plain`` cannot train."""
    from tradelab_jax.training.envs import is_gymnax
    from tradelab_jax.training.plan import expand
    from tradelab_jax.training.runner import ppo_spec

    _check_keys(plain)
    run = plain["run"]
    if run.get("resume"):
        check_resume(run["resume"])
        return  # everything else comes from the run's saved config
    if run.get("dir"):
        check_run_dir(run["dir"])
    elif run.get("outputs"):
        paths.check_output_dir(str(run["outputs"]), "run.outputs")
    from tradelab_jax import tracking

    tracking.check_names(run.get("loggers", tracking.DEFAULT))  # before any folder exists
    tracking.check_uri(run.get("mlflow_uri"))
    for split in run.get("eval_splits") or []:
        if split not in SPLITS:
            raise UserError(f"invalid run.eval_splits entry {split!r}: use any of {', '.join(SPLITS)}")
    for name, knob in RUN_KNOBS.items():
        if name != "eval_episodes" or is_gymnax(plain):
            knob.check(run.get(name, knob.default))
    _check_cv(plain)
    points = [point for point, _ in expand(plain)]
    for point in points:
        SEED.check(point["seed"])
        ppo_spec(point)
        for name in SWEEPABLE_AGENT:
            AGENT_KNOBS[name].check(point["agent"][name])
    if is_gymnax(plain):
        _check_gymnax(plain)
        return
    _check_data(plain)  # data, features and window are the same for every point; only knobs vary
    _check_splits(plain)
    warned: set[float] = set()
    for point in points:
        _check_knobs(point, warned)
