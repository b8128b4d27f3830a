"""``tradelab train`` / ``python -m tradelab_jax.train``: the Hydra entry point for PPO training.

    tradelab train                                        # PPO on the default BTC dataset
    tradelab train env=gymnax env.id=CartPole-v1          # any gymnax environment
    tradelab train -m env.risk_pct=0.005,0.01 seed=0,1    # a Hydra multirun: one process per job
    tradelab train sweep.seed=[0,1,2,3] sweep.env.risk_pct=[0.005,0.01,0.02]   # 12 agents, one compile
    tradelab train -m seed=0,1,2,3 run.pack=true          # a multirun of sweepable keys, packed
    tradelab train run.resume=outputs/20251126T113000Z_train

It reads as parse -> check -> launch: argv is split into Hydra's flags and the overrides
(training/compose.py), every value an override can take is composed and checked before Hydra makes a
directory (a misspelt key, a wrong type or a value out of range is one ``error:`` line, exit 2), then
Hydra runs the job, which turns the composed config into a run plan (training/plan.py) and trains it
(training/session.py). See docs/training.md and docs/run-directory.md.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

from tradelab_jax import paths, runs
from tradelab_jax.errors import UserError
from tradelab_jax.training import compose

# Runtime options a resume may change when the resume command names them; everything else, and these when
# it does not, come from the run's saved config.yaml.
RESUME_RUNTIME_KEYS = ("progress", "print_summary", "eval", "devices")  # run.devices: docs/clusters.md
INFORMATIONAL_FLAGS = ("-h", "--help", "--hydra-help", "--info", "-i", "--cfg", "-c", "--resolve")


def run_config(plain: dict[str, Any], out_dir: Path, *, multirun: bool = False, should_stop=None,
               given: frozenset[str] = frozenset()) -> dict[str, Any]:
    """Train from a plain (resolved) config into ``out_dir``; returns ``{"status", "dirs", ...}``.

    ``given``: the keys the command line set; a resume applies only those of :data:`RESUME_RUNTIME_KEYS`
    (a run launched with ``run.eval=false`` resumes without evaluating unless the resume says otherwise).
    """
    from tradelab_jax.training.session import resume_dir, train_config

    if plain["run"].get("resume"):
        runtime = {k: plain["run"][k] for k in RESUME_RUNTIME_KEYS if f"run.{k}" in given}
        return resume_dir(Path(plain["run"]["resume"]), runtime=runtime, should_stop=should_stop)
    if multirun and not plain["run"].get("pack"):
        from tradelab_jax.training.plan import sweep_axes

        if sweep_axes(plain):
            raise UserError("sweep.* cannot be combined with -m; drop -m, or add run.pack=true to pack -m "
                            "keys")
    return train_config(plain, out_dir, should_stop=should_stop)


def _warn_ignored_on_resume(overrides: list[str]) -> None:
    """A resume trains its saved config.yaml: say which overrides it will not apply."""
    keys = [o.split("=", 1)[0].lstrip("+~") for o in overrides]
    if "run.resume" not in keys:
        return
    applied = {"run.resume", *(f"run.{k}" for k in RESUME_RUNTIME_KEYS)}
    ignored = [o for o, k in zip(overrides, keys, strict=True)
               if k not in applied and not k.startswith("hydra")]
    if ignored:
        print(f"warning: a resume continues the run's saved config.yaml, so these overrides are ignored: "
              f"{' '.join(ignored)} (a resume applies only {', '.join(sorted(applied - {'run.resume'}))})",
              file=sys.stderr)


def _given_keys(overrides: list[str]) -> frozenset[str]:
    return frozenset(o.split("=", 1)[0].lstrip("+~") for o in overrides)


def _launch_single(cfg: Any, given: frozenset[str]) -> tuple[list[dict[str, Any]], list[UserError]]:
    """One run from the composition the checks already made (composed once): Hydra's run directory and
    ``.hydra/`` launch record, then the run; ``(results, user errors)`` like :func:`_launch`."""
    from omegaconf import OmegaConf

    from tradelab_jax.training.devices import joined, leads

    proc = joined()
    if proc is not None:  # every process has checked run.dir before process 0 writes into it
        proc.barrier("configs checked")
    out_dir = Path(OmegaConf.select(cfg, "hydra.run.dir"))
    out_dir.mkdir(parents=True, exist_ok=True)
    record = OmegaConf.select(cfg, "hydra.output_subdir")
    if record and leads(proc):  # a resume writes none: the launch's record is kept
        compose.write_launch_record(out_dir / str(record), cfg)
    try:
        return [run_config(compose.to_plain(cfg), out_dir, given=given)], []
    except UserError as err:
        return [], [err]


def _launch(flags: list[str], overrides: list[str]) -> tuple[list[dict[str, Any]], list[UserError]]:
    """Run Hydra (a multirun's jobs, or a run with Hydra's own flags); ``(results, user errors)``."""
    import hydra
    from hydra.core.global_hydra import GlobalHydra
    from hydra.core.hydra_config import HydraConfig

    results: list[dict[str, Any]] = []
    errors: list[UserError] = []

    @hydra.main(version_base="1.3", config_path=str(paths.conf_dir()), config_name=compose.CONFIG_NAME)
    def job(cfg):
        hc = HydraConfig.get()
        try:
            multirun = hc.mode is not None and str(hc.mode).endswith("MULTIRUN")
            results.append(run_config(compose.to_plain(cfg), Path(hc.runtime.output_dir), multirun=multirun,
                                      given=_given_keys(overrides)))
        except UserError as err:
            # Recorded, not raised: Hydra would print a traceback and exit 1. main() reports it as one
            # `error:` line with the error's exit code once Hydra returns.
            errors.append(err)

    old_argv = sys.argv
    sys.argv = ["tradelab train", *flags, *overrides]
    try:
        job()
    finally:
        sys.argv = old_argv
        GlobalHydra.instance().clear()
    return results, errors


def _join(composed: Any) -> None:
    """A multi-process run (``run.coordinator``/``num_processes``/``process_id``, or a SLURM step of several
    tasks) joins its peers before Hydra names the run directory, and every process takes process 0's
    timestamp: processes started seconds apart train one sweep directory (docs/clusters.md)."""
    from omegaconf import OmegaConf

    from tradelab_jax.training.devices import ensure_joined

    proc = ensure_joined(OmegaConf.to_container(composed.run, resolve=False))
    if proc is not None:
        os.environ[compose.TIMESTAMP_ENV] = proc.agree("timestamp", os.environ[compose.TIMESTAMP_ENV])


def main(argv: list[str] | None = None) -> int:
    """``tradelab train [hydra flags] [overrides]`` -> exit code (0 done, 2 user error, 130 cancelled)."""
    # parse
    argv = list(sys.argv[1:] if argv is None else argv)
    flags, overrides = compose.split_argv(argv)
    multirun = any(f in ("-m", "--multirun") for f in flags)
    if multirun and compose.pack_requested(overrides):
        flags, overrides = compose.pack_multirun(flags, overrides)
    informational = any(f in INFORMATIONAL_FLAGS for f in flags)

    # One timestamp names every directory of this call (and of the jobs a launcher starts).
    old_timestamp = os.environ.get(compose.TIMESTAMP_ENV)
    os.environ[compose.TIMESTAMP_ENV] = old_timestamp or runs.utc_timestamp()
    try:
        # check
        compose.register()
        single = not multirun and not flags  # Hydra's flags (--cfg, -h, --config-dir...) go through Hydra
        # --help and --cfg train nothing: Hydra's own report, without the value checks (and without JAX).
        composed = None if informational else compose.check_overrides(overrides, multirun=multirun,
                                                                      hydra_config=single,
                                                                      composed=_join if single else None)
        _warn_ignored_on_resume(overrides)
        # launch
        given = _given_keys(overrides)
        results, errors = _launch_single(composed, given) if single else _launch(flags, overrides)
    finally:
        if old_timestamp is None:
            os.environ.pop(compose.TIMESTAMP_ENV, None)
        else:
            os.environ[compose.TIMESTAMP_ENV] = old_timestamp
    if informational:
        return 0
    if errors:
        if len(errors) == 1 and not results:
            raise errors[0]
        for err in errors:
            print(f"error: {err}", file=sys.stderr)
        return 2
    return 130 if any(r["status"] == "cancelled" for r in results) else 0


def run_demo(extra: list[str] | None = None) -> int:
    """The README's demo: PPO on the embedded BTC data, then the test-split summary vs buy-and-hold."""
    return main(["experiment=demo", *(extra or [])])


if __name__ == "__main__":
    from tradelab_jax.cli import main as cli_main

    sys.exit(cli_main(["train", *sys.argv[1:]]))
