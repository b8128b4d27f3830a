"""The Hydra edge of ``tradelab train``: config schemas and run-directory resolvers, argv splitting, and
every check made on the composed config before Hydra starts a job (one ``error:`` sentence, no traceback).

``tradelab train`` (train.py) parses argv, calls :func:`check_overrides` (which composes each value an
override can take and runs :func:`tradelab_jax.training.validate.check_config` on it), then launches
Hydra. ``pod launch`` calls the same checks before it rents a GPU.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

from tradelab_jax import paths, runs
from tradelab_jax.errors import UserError

CONFIG_NAME = "config"

# The timestamp of this `tradelab train` call: train.main sets it for the call (and the job processes a
# launcher starts, submitit local/SLURM, inherit it), so that every job of one multirun resolves the same
# multirun/<ts>_<tag>/ folder.
TIMESTAMP_ENV = "TRADELAB_RUN_TIMESTAMP"


def _timestamp() -> str:
    return os.environ.get(TIMESTAMP_ENV) or runs.utc_timestamp()


def _outputs(outputs: Any) -> Path:
    return Path(str(outputs)).expanduser().resolve() if outputs else paths.default_outputs()


def _run_dir(outputs: Any, tag: Any, run_dir: Any, resume: Any, sweep: Any, cv: Any = None) -> str:
    if resume:
        return str(Path(str(resume)).expanduser().resolve())
    if run_dir:
        return str(Path(str(run_dir)).expanduser().resolve())
    tag = paths.check_id(str(tag), "run.tag")
    from omegaconf import OmegaConf

    from tradelab_jax.training.plan import point_axes

    def plain(node: Any) -> Any:
        return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node

    packed = bool(point_axes({"sweep": plain(sweep) or {}, "cv": plain(cv) or {}}))  # the plan's own rule
    return str(runs.new_run_dir(_outputs(outputs), tag, multirun=packed, timestamp=_timestamp()))


def _output_subdir(resume: Any) -> str | None:
    """Hydra's ``.hydra/`` record of how a run was launched; a resume writes none, so the launch's record
    (its composed config and overrides) is kept rather than replaced by the resume's defaults."""
    return None if resume else ".hydra"


def _sweep_dir(outputs: Any, tag: Any) -> str:
    tag = paths.check_id(str(tag), "run.tag")
    return str(runs.new_run_dir(_outputs(outputs), tag, multirun=True, timestamp=_timestamp()))


def register() -> None:
    """The schemas and resolvers the configs refer to (idempotent)."""
    from omegaconf import OmegaConf

    from tradelab_jax.training.config import register_configs

    register_configs()
    OmegaConf.register_new_resolver("tl_run_dir", _run_dir, replace=True)
    OmegaConf.register_new_resolver("tl_sweep_dir", _sweep_dir, replace=True)
    OmegaConf.register_new_resolver("tl_output_subdir", _output_subdir, replace=True)
    _register_lake_datasets()


def _shipped_options(group: str) -> list[str]:
    return sorted(p.stem for p in (paths.conf_dir() / group).glob("*.yaml"))


def _register_lake_datasets() -> None:
    """Every dataset of the default lake is a ``data`` option (``data=binance_ethusdt_1m`` after an
    import), like the shipped ones that have a file in conf/data/."""
    from hydra.core.config_store import ConfigStore

    from tradelab_jax.data.lake import Lake
    from tradelab_jax.training.config import DataConfig

    shipped = set(_shipped_options("data"))
    for dataset_id in Lake.at(None).ids():
        if dataset_id not in shipped:
            ConfigStore.instance().store(group="data", name=dataset_id, node=DataConfig(id=dataset_id))


def group_options(group: str) -> list[str]:
    """The options of a config group: its files in conf/, and for ``data`` every dataset of the lake."""
    options = set(_shipped_options(group))
    if group == "data":
        from tradelab_jax.data.lake import Lake

        options |= set(Lake.at(None).ids())
    return sorted(options)



# ---------------------------------------------------------------------------------------------------------
# Compose-time checks: one clear sentence instead of Hydra's multi-line report


def split_argv(argv: list[str]) -> tuple[list[str], list[str]]:
    """``(flags, overrides)``: Hydra's own flags (``-m``, ``--cfg job``...) and the key=value overrides."""
    flags, overrides, i = [], [], 0
    with_value = {"--cfg", "-c", "--package", "-p", "--config-path", "-cp", "--config-name", "-cn",
                  "--config-dir", "-cd", "--info", "-i", "--experimental-rerun"}
    while i < len(argv):
        arg = argv[i]
        if arg.startswith("-"):
            flags.append(arg)
            if arg in with_value and i + 1 < len(argv) and "=" not in argv[i + 1] and arg != "--info":
                flags.append(argv[i + 1])
                i += 1
        else:
            overrides.append(arg)
        i += 1
    return flags, overrides


def friendly(err: BaseException) -> str:
    """One sentence for a Hydra/OmegaConf compose error."""
    from hydra.errors import MissingConfigException
    from omegaconf.errors import (
        ConfigAttributeError,
        ConfigKeyError,
        OmegaConfBaseException,
        ValidationError,
    )

    chain, e = [], err
    while e is not None and e not in chain:
        chain.append(e)
        e = e.__cause__ or e.__context__
    for e in chain:
        if isinstance(e, UserError):
            return str(e)
    for e in chain:
        if isinstance(e, MissingConfigException):
            group = (e.missing_cfg_file or "").rsplit("/", 1)
            options = ", ".join(o for o in e.options or [] if not o.endswith("_schema")) or "(none)"
            if len(group) == 2:
                return f"unknown {group[0]} option {group[1]!r}; valid options: {options}"
            return str(e).splitlines()[0]
    for e in chain:
        if isinstance(e, ConfigKeyError | ConfigAttributeError):
            key = getattr(e, "full_key", None) or ""
            obj = getattr(e, "object_type", None)
            if key.startswith("sweep."):
                from tradelab_jax.knobs import sweepable_message

                return (f"{key} cannot be swept in one program (unknown or shape-changing); "
                        f"{sweepable_message()}")
            valid = ""
            if obj is not None and dataclasses.is_dataclass(obj):
                valid = "; valid keys there: " + ", ".join(f.name for f in dataclasses.fields(obj))
            return f"unknown config key {key!r}{valid}"
        if isinstance(e, ValidationError):
            key = getattr(e, "full_key", None) or "?"
            msg = getattr(e, "msg", str(e)).splitlines()[0]
            if key.startswith("sweep.") and "is not a ListConfig" in msg:
                return _sweep_list_message(key, getattr(e, "value", None))
            return f"invalid value for {key}: {msg}"
    for e in chain:
        if isinstance(e, OmegaConfBaseException):
            msg = getattr(e, "msg", None) or str(e)
            return " ".join(msg.split())
    text = " ".join(str(err).split())
    return text.replace(" Set the environment variable HYDRA_FULL_ERROR=1 for a complete stack trace.", "")


def _sweep_list_message(key: str, value: Any) -> str:
    """``sweep.seed=0``: a sweep axis is a list of values (OmegaConf's own text names ListConfig)."""
    if isinstance(value, int) and not isinstance(value, bool):
        several = ",".join(str(value + i) for i in range(3))
    elif isinstance(value, float):
        several = f"{value:g},{2 * value:g}"
    else:
        return f"{key}={value} must be a list, e.g. {key}=[{value}]"
    return f"{key}={value} must be a list, e.g. {key}=[{value}] or {key}=[{several}]"


def _sweep_values(override: Any) -> list[str]:
    return list(override.sweep_string_iterator())


def check_overrides(overrides: list[str], *, multirun: bool = True, hydra_config: bool = False,
                    composed: Any = None) -> Any:
    """Compose and check the config for every value each override can take (UserError on the first failure).

    Runs before Hydra starts a job, so a bad override makes no directory and compiles nothing. Returns the
    first composition (the only one when no override lists several values) as a ``DictConfig``, with its
    ``hydra`` node when ``hydra_config``: a single run is launched from it without composing again.
    ``composed(cfg)`` is called with the first composition before any check (the checks start JAX, and a
    multi-process run must join its peers first: train.py).
    """
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from tradelab_jax.training.validate import check_config

    register()
    try:
        parsed = OverridesParser.create().parse_overrides(overrides)
    except Exception as err:
        raise UserError(f"cannot parse the overrides: {friendly(err)}") from None
    base = []
    variants: list[tuple[int, list[str]]] = []
    for i, o in enumerate(parsed):
        if o.is_sweep_override() and not multirun:
            key = o.get_key_element()
            raise UserError(f"{overrides[i]!r} lists several values: add -m to run one job per value, or "
                            f"write sweep.{key}=[...] to pack sweepable keys into one program")
        if o.is_sweep_override():
            values = _sweep_values(o)
            base.append(f"{o.get_key_element()}={values[0]}")
            variants.append((i, [f"{o.get_key_element()}={v}" for v in values[1:]]))
        else:
            base.append(overrides[i])
    combos = [base, *([*base[:i], v, *base[i + 1:]] for i, vs in variants for v in vs)]
    for combo in combos:
        _check_group_options_and_dirs(combo)
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
            first = None
            for combo in combos:
                try:
                    cfg = compose(CONFIG_NAME, overrides=combo, return_hydra_config=hydra_config)
                    plain = to_plain(cfg)
                except UserError:
                    raise
                except Exception as err:
                    raise UserError(friendly(err)) from None
                if first is None and composed is not None:
                    composed(cfg)
                check_config(plain)
                first = cfg if first is None else first
    finally:
        GlobalHydra.instance().clear()
    return first


def write_launch_record(record_dir: Path, cfg: Any) -> None:
    """Hydra's ``.hydra/`` record of a launch (``config.yaml``, ``hydra.yaml``, ``overrides.yaml``), as
    Hydra's own job runner writes it, for a run launched from :func:`check_overrides`' composition."""
    from omegaconf import OmegaConf, open_dict

    from tradelab_jax.io import atomic_write_text

    task = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    hydra_node = OmegaConf.create({"hydra": cfg.hydra})
    with open_dict(hydra_node):
        hydra_node.hydra.runtime.output_dir = str(record_dir.parent)
        hydra_node.hydra.runtime.cwd = os.getcwd()
    record_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(record_dir / "config.yaml", OmegaConf.to_yaml(task))
    atomic_write_text(record_dir / "hydra.yaml", OmegaConf.to_yaml(hydra_node))
    atomic_write_text(record_dir / "overrides.yaml", OmegaConf.to_yaml(cfg.hydra.overrides.task))


def _check_group_options_and_dirs(overrides: list[str]) -> None:
    """What composing would let through silently: an unknown option of an optional group
    (``experiment=nope`` trains with the defaults) and a Hydra run folder that cannot or must not be used
    (``hydra.run.dir=/``)."""
    from tradelab_jax.training.validate import check_run_dir

    groups = {p.name for p in paths.conf_dir().iterdir() if p.is_dir()}
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        if key in groups and value not in ("null", ""):
            options = group_options(key)
            if value not in options:
                hint = "; a dataset of another lake: data.id=<id> data.lake=<folder>" if key == "data" else ""
                raise UserError(f"unknown {key} option {value!r}; valid options: {', '.join(options)}{hint}")
        if key in ("hydra.run.dir", "hydra.sweep.dir"):
            check_run_dir(value, key)


def to_plain(cfg: Any) -> dict[str, Any]:
    from omegaconf import OmegaConf

    if "hydra" in cfg:  # a composition with its hydra node: the run's config is everything else
        cfg = OmegaConf.masked_copy(cfg, [k for k in cfg if k != "hydra"])
    plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=True)
    from tradelab_jax.training.plan import sweep_axes

    sweep_axes(plain)  # refuses shape-changing or empty sweep axes
    paths.check_id(str(plain["run"]["tag"]), "run.tag")
    return plain


# ---------------------------------------------------------------------------------------------------------
# Multirun packing: `-m key=a,b ... run.pack=true` -> sweep.key=[a,b] in one program


def pack_multirun(flags: list[str], overrides: list[str]) -> tuple[list[str], list[str]]:
    """Turn the sweepable sweep overrides of a packed multirun into ``sweep.*`` lists.

    Returns the new ``(flags, overrides)``. When only sweepable keys vary, ``-m`` is dropped (one process);
    shape-changing keys that vary stay a Hydra multirun and each job packs the rest.
    """
    from hydra.core.override_parser.overrides_parser import OverridesParser

    from tradelab_jax.knobs import SWEEPABLE_KEYS

    parsed = OverridesParser.create().parse_overrides(overrides)
    out, remaining_sweeps = [], 0
    for raw, o in zip(overrides, parsed, strict=True):
        key = o.get_key_element()
        if o.is_sweep_override() and key in SWEEPABLE_KEYS:
            out.append(f"sweep.{key}=[{','.join(_sweep_values(o))}]")
        else:
            remaining_sweeps += o.is_sweep_override()
            out.append(raw)
    if not remaining_sweeps:
        flags = [f for f in flags if f not in ("-m", "--multirun")]
    return flags, out


def pack_requested(overrides: list[str]) -> bool:
    return any(o.replace(" ", "").lower() in ("run.pack=true", "run.pack=1") for o in overrides)
