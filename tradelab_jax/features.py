"""Feature sets: a YAML list of indicator features -> one ``[T, F]`` float32 matrix with names and warm-up.

A feature set lives in ``conf/features/<name>.yaml`` (also the Hydra config group ``features``)::

    name: default
    features:
      - {kind: zscore, window: 30}
      - {kind: vwap_distance, window: 60}

:func:`load_feature_set` turns it into a tuple of hashable :class:`FeatureSpec` (checked here, before any
compile); :func:`compute_features` computes them once per dataset, on the device, in one jitted program.
Every feature is scale-free (a z-score, a bounded oscillator or a price-relative quantity in a stated unit)
and uses only bars ``<= t``; the optional ``norm_window`` normalisation is a rolling z-score over the
feature's own past. Bars before ``warmup`` hold NaN for the features not yet defined: environments start
episodes at or after ``warmup`` and never fill them with zeros. See docs/indicators.md.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import yaml
from flax import struct

from tradelab_jax import indicators as ind
from tradelab_jax.errors import UserError
from tradelab_jax.paths import check_id, conf_dir

__all__ = [
    "FEATURE_KINDS",
    "FeatureMatrix",
    "FeatureSpec",
    "compute_features",
    "load_feature_set",
    "parse_specs",
]

DAY_MS = 86_400_000
UNITS = {"frac": 1.0, "pct": 100.0, "bps": 10_000.0}
# Keys every feature accepts besides its own parameters.
COMMON_KEYS = ("kind", "name", "norm_window", "optional")


@dataclass(frozen=True)
class FeatureSpec:
    """One feature column: a unique ``name``, an indicator ``kind`` and its ``params`` as sorted
    ``(key, value)`` pairs (hashable, so a tuple of specs can be a static jit argument)."""

    name: str
    kind: str
    params: tuple[tuple[str, Any], ...] = ()

    def param(self, key: str) -> Any:
        return dict(self.params)[key]

    @property
    def lookback(self) -> int:
        """Bars of warm-up: the first bar at which this feature is defined."""
        p = dict(self.params)
        return FEATURE_KINDS[self.kind].lookback(p) + max(int(p.get("norm_window", 0)) - 1, 0)


@struct.dataclass
class FeatureMatrix:
    """``values`` [T, F] float32 (NaN before each feature's warm-up), ``names`` (F,), ``warmup``: the first
    bar at which every feature is finite."""

    values: jax.Array
    names: tuple[str, ...] = struct.field(pytree_node=False)
    warmup: int = struct.field(pytree_node=False)


# ---------------------------------------------------------------------------------------------------------
# Feature kinds


@dataclass(frozen=True)
class _Kind:
    compute: Callable[[Mapping[str, jax.Array], dict], jax.Array]
    defaults: tuple[tuple[str, Any], ...]
    lookback: Callable[[dict], int]
    columns: Callable[[dict, Sequence[str]], tuple[str, ...]]  # required columns, given the available ones
    label: Callable[[dict], str]  # the name suffix after the kind


def _cols(*names: str):
    return lambda p, available: names


def _win(p: dict) -> str:
    return f"_{p['window']}"


def _unit(p: dict) -> str:
    return f"_{p['unit']}"


def _relative_to_close(dev: jax.Array, close: jax.Array) -> jax.Array:
    """``close / (close + dev) - 1`` for ``dev = level - close``, without forming a difference of two
    large numbers."""
    return -dev / (close + dev)


def _vwap_distance(b, p):
    dev = ind._vwap_deviation(b["high"], b["low"], b["close"], b["volume"], p["window"])
    return ind._mask_warmup(_relative_to_close(dev, b["close"]) * UNITS[p["unit"]], p["window"] - 1)


def _session_vwap_distance(b, p):
    dev = ind._session_vwap_deviation(b["high"], b["low"], b["close"], b["volume"], b["session"])
    return _relative_to_close(dev, b["close"]) * UNITS[p["unit"]]


def _rsi(b, p):
    gain, loss = ind._rsi_averages(b["close"], p["window"])
    total = gain + loss
    # (RSI - 50) / 50; a window without any move is neutral (TA-Lib's RSI says 0 there).
    return jnp.where(total == 0, 0, (gain - loss) / jnp.where(total == 0, 1, total))


def _macd_lookback(p: dict) -> int:
    return max(p["fast"], p["slow"]) + p["signal"] - 2


def _taker_columns(p: dict, available: Sequence[str]) -> tuple[str, ...]:
    if "taker_sell_volume" in available:
        return ("taker_buy_volume", "taker_sell_volume")
    return ("taker_buy_volume", "volume")


def _taker_imbalance(b, p):
    buy = b["taker_buy_volume"]
    sell = b["taker_sell_volume"] if "taker_sell_volume" in b else b["volume"] - buy
    return ind.taker_imbalance(buy, sell, p["window"])


def _column(b, p):
    """A dataset column as it was ``lag`` bars ago (NaN for the first ``lag`` bars)."""
    x = b[p["column"]]
    lag = p["lag"]
    if lag == 0:
        return x
    return jnp.concatenate([jnp.full((lag,), jnp.nan, x.dtype), x[:-lag]])


FEATURE_KINDS: dict[str, _Kind] = {
    "zscore": _Kind(
        compute=lambda b, p: ind.zscore(b[p["column"]], p["window"]),
        defaults=(("column", "close"), ("window", 30)),
        lookback=lambda p: p["window"] - 1,
        columns=lambda p, available: (p["column"],),
        label=lambda p: (f"_{p['column']}" if p["column"] != "close" else "") + _win(p),
    ),
    "vwap_distance": _Kind(
        compute=_vwap_distance,
        defaults=(("unit", "pct"), ("window", 60)),
        lookback=lambda p: p["window"] - 1,
        columns=_cols("high", "low", "close", "volume"),
        label=lambda p: _win(p) + _unit(p),
    ),
    "session_vwap_distance": _Kind(
        compute=_session_vwap_distance,
        defaults=(("unit", "pct"),),
        lookback=lambda p: 0,
        columns=_cols("ts", "high", "low", "close", "volume"),
        label=_unit,
    ),
    "rsi": _Kind(
        compute=_rsi,
        defaults=(("window", 14),),
        lookback=lambda p: p["window"],
        columns=_cols("close"),
        label=_win,
    ),
    "atr": _Kind(
        compute=lambda b, p: (
            ind.atr(b["high"], b["low"], b["close"], p["window"]) / b["close"] * UNITS[p["unit"]]
        ),
        defaults=(("unit", "bps"), ("window", 14)),
        lookback=lambda p: p["window"],
        columns=_cols("high", "low", "close"),
        label=lambda p: _win(p) + _unit(p),
    ),
    "bollinger_pctb": _Kind(
        compute=lambda b, p: ind.bollinger(b["close"], p["window"], float(p["k"])).percent_b,
        defaults=(("k", 2.0), ("window", 20)),
        lookback=lambda p: p["window"] - 1,
        columns=_cols("close"),
        label=lambda p: f"{_win(p)}_{p['k']:g}",
    ),
    "bollinger_bandwidth": _Kind(
        compute=lambda b, p: (
            ind.bollinger(b["close"], p["window"], float(p["k"])).bandwidth * UNITS[p["unit"]]
        ),
        defaults=(("k", 2.0), ("unit", "pct"), ("window", 20)),
        lookback=lambda p: p["window"] - 1,
        columns=_cols("close"),
        label=lambda p: f"{_win(p)}_{p['k']:g}{_unit(p)}",
    ),
    "macd_hist": _Kind(
        compute=lambda b, p: (
            ind.macd(b["close"], p["fast"], p["slow"], p["signal"]).hist / b["close"] * UNITS[p["unit"]]
        ),
        defaults=(("fast", 12), ("signal", 9), ("slow", 26), ("unit", "bps")),
        lookback=_macd_lookback,
        columns=_cols("close"),
        label=lambda p: f"_{p['fast']}_{p['slow']}_{p['signal']}{_unit(p)}",
    ),
    "log_return": _Kind(
        compute=lambda b, p: ind.log_return(b["close"]) * UNITS[p["unit"]],
        defaults=(("unit", "bps"),),
        lookback=lambda p: 1,
        columns=_cols("close"),
        label=_unit,
    ),
    "realized_vol": _Kind(
        compute=lambda b, p: ind.realized_vol(b["close"], p["window"]) * UNITS[p["unit"]],
        defaults=(("unit", "pct"), ("window", 60)),
        lookback=lambda p: p["window"],
        columns=_cols("close"),
        label=lambda p: _win(p) + _unit(p),
    ),
    "volume_zscore": _Kind(
        compute=lambda b, p: ind.volume_zscore(
            jnp.log1p(b["volume"]) if p["log"] else b["volume"], p["window"]
        ),
        defaults=(("log", True), ("window", 60)),
        lookback=lambda p: p["window"] - 1,
        columns=_cols("volume"),
        label=lambda p: ("_log" if p["log"] else "") + _win(p),
    ),
    "clv": _Kind(
        compute=lambda b, p: ind.close_location_value(b["high"], b["low"], b["close"]),
        defaults=(),
        lookback=lambda p: 0,
        columns=_cols("high", "low", "close"),
        label=lambda p: "",
    ),
    "taker_imbalance": _Kind(
        compute=_taker_imbalance,
        defaults=(("window", 1),),
        lookback=lambda p: p["window"] - 1,
        columns=_taker_columns,
        label=_win,
    ),
    # A user's own signal column, causal only if each bar's value was known at that bar's close
    # (docs/lookahead.md); ``lag`` shifts it later by whole bars.
    "column": _Kind(
        compute=_column,
        defaults=(("column", ""), ("lag", 0)),
        lookback=lambda p: p["lag"],
        columns=lambda p, available: (p["column"],),
        label=lambda p: f"_{p['column']}" + (f"_lag{p['lag']}" if p["lag"] else ""),
    ),
}

_INT_KEYS = {"lag": 0, "window": 1, "fast": 2, "slow": 2, "signal": 1, "norm_window": 0}


# ---------------------------------------------------------------------------------------------------------
# Loading and checking


def _check_value(where: str, key: str, value: Any) -> Any:
    if key in _INT_KEYS:
        lo = _INT_KEYS[key]
        if isinstance(value, bool) or not isinstance(value, int) or value < lo:
            raise UserError(f"{where}: {key} must be an integer >= {lo}, got {value!r}")
    elif key == "unit" and value not in UNITS:
        raise UserError(f"{where}: unit must be one of {', '.join(UNITS)}, got {value!r}")
    elif key == "k" and (isinstance(value, bool) or not isinstance(value, int | float) or value <= 0):
        raise UserError(f"{where}: k must be a positive number, got {value!r}")
    elif key in {"log", "optional"} and not isinstance(value, bool):
        raise UserError(f"{where}: {key} must be true or false, got {value!r}")
    elif key in {"column", "name"} and (not isinstance(value, str) or not value):
        raise UserError(f"{where}: {key} must be a non-empty string, got {value!r}")
    return float(value) if key == "k" else value


def parse_specs(entries: Sequence[Mapping[str, Any]], source: str = "feature set") -> tuple[FeatureSpec, ...]:
    """Check a list of ``{kind: ..., <params>}`` mappings and resolve defaults and names."""
    if isinstance(entries, str | bytes) or not isinstance(entries, Sequence) or not entries:
        raise UserError(f"{source}: 'features' must be a non-empty list of {{kind: ..., ...}} entries")
    specs: list[FeatureSpec] = []
    for i, raw in enumerate(entries):
        where = f"{source}, feature {i + 1}"
        if not isinstance(raw, Mapping) or "kind" not in raw:
            raise UserError(f"{where}: each feature must be a mapping with a 'kind' (one of {_kinds()})")
        entry = dict(raw)
        kind = entry.pop("kind")
        if kind not in FEATURE_KINDS:
            raise UserError(f"{where}: unknown feature kind {kind!r}; valid kinds: {_kinds()}")
        spec_kind = FEATURE_KINDS[kind]
        params = dict(spec_kind.defaults)
        valid = sorted([*params, "name", "norm_window", "optional"])
        for key, value in entry.items():
            if key not in valid:
                raise UserError(f"{where} ({kind}): unknown parameter {key!r}; valid: {', '.join(valid)}")
            params[key] = _check_value(f"{where} ({kind})", key, value)
        if kind == "column" and not params["column"]:
            raise UserError(f"{where} (column): name the dataset column to read, e.g. column: funding_rate")
        if kind == "rsi" and params["window"] < 2:
            raise UserError(f"{where} (rsi): window must be an integer >= 2, got {params['window']!r}")
        name = params.pop("name", None) or kind + spec_kind.label(params)
        if params.get("norm_window", 0) > 1 and "name" not in entry:
            name += f"_n{params['norm_window']}"
        params.setdefault("norm_window", 0)
        params.setdefault("optional", False)
        specs.append(FeatureSpec(name=name, kind=kind, params=tuple(sorted(params.items()))))
    names = [s.name for s in specs]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise UserError(f"{source}: duplicate feature names {', '.join(dupes)}; give one of each a 'name'")
    return tuple(specs)


def _kinds() -> str:
    return ", ".join(FEATURE_KINDS)


def _available_sets() -> list[str]:
    folder = conf_dir() / "features"
    return sorted(p.stem for p in folder.glob("*.yaml")) if folder.is_dir() else []


def load_feature_set(name_or_path: str | os.PathLike | Mapping[str, Any]) -> tuple[FeatureSpec, ...]:
    """Specs of a feature set: a name in ``conf/features/``, a path to a YAML file, or the set's mapping
    itself (e.g. the composed Hydra ``features`` group, a ``DictConfig``)."""
    if isinstance(name_or_path, Mapping):
        doc, source = name_or_path, f"feature set {name_or_path.get('name', '<mapping>')!r}"
    else:
        text = os.fspath(name_or_path)
        if text.endswith((".yaml", ".yml")) or os.sep in text or "/" in text:
            path = Path(text).expanduser()
            if not path.is_file():
                raise UserError(f"feature set file {text!r} does not exist")
        else:
            check_id(text, "feature set")
            path = conf_dir() / "features" / f"{text}.yaml"
            if not path.is_file():
                raise UserError(
                    f"unknown feature set {text!r}; valid: {', '.join(_available_sets()) or '(none found)'}"
                )
        source = str(path)
        try:
            doc = yaml.safe_load(path.read_text(encoding="utf-8"))
        except yaml.YAMLError as err:
            raise UserError(f"{source} is not valid YAML: {err}".replace("\n", " ")) from None
    if not isinstance(doc, Mapping) or "features" not in doc:
        raise UserError(f"{source}: expected a mapping with a 'features' list")
    return parse_specs(doc["features"], source)


# ---------------------------------------------------------------------------------------------------------
# Computing


def _session_ids(ts) -> jax.Array:
    """UTC day index per bar (relative to the first bar, so it fits int32); on the host for numpy input."""
    if isinstance(ts, jax.Array):  # traced or on device: needs x64 for epoch milliseconds
        return (ts // DAY_MS - ts[0] // DAY_MS).astype(jnp.int32)
    ts = np.asarray(ts, dtype=np.int64)
    return jnp.asarray((ts // DAY_MS - ts[0] // DAY_MS).astype(np.int32))


def _active_specs(bars: Mapping[str, Any], specs: Sequence[FeatureSpec]) -> tuple[FeatureSpec, ...]:
    available = list(bars)
    active = []
    for spec in specs:
        if spec.kind not in FEATURE_KINDS:
            raise UserError(f"feature {spec.name!r}: unknown kind {spec.kind!r}; valid kinds: {_kinds()}")
        p = dict(spec.params)
        missing = [c for c in FEATURE_KINDS[spec.kind].columns(p, available) if c not in bars]
        if missing and p.get("optional"):
            continue
        if missing:
            raise UserError(
                f"feature {spec.name!r} needs column(s) {', '.join(missing)}, which the bars lack; "
                f"available columns: {', '.join(available)}"
            )
        active.append(spec)
    if not active:
        raise UserError(
            "no feature of the set can be computed from these bars (all optional ones lack columns)"
        )
    return tuple(active)


@partial(jax.jit, static_argnames=("specs",))
def _compute_values(columns: dict[str, jax.Array], specs: tuple[FeatureSpec, ...]) -> jax.Array:
    cols = []
    for spec in specs:
        p = dict(spec.params)
        value = FEATURE_KINDS[spec.kind].compute(columns, p)
        if p["norm_window"] > 1:
            value = ind.zscore(value, p["norm_window"])
        cols.append(value.astype(jnp.float32))
    return jnp.stack(cols, axis=1)


def compute_features(bars: Mapping[str, Any], specs: Sequence[FeatureSpec]) -> FeatureMatrix:
    """Compute a feature set over bars (``ts``, ``open``, ``high``, ``low``, ``close``, ``volume`` and
    optional extras, 1-D arrays of length T) -> :class:`FeatureMatrix` with ``values`` [T, F] float32.

    Host (numpy) float64 bars are computed in float64 on the device and stored as float32: a float32 price
    near 1e5 has lost its cents (ulp 0.008), which moves a quiet window's z-score by up to ~1e-3. JAX
    arrays (e.g. under an outer ``jax.jit``) are computed in their own dtype. Optional features whose
    columns are missing are left out, their names with them.
    """
    specs = _active_specs(bars, tuple(specs))
    needed: set[str] = set()
    for spec in specs:
        needed.update(FEATURE_KINDS[spec.kind].columns(dict(spec.params), list(bars)))
    host64 = (
        all(isinstance(bars[k], np.ndarray) and bars[k].dtype == np.float64 for k in needed - {"ts"})
        and not jax.config.jax_enable_x64
    )
    with jax.enable_x64(True) if host64 else contextlib.nullcontext():
        columns: dict[str, jax.Array] = {}
        for key in sorted(needed - {"ts"}):
            arr = jnp.asarray(bars[key])
            if not jnp.issubdtype(arr.dtype, jnp.floating):
                arr = arr.astype(jnp.result_type(float))
            columns[key] = arr
        if "ts" in needed:
            columns["session"] = _session_ids(bars["ts"])
        values = _compute_values(columns, specs)
    return FeatureMatrix(
        values=values,
        names=tuple(s.name for s in specs),
        warmup=max(s.lookback for s in specs),
    )
