"""The launch form: typed parsing of every field into a list of Hydra overrides (no Gradio here).

Every value that reaches an override is parsed into a number, a boolean or one of a fixed set of names, then
formatted by this module. Free text never passes through, so a field cannot inject a second override, a
Hydra sweep or an interpolation. Each knob's default and range check is the knob table's
(:mod:`tradelab_jax.knobs`), so a value the form refuses is refused by ``tradelab train`` (and sweeps and
``pod launch``) with the same sentence; the trainer checks it again when it composes the config.

The form is :data:`FIELD_TABLE` (field name -> :class:`Field`: how its text is parsed, which knob checks
it, the overrides it becomes) plus the cross-field checks in :data:`CROSS_CHECKS`.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tradelab_jax import paths
from tradelab_jax.errors import UserError
from tradelab_jax.knobs import AGENT_KNOBS, ENV_KNOBS, RUN_KNOBS, SEED, Knob, num_updates

ORDER_TYPES = tuple(ENV_KNOBS["order_type"].choices)
MAX_POINTS = 256  # a packed sweep larger than this is almost certainly a typo
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
# A sign is allowed so that "-1" reaches the knob's check and gets its sentence (the CLI's), not ours.
_INT_RE = re.compile(r"^[+-]?\d+(_\d{3})*$")
_SEP_RE = re.compile(r"[,\s]+")
# A number and a list separator are all a numeric field may contain.
_NUMERIC_CHARS = re.compile(r"^[0-9eE+\-.,_\s]*$")


@dataclass(frozen=True)
class Dataset:
    id: str
    label: str  # "binance_btcusdt_1m: BTC/USDT 1m, 2025-05-20 -> 2025-08-18 (130,708 bars)"
    ok: bool = True


@dataclass(frozen=True)
class Choices:
    """What the form may offer: datasets of the lake, feature sets of conf/features, the defaults (the knob
    table's, and the dataset and feature set of conf/config.yaml); a default missing here is the table's."""

    datasets: tuple[Dataset, ...]
    feature_sets: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    data_configs: tuple[str, ...] = ()  # conf/data/<id>.yaml options (use `data=<id>` for those)
    experiments: tuple[str, ...] = ()  # conf/experiment/<name>.yaml presets (``experiment=<name>``)

    def dataset_ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.datasets if d.ok)

    def default(self, name: str) -> Any:
        """A form field's starting value (or ``num_minibatches``): given, else the knob table's."""
        return self.defaults[name] if name in self.defaults else table_defaults()[name]


@dataclass(frozen=True)
class LaunchPlan:
    """A validated launch: the overrides (without ``run.dir``) and what they mean."""

    overrides: tuple[str, ...]
    tag: str
    points: int  # runs in the packed sweep (1 for a single run)
    axes: dict[str, list[Any]]  # swept key -> values

    @property
    def packed(self) -> bool:
        return bool(self.axes)


class FieldError(UserError):
    """One field's problem that no knob check covers (its text, a list, the lake), as the sentence shown
    next to it."""


# ---------------------------------------------------------------------------------------------------------
# Parsing text into numbers


def _fmt_float(x: float) -> str:
    """Shortest exact text of a float that Hydra reads back as the same float (``0.005``, ``50.0``)."""
    return repr(float(x))


def parse_numbers(text: Any, *, what: str, integer: bool = False) -> list[float] | list[int]:
    """``"0.005, 0.01"`` -> ``[0.005, 0.01]``; anything but numbers and separators is refused."""
    if isinstance(text, bool):
        raise FieldError(f"{what} must be a number, not {text!r}")
    if isinstance(text, int | float):
        tokens = [repr(text)]
    else:
        raw = "" if text is None else str(text)
        if not _NUMERIC_CHARS.match(raw):
            bad = sorted({c for c in raw if not re.match(r"[0-9eE+\-.,_\s]", c)})
            raise FieldError(
                f"{what} may only hold numbers separated by commas; {''.join(bad)!r} is not allowed"
            )
        tokens = [t for t in _SEP_RE.split(raw.strip()) if t]
    if not tokens:
        raise FieldError(f"{what} is empty; give a number")
    out: list[Any] = []
    for tok in tokens:
        if integer:
            if not _INT_RE.match(tok):
                raise FieldError(f"{what} must be whole numbers; {tok!r} is not one")
            out.append(int(tok.replace("_", "")))
        else:
            if not _NUMBER_RE.match(tok):
                raise FieldError(f"{what}: {tok!r} is not a number")
            x = float(tok)
            if not math.isfinite(x):
                raise FieldError(f"{what}: {tok!r} is not a finite number")
            out.append(x)
    return out


def _one(values: list[Any], what: str) -> Any:
    if len(values) != 1:
        raise FieldError(f"{what} takes a single value, got {len(values)}")
    return values[0]


def _unique(values: list[Any], what: str) -> list[Any]:
    if len(set(values)) != len(values):
        raise FieldError(f"{what} lists a value twice")
    return values


def _fmt(knob: Knob) -> Callable[[Any], str]:
    return str if knob.kind == "int" else _fmt_float


def _list_override(key: str, values: list[Any], fmt: Callable[[Any], str]) -> str:
    return f"{key}=[{','.join(fmt(v) for v in values)}]"


# ---------------------------------------------------------------------------------------------------------
# The fields


@dataclass(frozen=True)
class Field:
    """One form field. ``parse(raw, choices)`` returns its typed value or raises :class:`UserError` (the
    knob's own sentence for a value out of range); ``overrides(value, choices)`` formats that value."""

    parse: Callable[[Any, Choices], Any]
    overrides: Callable[[Any, Choices], list[str]]
    knob: Knob | None = None  # whose default starts the field and whose check refuses its values
    axis: str | None = None  # several values make one packed-sweep axis over this key
    optional: bool = False  # blank keeps the config's default (the field starts blank)


def _swept(what: str, knob: Knob) -> Field:
    """Several values make a packed sweep (``sweep.<key>=[...]``); one is a plain ``<key>=x``."""

    def parse(raw: Any, _: Choices) -> list[Any]:
        xs = parse_numbers(raw, what=what, integer=knob.kind == "int")
        return _unique([knob.check(x) for x in xs], what)

    def overrides(xs: list[Any], _: Choices) -> list[str]:
        if len(xs) > 1:
            return [_list_override(f"sweep.{knob.key}", xs, _fmt(knob))]
        return [f"{knob.key}={_fmt(knob)(xs[0])}"]

    return Field(parse, overrides, knob, axis=knob.key)


def _number(what: str, knob: Knob, *, optional: bool = False) -> Field:
    def parse(raw: Any, _: Choices) -> Any:
        if optional and (raw is None or str(raw).strip() == ""):
            return None  # keep the config's default
        return knob.check(_one(parse_numbers(raw, what=what, integer=knob.kind == "int"), what))

    def overrides(x: Any, _: Choices) -> list[str]:
        return [] if x is None else [f"{knob.key}={_fmt(knob)(x)}"]

    return Field(parse, overrides, knob, optional=optional)


def _choice(knob: Knob) -> Field:
    # The override is written by name, whatever the knob accepted (a name or its code).
    return Field(lambda raw, _: knob.name_of(knob.check(raw)), lambda x, _: [f"{knob.key}={x}"], knob)


def _switch(knob: Knob) -> Field:
    return Field(lambda raw, _: knob.check(raw), lambda on, _: [f"{knob.key}={str(bool(on)).lower()}"], knob)


def _parse_flag(raw: Any) -> Any:
    """``"true"``/``"false"`` (a dropdown's text) as a bool; anything else is left for the knob to judge."""
    return {"true": True, "false": False}.get(raw.strip().lower(), raw) if isinstance(raw, str) else raw


def _optional_choice(knob: Knob) -> Field:
    """A bool or choice knob that starts blank (the config's default); a value is checked by the knob."""

    def parse(raw: Any, _: Choices) -> Any:
        if raw is None or str(raw).strip() == "":
            return None
        x = knob.check(_parse_flag(raw) if knob.kind == "bool" else raw)
        return knob.name_of(x) if knob.kind == "choice" else x

    def overrides(x: Any, _: Choices) -> list[str]:
        if x is None:
            return []
        return [f"{knob.key}={str(x).lower() if isinstance(x, bool) else x}"]

    return Field(parse, overrides, knob, optional=True)


def _advanced(knob: Knob) -> Field:
    """An advanced knob: blank keeps the config's (or the preset's) value; a value gets the knob's check."""
    if knob.kind in ("float", "int"):
        return _number(knob.key, knob, optional=True)
    return _optional_choice(knob)


def _buckets(what: str, knob: Knob) -> Field:
    return Field(
        lambda raw, _: list(knob.check(parse_numbers(raw, what=what))),
        lambda xs, _: [_list_override(knob.key, xs, _fmt_float)],
        knob,
    )


def _parse_dataset(raw: Any, choices: Choices) -> str:
    ids = choices.dataset_ids()
    if raw not in ids:
        valid = ", ".join(ids) or "(none: the lake has no valid dataset)"
        raise FieldError(f"dataset {raw!r} is not in the lake; valid: {valid}")
    return raw


def _dataset_overrides(ds: str, choices: Choices) -> list[str]:
    return [f"data={ds}" if ds in choices.data_configs else f"data.id={ds}"]


def _parse_features(raw: Any, choices: Choices) -> str:
    if raw not in choices.feature_sets:
        valid = ", ".join(choices.feature_sets)
        raise FieldError(f"feature set {raw!r} is not a file in conf/features; valid: {valid}")
    return raw


NO_EXPERIMENT = "none"


def _parse_experiment(raw: Any, choices: Choices) -> str | None:
    if raw is None or str(raw).strip() in ("", NO_EXPERIMENT):
        return None
    if raw not in choices.experiments:
        valid = ", ".join([NO_EXPERIMENT, *choices.experiments])
        raise FieldError(f"experiment preset {raw!r} is not a file in conf/experiment; valid: {valid}")
    return raw


def _parse_tag(raw: Any, _: Choices) -> str:
    tag = "" if raw is None else str(raw)
    if not TAG_RE.match(tag):
        raise FieldError(
            "experiment tag must be 1-64 letters, digits, '_' or '-', starting with a letter or digit; "
            f"{tag!r} is not"
        )
    return tag


_WHEN_RE = re.compile(r"^\d{4}-\d{2}-\d{2}(T\d{2}:\d{2})?$")


def _when(key: str) -> Field:
    """An optional UTC date (``YYYY-MM-DD`` or ``YYYY-MM-DDTHH:MM``): the data layer's own parser
    (:func:`tradelab_jax.data.schema.parse_time`) checks it; quoted for Hydra, so the colon stays text."""

    def parse(raw: Any, _: Choices) -> str | None:
        text = "" if raw is None else str(raw).strip()
        if not text:
            return None
        if not _WHEN_RE.fullmatch(text):
            raise FieldError(f"{key} must be a UTC date like 2025-10-01 or 2025-10-01T12:00; {text!r} is not")
        from tradelab_jax.data.schema import parse_time

        parse_time(text, key)
        return text

    return Field(parse, lambda x, _: [] if x is None else [f"{key}='{x}'"], optional=True)


def _fraction(key: str) -> Field:
    """An optional ``data.split.<name>`` fraction, checked by the trainer's own rule (training.envs)."""
    name = key.rsplit(".", 1)[-1]

    def parse(raw: Any, _: Choices) -> float | None:
        if raw is None or str(raw).strip() == "":
            return None  # keep the config's default
        values = parse_numbers(raw, what=key)
        x = float(_one(values, key))
        from tradelab_jax.training.envs import split_options

        # The trainer's range sentence for this fraction alone (train + val is a cross check): the other
        # fraction is set where the sum cannot be what fails.
        split_options({"data": {"split": {"train": x, "val": 0.0} if name == "train" else {"train": 1e-9,
                                                                                         "val": x}}})
        return x

    return Field(parse, lambda x, _: [] if x is None else [f"{key}={_fmt_float(x)}"], optional=True)


def _cv_int(key: str, low: int) -> Field:
    def parse(raw: Any, _: Choices) -> int | None:
        if raw is None or str(raw).strip() == "":
            return None  # keep the config's default
        values = parse_numbers(raw, what=key, integer=True)
        n = int(_one(values, key))
        if n < low:  # the sentence of training/folds.make_folds
            raise FieldError(f"{key} must be an integer >= {low}, got {n}")
        return n

    return Field(parse, lambda n, _: [] if n is None else [f"{key}={n}"], optional=True)


def _cv_length(key: str) -> Field:
    """``cv.test`` / ``cv.train``: bars (a whole number) or a fraction in (0, 1) (training/folds.bars_of)."""

    def parse(raw: Any, _: Choices) -> float | int | None:
        if raw is None or str(raw).strip() == "":
            return None  # keep the config's default
        values = parse_numbers(raw, what=key)
        x = _one(values, key)
        x = int(x) if float(x).is_integer() else float(x)
        from tradelab_jax.training.folds import bars_of

        bars_of(x, 1, key)
        return x

    def overrides(x: Any, _: Choices) -> list[str]:
        return [] if x is None else [f"{key}={x if isinstance(x, int) else _fmt_float(x)}"]

    return Field(parse, overrides, optional=True)


def _parse_cv(raw: Any, _: Choices) -> str:
    from tradelab_jax.training.folds import CV_KINDS

    kind = "none" if raw in (None, "") else str(raw)
    if kind not in CV_KINDS:  # the sentence of training/validate._check_cv
        raise FieldError(f"invalid cv.kind {kind!r}: use one of {', '.join(CV_KINDS)} (or cv=<option>)")
    return kind


def _parse_cv_mode(raw: Any, _: Choices) -> str | None:
    from tradelab_jax.training.folds import WALK_MODES

    if raw in (None, ""):
        return None
    if str(raw) not in WALK_MODES:
        raise FieldError(f"invalid cv.mode {raw!r}: use one of {', '.join(WALK_MODES)}")
    return str(raw)


# Display order, which is also the order of the overrides; parse_form's errors are keyed by these names.
FIELD_TABLE: dict[str, Field] = {
    "experiment": Field(_parse_experiment, lambda name, _: [] if name is None else [f"experiment={name}"],
                        optional=True),
    "dataset": Field(_parse_dataset, _dataset_overrides),
    "features": Field(_parse_features, lambda name, _: [f"features={name}"]),
    "risk_pct": _swept("risk per trade", ENV_KNOBS["risk_pct"]),
    "stop_loss_bps": _swept("stop distance", ENV_KNOBS["stop_loss_bps"]),
    "maker_fee": _number("maker fee", ENV_KNOBS["maker_fee"], optional=True),
    "taker_fee": _number("taker fee", ENV_KNOBS["taker_fee"], optional=True),
    "order_type": _choice(ENV_KNOBS["order_type"]),
    "trailing_stop": _switch(ENV_KNOBS["trailing_stop"]),
    "position_buckets": _buckets("position buckets", ENV_KNOBS["position_buckets"]),
    "total_timesteps": _number("total timesteps", AGENT_KNOBS["total_timesteps"]),
    "num_envs": _number("number of environments", AGENT_KNOBS["num_envs"]),
    "num_steps": _number("rollout length", AGENT_KNOBS["num_steps"]),
    "chunk_updates": _number("updates per chunk", RUN_KNOBS["chunk_updates"]),
    "seeds": _swept("seeds", SEED),
    "tag": Field(_parse_tag, lambda tag, _: [f"run.tag={tag}"]),
    # What to train and test on (docs/training.md "Splits and cross-validation"); blank: the config's.
    "data_start": _when("data.start"),
    "data_end": _when("data.end"),
    "split_train": _fraction("data.split.train"),
    "split_val": _fraction("data.split.val"),
    "cv": Field(_parse_cv, lambda kind, _: [] if kind == "none" else [f"cv={kind}"], optional=True),
    "cv_folds": _cv_int("cv.folds", 2),
    "cv_embargo_bars": _cv_int("cv.embargo_bars", 0),
    "cv_test": _cv_length("cv.test"),
    "cv_train": _cv_length("cv.train"),
    "cv_mode": Field(_parse_cv_mode, lambda m, _: [] if m is None else [f"cv.mode={m}"], optional=True),
}
SPLIT_FIELDS = ("data_start", "data_end", "split_train", "split_val")
CV_FIELDS = ("cv", "cv_folds", "cv_embargo_bars", "cv_test", "cv_train", "cv_mode")
WALK_FORWARD_ONLY = ("cv_test", "cv_train", "cv_mode")
# The "Advanced" section: every other env and PPO knob of the knob table, each blank by default.
_ON_FORM = {f.knob.key for f in FIELD_TABLE.values() if f.knob}
ADVANCED: tuple[str, ...] = tuple(
    k.name for k in (*ENV_KNOBS.values(), *AGENT_KNOBS.values()) if k.key not in _ON_FORM
)
FIELD_TABLE.update({name: _advanced({**ENV_KNOBS, **AGENT_KNOBS}[name]) for name in ADVANCED})
FIELDS = tuple(FIELD_TABLE)
# (sweep key, field) of the fields that take several values; each becomes a packed-sweep axis.
SWEPT_FIELDS = tuple((f.axis, name) for name, f in FIELD_TABLE.items() if f.axis)


def table_defaults() -> dict[str, Any]:
    """Every field's default from the knob table (plus ``num_minibatches``, which the budget check needs,
    and the tag a launch from the UI gets)."""
    out = {name: f.knob.config_default() for name, f in FIELD_TABLE.items() if f.knob}
    return {**out, "num_minibatches": AGENT_KNOBS["num_minibatches"].default, "features": "default",
            "tag": "ui"}


# ---------------------------------------------------------------------------------------------------------
# Cross-field checks: each takes the fields that parsed and returns {field: sentence}


def _check_budget(p: dict[str, Any], choices: Choices) -> dict[str, str]:
    """PPO needs a whole update, divisible into minibatches: the trainer's own rule (knobs.num_updates)."""
    if not {"total_timesteps", "num_envs", "num_steps"} <= p.keys():
        return {}
    try:
        minibatches = p.get("num_minibatches")
        if minibatches is None:
            minibatches = choices.default("num_minibatches")
        num_updates(p["total_timesteps"], p["num_envs"], p["num_steps"], minibatches)
    except UserError as err:
        return {err.field: str(err)}
    return {}


def _axes(p: dict[str, Any]) -> dict[str, list[Any]]:
    return {key: p[name] for key, name in SWEPT_FIELDS if name in p and len(p[name]) > 1}


def _check_sweep_size(p: dict[str, Any], _: Choices) -> dict[str, str]:
    points = math.prod(len(v) for v in _axes(p).values())
    if points > MAX_POINTS:
        return {"risk_pct": f"the sweep has {points} runs (risk x stop x seeds); at most {MAX_POINTS}"}
    return {}


def _check_split(p: dict[str, Any], _: Choices) -> dict[str, str]:
    """The sub-period runs forward, and train + val leave test bars (the trainer's sentences)."""
    from tradelab_jax.data.schema import ms_to_iso, parse_time
    from tradelab_jax.training.envs import DEFAULT_SPLIT, split_options

    out: dict[str, str] = {}
    if p.get("data_start") and p.get("data_end"):
        start, end = parse_time(p["data_start"], "data.start"), parse_time(p["data_end"], "data.end")
        if start >= end:  # the sentence of training/envs (the sub-period)
            out["data_end"] = f"data.start {ms_to_iso(start)} must be before data.end {ms_to_iso(end)}"
    if p.get("split_train") is not None or p.get("split_val") is not None:
        split = {"train": p.get("split_train"), "val": p.get("split_val")}
        try:
            split_options({"data": {"split": {k: (DEFAULT_SPLIT[k] if v is None else v)
                                              for k, v in split.items()}}})
        except UserError as err:
            out["split_val"] = str(err)
    return out


def _check_cv(p: dict[str, Any], _: Choices) -> dict[str, str]:
    """The fold settings need a cross-validation, and test/train lengths and the mode a walk-forward."""
    kind = p.get("cv")
    out: dict[str, str] = {}
    for name in CV_FIELDS[1:]:
        if p.get(name) is None:
            continue
        key = name.replace("cv_", "cv.")
        if kind == "none":
            out[name] = f"{key} sets up cross-validation folds; choose cv=walk_forward or cv=purged_kfold"
        elif name in WALK_FORWARD_ONLY and kind != "walk_forward":
            out[name] = f"{key} is a walk-forward setting; cv={kind} does not use it"
    if kind == "walk_forward" and p.get("cv_mode") == "expanding" and p.get("cv_train") is not None:
        out["cv_train"] = (f"cv.train={float(p['cv_train'])} is the length of a rolling window; expanding "
                           "walk-forward trains on every bar before each test window (set cv.mode=rolling, "
                           "or cv.train=null)")
    return out


CROSS_CHECKS: tuple[Callable[[dict[str, Any], Choices], dict[str, str]], ...] = (
    _check_budget, _check_sweep_size, _check_split, _check_cv,
)


def _at_start(name: str, value: Any, choices: Choices) -> bool:
    """Whether a knob field (not an optional one) still holds the value the form started with."""
    f = FIELD_TABLE[name]
    if f.knob is None or f.optional:
        return False
    return f.parse(initial_values(choices)[name], choices) == value


def parse_form(values: dict[str, Any], choices: Choices) -> tuple[LaunchPlan | None, dict[str, str]]:
    """``(plan, errors)``: a plan when every field is valid, else ``None`` and ``{field: sentence}``."""
    parsed: dict[str, Any] = {}
    errors: dict[str, str] = {}
    for name, f in FIELD_TABLE.items():
        try:
            parsed[name] = f.parse(values.get(name), choices)
        except UserError as err:
            errors[name] = str(err)
    for check in CROSS_CHECKS:
        for name, sentence in check(parsed, choices).items():
            errors.setdefault(name, sentence)  # a field's own error is the one to fix first
    if errors:
        return None, errors
    if parsed.get("experiment"):
        # A preset sets its own values: a knob field left at its starting value leaves the preset's.
        parsed = {n: v for n, v in parsed.items() if not _at_start(n, v, choices)}
    axes = _axes(parsed)
    overrides = tuple(o for name, f in FIELD_TABLE.items() if name in parsed
                      for o in f.overrides(parsed[name], choices))
    points = math.prod(len(v) for v in axes.values())
    return LaunchPlan(overrides=overrides, tag=parsed["tag"], points=points, axes=axes), {}


# ---------------------------------------------------------------------------------------------------------
# What the form offers


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def _dataset_label(item: dict[str, Any]) -> str:
    first, last = (str(item.get(k) or "?")[:10] for k in ("first_bar", "last_bar"))
    rows = item.get("rows")
    label = str(item["id"])
    if isinstance(rows, int):
        label += f": {item.get('symbol', '?')} {item.get('timeframe', '?')}, {first} → {last} ({rows:,} bars)"
    return label if item.get("status") == "ok" else f"{label} [{item.get('status')}]"


def load_choices(lake: str | Path | None = None, conf: str | Path | None = None) -> Choices:
    """Datasets from the lake's manifests, feature sets from ``conf/features``, the knobs' defaults from the
    knob table, and the default dataset and feature set from ``conf/config.yaml``."""
    from tradelab_jax.data import list_datasets

    conf_dir = Path(conf) if conf else paths.conf_dir()
    datasets = tuple(
        Dataset(id=item["id"], label=_dataset_label(item), ok=item.get("status") == "ok")
        for item in list_datasets(lake, verify=False)
    )
    features = tuple(sorted(p.stem for p in (conf_dir / "features").glob("*.yaml") if TAG_RE.match(p.stem)))
    data_configs = tuple(sorted(p.stem for p in (conf_dir / "data").glob("*.yaml")))
    defaults = table_defaults()
    for d in _read_yaml(conf_dir / "config.yaml").get("defaults") or []:
        if isinstance(d, dict) and "data" in d:
            defaults["dataset"] = d["data"]
        if isinstance(d, dict) and "features" in d:
            defaults["features"] = d["features"]
    presets = (conf_dir / "experiment").glob("*.yaml")
    experiments = tuple(sorted(p.stem for p in presets if TAG_RE.match(p.stem)))
    return Choices(datasets=datasets, feature_sets=features, defaults=defaults, data_configs=data_configs,
                   experiments=experiments)


def _start_text(value: Any) -> Any:
    """A default as the form shows it: checkboxes keep booleans, text fields get text Hydra reads back."""
    if isinstance(value, bool):
        return value
    if isinstance(value, list | tuple):
        return ", ".join(_fmt_float(x) for x in value)
    return _fmt_float(value) if isinstance(value, float) else str(value)


def initial_values(choices: Choices) -> dict[str, Any]:
    """The form's starting values (text fields as text), from the defaults."""
    ids = choices.dataset_ids()
    dataset = choices.defaults.get("dataset")
    features = choices.default("features")
    values = {
        "dataset": dataset if dataset in ids else (ids[0] if ids else None),
        "features": features if features in choices.feature_sets else next(iter(choices.feature_sets), None),
    }
    for name, f in FIELD_TABLE.items():
        if name not in values:
            values[name] = "" if f.optional else _start_text(choices.default(name))
    return values


# ---------------------------------------------------------------------------------------------------------
# Preview


def path_override(key: str, path: str | Path) -> str:
    """``<key>=<path>``, quoted for Hydra when the path holds anything but plain path characters."""
    text = str(path)
    if re.fullmatch(r"[A-Za-z0-9_./-]+", text):
        return f"{key}={text}"
    return f"{key}='" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def run_dir_override(run_dir: str | Path) -> str:
    """``run.dir=<path>``: where a launch trains (the UI creates the directory first)."""
    return path_override("run.dir", run_dir)


def resume_override(run_dir: str | Path) -> str:
    """``run.resume=<path>``: a run directory or a packed sweep's directory to continue."""
    return path_override("run.resume", run_dir)


def preview(plan: LaunchPlan | None, run_dir: str | Path | None = None) -> str:
    """The command the launch will run, as a user would type it."""
    if plan is None:
        return "# fix the fields marked in red to see the command"
    args = list(plan.overrides)
    if run_dir is not None:
        args.append(run_dir_override(run_dir))
    # One argument per line (a valid shell command) so every value can be read at a glance.
    text = " \\\n  ".join(["tradelab train", *(shlex.quote(a) for a in args)])
    if plan.packed:
        axes = " x ".join(f"{k} ({len(v)})" for k, v in plan.axes.items())
        text += f"\n# one packed sweep: {plan.points} runs ({axes}) trained in one process"
    return text
