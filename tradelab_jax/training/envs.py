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
    """A dataset as one run uses it: the verified bars and manifest of its sub-period (``data.start`` to
    ``data.end``, all bars by default), and the feature matrix over them.

    Features are computed once over the whole dataset (they are causal) and then cut to the sub-period, so
    its first bars see the history before it, as a later split's bars do; ``features.warmup`` counts the
    sub-period's leading rows still undefined (0 when the history before it covers the warm-up).
    ``lookback`` is the feature set's own warm-up in bars (how far back a feature row reads) and ``offset``
    the sub-period's first bar in the whole dataset.
    """

    market: Any  # tradelab_jax.data.MarketData
    features: Any  # tradelab_jax.features.FeatureMatrix
    lookback: int = 0
    offset: int = 0


_DATASETS: OrderedDict[Any, Dataset] = OrderedDict()
_MAX_DATASETS = 2  # a process trains one run (or sweep) at a time; the UI and tests may alternate two


def dataset(config: dict[str, Any]) -> Dataset:
    """The config's dataset (its sub-period) and features, loaded and verified once per process.

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
        matrix = features.compute_features(market.bars, specs)
        _DATASETS[key] = Dataset(market, matrix, lookback=int(matrix.warmup))
        while len(_DATASETS) > _MAX_DATASETS:
            _DATASETS.popitem(last=False)
    _DATASETS.move_to_end(key)
    full = _DATASETS[key]
    lo, hi = period_bounds(full.market, config)
    if (lo, hi) == (0, len(full.market)):
        return full
    matrix = full.features
    return Dataset(full.market.between(config["data"].get("start"), config["data"].get("end")),
                   matrix.replace(values=matrix.values[lo:hi], warmup=max(0, int(matrix.warmup) - lo)),
                   lookback=full.lookback, offset=lo)


def period_bounds(market: Any, config: dict[str, Any]) -> tuple[int, int]:
    """Bar indices ``[lo, hi)`` of the whole dataset ``market`` inside ``data.start`` .. ``data.end``
    (``start <= ts < end``, UTC); one sentence when they are out of order or hold no bar."""
    import numpy as np

    from tradelab_jax.data.schema import ms_to_iso, parse_time

    cfg = config["data"]
    ts = np.asarray(market.bars["ts"])
    start = None if cfg.get("start") is None else parse_time(cfg["start"], "data.start")
    end = None if cfg.get("end") is None else parse_time(cfg["end"], "data.end")
    if start is not None and end is not None and start >= end:
        raise UserError(f"data.start {ms_to_iso(start)} must be before data.end {ms_to_iso(end)}")
    lo = 0 if start is None else int(np.searchsorted(ts, start, "left"))
    hi = len(ts) if end is None else int(np.searchsorted(ts, end, "left"))
    if hi - lo < 2:
        raise UserError(
            f"the sub-period from {'the first bar' if start is None else ms_to_iso(start)} (data.start) "
            f"to {'the last bar' if end is None else ms_to_iso(end)} (data.end) holds {max(0, hi - lo)} "
            f"bar(s) of {market.dataset_id}, which covers {ms_to_iso(int(ts[0]))} to "
            f"{ms_to_iso(int(ts[-1]))}; choose a sub-period inside it"
        )
    return lo, hi


# The split of docs/training.md when data.split is not set (MarketData.split's default fractions).
DEFAULT_SPLIT = {"train": 0.70, "val": 0.15, "val_start": None, "test_start": None}


def split_options(config: dict[str, Any]) -> dict[str, Any]:
    """``split_fractions`` / ``split_dates`` for :func:`tradelab_jax.env.from_market` from ``data.split``
    (both None by default: the env's own 70/15/15 cut, bit for bit)."""
    split = {**DEFAULT_SPLIT, **(config["data"].get("split") or {})}
    dates = (split["val_start"], split["test_start"])
    if any(d is not None for d in dates):
        if any(d is None for d in dates):
            raise UserError("data.split.val_start and data.split.test_start go together: give both dates "
                            "(or neither, to cut by data.split.train and data.split.val)")
        return {"split_fractions": None, "split_dates": tuple(str(d) for d in dates)}
    train, val = split["train"], split["val"]
    for name, value in (("train", train), ("val", val)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value < 1:
            raise UserError(f"data.split.{name} must be a fraction of the bars in [0, 1), got {value!r}")
    if train <= 0 or train + val >= 1:
        raise UserError(f"data.split.train={train} and data.split.val={val} must leave bars to train and "
                        "test on: train above 0 and train + val below 1 (test gets the rest)")
    if (train, val) == (DEFAULT_SPLIT["train"], DEFAULT_SPLIT["val"]):
        return {"split_fractions": None, "split_dates": None}
    return {"split_fractions": (float(train), float(val), 1.0 - float(train) - float(val)),
            "split_dates": None}


def split_range(config: dict[str, Any], split: str) -> tuple[int, int]:
    """Bar indices ``[lo, hi)`` of ``split`` in the config's sub-period (:func:`dataset`'s bars)."""
    from tradelab_jax.env import _split_range  # the env's own cut (make/from_market), not a second one

    market = dataset(config).market
    opts = split_options(config)
    return _split_range(market, split, len(market), opts["split_fractions"], opts["split_dates"])


def check_splits(config: dict[str, Any], splits: tuple[str, ...]) -> None:
    """Every split in ``splits`` has a bar to trade after the feature warm-up and observation window; one
    sentence naming the split otherwise."""
    from tradelab_jax.data.schema import ms_to_iso
    from tradelab_jax.env.trading import valid_starts

    loaded = dataset(config)
    ts = loaded.market.bars["ts"]
    window = int(config["env"].get("window", 1))
    by_dates = split_options(config)["split_dates"] is not None  # the options' own sentences first
    for name in splits:
        try:
            lo, hi = split_range(config, name)
        except UserError as err:
            split = {**DEFAULT_SPLIT, **(config["data"].get("split") or {})}
            if by_dates:
                raise
            raise UserError(f"the {name} split of the {len(ts)} bars is empty with data.split.train="
                            f"{split['train']} and data.split.val={split['val']}; give it a larger share"
                            ) from err
        try:
            valid_starts(split_start=lo, split_stop=hi, warmup=int(loaded.features.warmup), window=window,
                         episode_length=int(config["env"]["episode_length"]))
        except UserError:
            raise UserError(
                f"the {name} split ({hi - lo} bars, {ms_to_iso(int(ts[lo]))} to "
                f"{ms_to_iso(int(ts[hi - 1]))}) has no bar to trade after the feature warm-up "
                f"({int(loaded.features.warmup)} bars) and observation window ({window}); give it more bars "
                "with data.split.*, data.start or data.end"
            ) from None


def _span(ts: Any, lo: int, hi: int) -> list[Any]:
    """``[first ts, last ts, bars]`` of bars ``[lo, hi)`` (ISO UTC): how eval_summary.json records a range."""
    from tradelab_jax.data.schema import ms_to_iso

    return [ms_to_iso(int(ts[lo])), ms_to_iso(int(ts[hi - 1])), int(hi - lo)]


def split_record(config: dict[str, Any]) -> dict[str, Any]:
    """eval_summary.json's ``data_splits``: the sub-period and each split as ``[first ts, last ts, bars]``;
    a cross-validation point records its fold instead (``fold``, and its test window as ``test``)."""
    market = dataset(config).market
    ts = market.bars["ts"]
    record: dict[str, Any] = {"period": _span(ts, 0, len(ts))}
    fold = point_fold(config)
    if fold is not None:
        return {**record, "test": _span(ts, *fold.test), "fold": fold_record(config, fold)}
    for name in ("train", "val", "test"):
        record[name] = _span(ts, *split_range(config, name))
    return record


# Cross-validation (training/folds.py holds the arithmetic; docs/training.md, "Splits and cross-validation").
BOUND_FIELDS = ("start_min", "start_max", "last_bar", "hole_lo", "hole_hi")


def cv_kind(config: dict[str, Any]) -> str:
    return str((config.get("cv") or {}).get("kind") or "none")


def folds_of(config: dict[str, Any]) -> list[Any]:
    """The config's folds over its sub-period's bars ([] without cross-validation); UserError (one
    sentence) when they do not fit.

    The observation guard uses the feature set's full warm-up (``Dataset.lookback``), not the rows left
    undefined in the sub-period: a feature row still reads that many bars back.
    """
    from tradelab_jax.training.folds import make_folds

    if cv_kind(config) == "none" or is_gymnax(config):
        return []
    cv = config["cv"]
    loaded = dataset(config)
    return make_folds(cv_kind(config), len(loaded.market), folds=cv["folds"], warmup=loaded.lookback,
                      window=int(config["env"].get("window", 1)),
                      episode_length=int(config["env"]["episode_length"]), test=cv.get("test"),
                      train=cv.get("train"), embargo_bars=cv.get("embargo_bars", 0),
                      mode=cv.get("mode", "rolling"))


def point_fold(config: dict[str, Any]) -> Any:
    """The fold a cross-validation point trains on (its ``cv.fold``, set by the run plan), or None."""
    fold = (config.get("cv") or {}).get("fold")
    if fold is None or cv_kind(config) == "none":
        return None
    return folds_of(config)[int(fold)]


def fold_record(config: dict[str, Any], fold: Any) -> dict[str, Any]:
    """A fold's bounds in bar indices of the sub-period, and its ranges as ``[first ts, last ts, bars]``."""
    ts = dataset(config).market.bars["ts"]
    record = fold.record()
    record["test_span"] = _span(ts, *fold.test)
    record["embargo_span"] = _span(ts, *fold.embargo) if fold.embargo[1] > fold.embargo[0] else None
    record["train_spans"] = [_span(ts, lo, hi) for lo, hi in fold.train]
    return record


def _fold_env(config: dict[str, Any], split: str, fold: Any, knobs: dict[str, Any]) -> tuple[Any, Any]:
    """A cross-validation point's env: its fold's training starts (``train``) or its test window."""
    import jax.numpy as jnp

    from tradelab_jax import env as trading_env
    from tradelab_jax.env.trading import int_dtype

    if split not in ("train", "test"):
        raise UserError(f"with cross-validation (cv.kind={cv_kind(config)}) a fold has a training range and "
                        f"a test window, no {split!r} split; set run.eval_splits=[test]")
    loaded = dataset(config)
    n = len(loaded.market)
    env, params = trading_env.from_arrays(
        loaded.market.bars, loaded.features.values, warmup=int(loaded.features.warmup),
        split=(0, n) if split == "train" else fold.test, window=int(config["env"].get("window", 1)), **knobs)
    if split == "train":
        params = params.replace(**{f: jnp.asarray(getattr(fold, f), int_dtype()) for f in BOUND_FIELDS})
    return env, params


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
    fold = point_fold(config)
    if fold is not None:
        return _fold_env(config, split, fold, knobs)
    return trading_env.from_market(loaded.market, loaded.features, split=split,
                                   window=int(env_cfg.get("window", 1)), **split_options(config), **knobs)


def batch_env_params(config_points: list[dict[str, Any]], env: Any, params: Any,
                     swept: tuple[str, ...] = ()) -> tuple[Any, Any]:
    """``(params, in_axes)`` with a leading ``[S]`` axis on the env knobs ``swept`` (the run plan's env
    axes, :meth:`RunPlan.swept`; never rediscovered by comparing the points' configs).

    Points of different cross-validation folds (training) also get a leading ``[S]`` axis on the start
    bounds (:data:`BOUND_FIELDS`, each point's fold's): folds differ only in these traced leaves, so every
    fold trains in the one compiled program.
    """
    import jax

    if is_gymnax(config_points[0]):
        return params, jax.tree.map(lambda _: None, params)
    import jax.numpy as jnp

    from tradelab_jax.env import params_in_axes, sweep_params

    knobs = [trading_knobs(c) for c in config_points]
    batched, axes = (sweep_params(params, **{k: [kn[k] for kn in knobs] for k in swept}) if swept
                     else (params, params_in_axes(params, ())))
    folds = [(c.get("cv") or {}).get("fold") for c in config_points]
    if len(set(folds)) > 1:
        bounds = [point_fold(c) for c in config_points]
        batched = batched.replace(**{f: jnp.asarray([getattr(b, f) for b in bounds], getattr(params, f).dtype)
                                     for f in BOUND_FIELDS})
        axes = axes.replace(**dict.fromkeys(BOUND_FIELDS, 0))
    return batched, axes
