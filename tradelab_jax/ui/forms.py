"""The launch form: typed parsing of every field into a list of Hydra overrides (no Gradio here).

Every value that reaches an override is parsed into a number, a boolean or one of a fixed set of names, then
formatted by this module. Free text never passes through, so a field cannot inject a second override, a
Hydra sweep or an interpolation. Ranges mirror the env's knob checks (docs/execution-semantics.md); the
trainer checks them again when it composes the config.
"""

from __future__ import annotations

import math
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tradelab_jax import paths

# Form fields in display order; the error dict returned by parse_form is keyed by these names.
FIELDS = (
    "dataset", "features", "risk_pct", "stop_loss_bps", "maker_fee", "taker_fee", "order_type",
    "trailing_stop", "position_buckets", "total_timesteps", "num_envs", "num_steps", "chunk_updates",
    "seeds", "tag",
)  # fmt: skip
ORDER_TYPES = ("limit", "market")
# Fields that take several values; each becomes a packed-sweep axis (sweep.<key>=[...]).
SWEPT_FIELDS = (("seed", "seeds"), ("env.risk_pct", "risk_pct"), ("env.stop_loss_bps", "stop_loss_bps"))
MAX_POINTS = 256  # a packed sweep larger than this is almost certainly a typo
TAG_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$")
_NUMBER_RE = re.compile(r"^[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?$")
_INT_RE = re.compile(r"^\d+(_\d{3})*$")
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
    """What the form may offer: datasets of the lake, feature sets of conf/features, config defaults."""

    datasets: tuple[Dataset, ...]
    feature_sets: tuple[str, ...]
    defaults: dict[str, Any] = field(default_factory=dict)
    data_configs: tuple[str, ...] = ()  # conf/data/<id>.yaml options (use `data=<id>` for those)

    def dataset_ids(self) -> tuple[str, ...]:
        return tuple(d.id for d in self.datasets if d.ok)


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


# ---------------------------------------------------------------------------------------------------------
# What the form offers


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        return yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return {}


def load_choices(lake: str | Path | None = None, conf: str | Path | None = None) -> Choices:
    """Datasets from the lake's manifests, feature sets from ``conf/features``, defaults from ``conf/``."""
    from tradelab_jax.data import list_datasets

    conf_dir = Path(conf) if conf else paths.conf_dir()
    datasets = []
    for item in list_datasets(lake, verify=False):
        ok = item.get("status") == "ok"
        first, last = (str(item.get(k) or "?")[:10] for k in ("first_bar", "last_bar"))
        rows = item.get("rows")
        label = (
            f"{item['id']}: {item.get('symbol', '?')} {item.get('timeframe', '?')}, {first} → {last}"
            f" ({rows:,} bars)"
            if isinstance(rows, int)
            else f"{item['id']}"
        )
        if not ok:
            label += f" [{item.get('status')}]"
        datasets.append(Dataset(id=item["id"], label=label, ok=ok))
    features = tuple(sorted(p.stem for p in (conf_dir / "features").glob("*.yaml") if TAG_RE.match(p.stem)))
    data_configs = tuple(sorted(p.stem for p in (conf_dir / "data").glob("*.yaml")))
    env = _read_yaml(conf_dir / "env" / "trading.yaml")
    agent = _read_yaml(conf_dir / "agent" / "ppo.yaml")
    run = _read_yaml(conf_dir / "run" / "default.yaml")
    root = _read_yaml(conf_dir / "config.yaml")
    defaults = {
        "features": "default",
        "risk_pct": env.get("risk_pct", 0.01),
        "stop_loss_bps": env.get("stop_loss_bps", 50.0),
        "maker_fee": env.get("maker_fee", 0.0002),
        "taker_fee": env.get("taker_fee", 0.0005),
        "order_type": env.get("order_type", "limit"),
        "trailing_stop": bool(env.get("trailing_stop", False)),
        "position_buckets": env.get("position_buckets", [-1.0, -0.5, 0.0, 0.5, 1.0]),
        "total_timesteps": agent.get("total_timesteps", 500_000),
        "num_envs": agent.get("num_envs", 4),
        "num_steps": agent.get("num_steps", 128),
        "num_minibatches": agent.get("num_minibatches", 4),
        "chunk_updates": run.get("chunk_updates", 10),
        "seeds": root.get("seed", 0),
        "tag": "ui",
    }
    for d in root.get("defaults") or []:
        if isinstance(d, dict) and "data" in d:
            defaults["dataset"] = d["data"]
        if isinstance(d, dict) and "features" in d:
            defaults["features"] = d["features"]
    return Choices(
        datasets=tuple(datasets), feature_sets=features, defaults=defaults, data_configs=data_configs
    )


def initial_values(choices: Choices) -> dict[str, Any]:
    """The form's starting values (text fields as text), from the config defaults."""
    d = choices.defaults
    ids = choices.dataset_ids()
    dataset = d.get("dataset") if d.get("dataset") in ids else (ids[0] if ids else None)
    return {
        "dataset": dataset,
        "features": d.get("features")
        if d.get("features") in choices.feature_sets
        else (choices.feature_sets[0] if choices.feature_sets else None),
        "risk_pct": _fmt_float(d.get("risk_pct", 0.01)),
        "stop_loss_bps": _fmt_float(d.get("stop_loss_bps", 50.0)),
        "maker_fee": "",
        "taker_fee": "",
        "order_type": d.get("order_type", "limit"),
        "trailing_stop": bool(d.get("trailing_stop", False)),
        "position_buckets": ", ".join(_fmt_float(x) for x in d.get("position_buckets", [])),
        "total_timesteps": str(d.get("total_timesteps", 500_000)),
        "num_envs": str(d.get("num_envs", 4)),
        "num_steps": str(d.get("num_steps", 128)),
        "chunk_updates": str(d.get("chunk_updates", 10)),
        "seeds": str(d.get("seeds", 0)),
        "tag": str(d.get("tag", "ui")),
    }


# ---------------------------------------------------------------------------------------------------------
# Typed parsing


class FieldError(ValueError):
    """One field's problem, as the sentence shown next to it."""


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


def _in_range(
    x: float, what: str, low: float, high: float, *, low_inc: bool, high_inc: bool, valid: str
) -> float:
    ok = (x >= low if low_inc else x > low) and (x <= high if high_inc else x < high)
    if not ok:
        raise FieldError(f"{what} {x:g} is out of range: expected {valid}")
    return x


def _unique(values: list[Any], what: str) -> list[Any]:
    if len(set(values)) != len(values):
        raise FieldError(f"{what} lists a value twice")
    return values


def _list_override(key: str, values: list[Any], fmt) -> str:
    return f"{key}=[{','.join(fmt(v) for v in values)}]"


def parse_form(values: dict[str, Any], choices: Choices) -> tuple[LaunchPlan | None, dict[str, str]]:
    """``(plan, errors)``: a plan when every field is valid, else ``None`` and ``{field: sentence}``."""
    errors: dict[str, str] = {}
    parsed: dict[str, Any] = {}

    def field_(name: str, fn) -> None:
        try:
            parsed[name] = fn(values.get(name))
        except FieldError as err:
            errors[name] = str(err)

    def dataset(v):
        ids = choices.dataset_ids()
        if v not in ids:
            valid = ", ".join(ids) or "(none: the lake has no valid dataset)"
            raise FieldError(f"dataset {v!r} is not in the lake; valid: {valid}")
        return v

    def features(v):
        if v not in choices.feature_sets:
            raise FieldError(
                f"feature set {v!r} is not a file in conf/features; valid: {', '.join(choices.feature_sets)}"
            )
        return v

    def risk(v):
        xs = parse_numbers(v, what="risk per trade")
        return _unique(
            [
                _in_range(
                    x,
                    "risk per trade",
                    0.0,
                    1.0,
                    low_inc=False,
                    high_inc=True,
                    valid="a fraction of equity in (0, 1], e.g. 0.01 for 1 %",
                )
                for x in xs
            ],
            "risk per trade",
        )

    def stop(v):
        xs = parse_numbers(v, what="stop distance")
        return _unique(
            [
                _in_range(
                    x,
                    "stop distance",
                    0.0,
                    1e4,
                    low_inc=True,
                    high_inc=False,
                    valid="basis points in [0, 10000); 0 disables the stop",
                )
                for x in xs
            ],
            "stop distance",
        )

    def fee(name, what, low, low_inc, valid):
        def parse(v):
            if v is None or str(v).strip() == "":
                return None  # keep the config's default
            x = _one(parse_numbers(v, what=what), what)
            return _in_range(x, what, low, 1.0, low_inc=low_inc, high_inc=False, valid=valid)

        return parse

    def order_type(v):
        if v not in ORDER_TYPES:
            raise FieldError(f"order type {v!r} is not one of {', '.join(ORDER_TYPES)}")
        return v

    def trailing(v):
        if not isinstance(v, bool):
            raise FieldError(f"trailing stop must be on or off, not {v!r}")
        return v

    def buckets(v):
        xs = parse_numbers(v, what="position buckets")
        if len(xs) < 2:
            raise FieldError("position buckets need at least two exposures, e.g. -1, 0, 1")
        for x in xs:
            _in_range(
                x,
                "position bucket",
                -10.0,
                10.0,
                low_inc=True,
                high_inc=True,
                valid="an exposure between -10 and 10 risk units",
            )
        return _unique(xs, "position buckets")

    def int_field(what, low, high):
        def parse(v):
            x = _one(parse_numbers(v, what=what, integer=True), what)
            if not low <= x <= high:
                raise FieldError(
                    f"{what} {x} is out of range: expected a whole number in [{low:,}, {high:,}]"
                )
            return x

        return parse

    def seeds(v):
        xs = parse_numbers(v, what="seeds", integer=True)
        for x in xs:
            if x > 2**31 - 1:
                raise FieldError(f"seed {x} is too large: expected a whole number in [0, 2147483647]")
        return _unique(xs, "seeds")

    def tag(v):
        v = "" if v is None else str(v)
        if not TAG_RE.match(v):
            raise FieldError(
                "experiment tag must be 1-64 letters, digits, '_' or '-', starting with a "
                f"letter or digit; {v!r} is not"
            )
        return v

    field_("dataset", dataset)
    field_("features", features)
    field_("risk_pct", risk)
    field_("stop_loss_bps", stop)
    field_(
        "maker_fee",
        fee(
            "maker_fee",
            "maker fee",
            -1.0,
            False,
            "a fraction in (-1, 1), e.g. 0.0002 for 2 bps; negative is a rebate",
        ),
    )
    field_(
        "taker_fee", fee("taker_fee", "taker fee", 0.0, True, "a fraction in [0, 1), e.g. 0.0005 for 5 bps")
    )
    field_("order_type", order_type)
    field_("trailing_stop", trailing)
    field_("position_buckets", buckets)
    field_("total_timesteps", int_field("total timesteps", 1, 10**11))
    field_("num_envs", int_field("number of environments", 1, 65_536))
    field_("num_steps", int_field("rollout length", 1, 100_000))
    field_("chunk_updates", int_field("updates per chunk", 1, 100_000))
    field_("seeds", seeds)
    field_("tag", tag)

    # Cross-field checks: PPO needs a whole update, divisible into minibatches.
    if not ({"num_envs", "num_steps", "total_timesteps"} & errors.keys()):
        per_update = parsed["num_envs"] * parsed["num_steps"]
        minibatches = int(choices.defaults.get("num_minibatches", 4))
        if parsed["total_timesteps"] < per_update:
            errors["total_timesteps"] = (
                f"total timesteps {parsed['total_timesteps']:,} is less than one update of "
                f"{parsed['num_envs']} environments x {parsed['num_steps']} steps = {per_update:,}"
            )
        elif per_update % minibatches:
            errors["num_envs"] = (
                f"environments x rollout length = {per_update:,} must be divisible by "
                f"agent.num_minibatches={minibatches}"
            )
    axes: dict[str, list[Any]] = {}
    for key, name in SWEPT_FIELDS:
        if name in parsed and len(parsed[name]) > 1:
            axes[key] = parsed[name]
    points = math.prod(len(v) for v in axes.values()) if axes else 1
    if points > MAX_POINTS:
        errors.setdefault(
            "risk_pct", f"the sweep has {points} runs (risk x stop x seeds); at most {MAX_POINTS}"
        )
    if errors:
        return None, errors

    p = parsed
    data = f"data={p['dataset']}" if p["dataset"] in choices.data_configs else f"data.id={p['dataset']}"
    overrides = [data, f"features={p['features']}"]
    for key, name in (("risk_pct", "risk_pct"), ("stop_loss_bps", "stop_loss_bps")):
        if len(p[name]) > 1:
            overrides.append(_list_override(f"sweep.env.{key}", p[name], _fmt_float))
        else:
            overrides.append(f"env.{key}={_fmt_float(p[name][0])}")
    for name in ("maker_fee", "taker_fee"):
        if p[name] is not None:
            overrides.append(f"env.{name}={_fmt_float(p[name])}")
    overrides += [
        f"env.order_type={p['order_type']}",
        f"env.trailing_stop={'true' if p['trailing_stop'] else 'false'}",
        _list_override("env.position_buckets", p["position_buckets"], _fmt_float),
        f"agent.total_timesteps={p['total_timesteps']}",
        f"agent.num_envs={p['num_envs']}",
        f"agent.num_steps={p['num_steps']}",
        f"run.chunk_updates={p['chunk_updates']}",
    ]
    if len(p["seeds"]) > 1:
        overrides.append(_list_override("sweep.seed", p["seeds"], str))
    else:
        overrides.append(f"seed={p['seeds'][0]}")
    overrides.append(f"run.tag={p['tag']}")
    return LaunchPlan(overrides=tuple(overrides), tag=p["tag"], points=points, axes=axes), {}


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
