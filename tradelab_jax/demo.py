"""`tradelab demo`: the README's main job on the embedded data.

1. Validate the demo's dataset (schema, grid, OHLC, checksums). Only that one: a broken dataset the user
   added to the lake must not stop a demo that never reads it.
2. Train the demo's PPO agent over SEEDS seeds as one packed sweep (`tradelab train experiment=demo
   sweep.seed=[0,1,2,3]`), each seed with a quarter of experiment=demo's env steps, so the whole demo does
   the same work as one seed did; training itself prints the test-split summary against the baselines and
   ends with the stats verdict (docs/statistics.md, training/session.py): the first number a newcomer sees
   has an interval over seeds, the trades and exposure behind it, and the deflated Sharpe probability.
   The demo adds how long it took, and prints no verdict of its own (it once printed it twice). With
   --quick, replay a random-policy episode instead, written to ``<outputs>/<UTC timestamp>_demo-quick/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# The dataset of conf/experiment/demo.yaml (`data.id`), the only one the demo reads.
DATASET = "binance_btcusdt_1m"
QUICK_TAG = "demo-quick"
TAG = "demo"  # conf/experiment/demo.yaml's run.tag
SEEDS = (0, 1, 2, 3)
DEMO_TIMESTEPS = 2_097_152  # conf/experiment/demo.yaml's agent.total_timesteps: the demo's whole budget


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tradelab demo", description=__doc__.splitlines()[0])
    parser.add_argument("--lake", default=None, help="lake root (default: data/ or $TRADELAB_LAKE)")
    parser.add_argument(
        "--quick", action="store_true",
        help=f"skip training: validate {DATASET} and replay a random-policy episode into "
        f"<outputs>/<UTC timestamp>_{QUICK_TAG}/",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE",
                        help="extra `tradelab train` overrides for the demo's training (e.g. a smaller "
                        "budget)")
    args = parser.parse_args(argv)

    print(f"== 1/2  validating the demo's dataset {DATASET}", flush=True)
    validate_demo_dataset(args.lake)

    if not args.quick:
        return train_seeds(args.lake, args.overrides)
    return replay_random_episode(args.lake)


def train_overrides(lake: str | None, run_dir, extra: list[str] = ()) -> list[str]:
    """The demo's `tradelab train` overrides: experiment=demo over SEEDS seeds packed into one program, each
    with DEMO_TIMESTEPS / len(SEEDS) env steps (the same total work as one seed of experiment=demo), test
    split only (the one the summary and the verdict read)."""
    seeds = ",".join(str(s) for s in SEEDS)
    own = ["experiment=demo", f"sweep.seed=[{seeds}]",
           f"agent.total_timesteps={DEMO_TIMESTEPS // len(SEEDS)}", "run.eval_splits=[test]",
           f"run.dir={run_dir}", *([f"data.lake={lake}"] if lake else [])]
    given = {o.split("=", 1)[0] for o in extra}
    return [o for o in own if o.split("=", 1)[0] not in given] + list(extra)  # an extra one replaces ours


def train_seeds(lake: str | None, extra: list[str]) -> int:
    """Train the packed seeds (training prints the summary and the verdict line of the sweep's stats.json,
    and where stats.json and the report are), then how long the demo took."""
    import time

    from tradelab_jax import paths, runs
    from tradelab_jax.stats.compute import STATS_FILE
    from tradelab_jax.train import main as train_main

    run_dir = paths.default_outputs() / "multirun" / runs.run_dir_name(TAG)
    print(f"== 2/2  training PPO on {DATASET} over {len(SEEDS)} seeds in one program (a few minutes on 2 "
          f"CPU cores) into {run_dir}", flush=True)
    t0 = time.monotonic()
    rc = train_main(train_overrides(lake, run_dir, extra))
    if rc != 0:
        return rc
    if not (run_dir / STATS_FILE).is_file():
        print(f"no {STATS_FILE} was written; run `tradelab stats {run_dir}`", flush=True)
        return rc
    print(f"the demo took {time.monotonic() - t0:.0f} s; the full statistics: tradelab stats {run_dir}",
          flush=True)
    return rc


def validate_demo_dataset(lake: str | None) -> None:
    """Print the demo dataset's validation report; a dataset with errors stops the demo (exit 3)."""
    from tradelab_jax.data.lake import Lake
    from tradelab_jax.data.validate import format_reports, validate_dataset
    from tradelab_jax.errors import DataError

    report = validate_dataset(Lake.at(lake), DATASET)
    if report.ok:
        print(format_reports([report]), flush=True)
        return
    lake_arg = f" --lake {lake}" if lake else ""
    raise DataError(
        f"dataset {DATASET}, which the demo trains on, fails validation with {len(report.errors)} error(s), "
        f"so the demo stops here; run `tradelab data validate {DATASET}{lake_arg}` to see them"
    )


def quick_out_dir() -> Path:
    """A fresh ``<outputs>/<UTC timestamp>_demo-quick/`` (no status.json, so never listed as a run)."""
    from tradelab_jax import paths, runs

    return paths.default_outputs() / runs.run_dir_name(QUICK_TAG)


def replay_random_episode(lake: str | None) -> int:
    from tradelab_jax import episode

    out_dir = quick_out_dir()
    print(f"== 2/2  replaying a random-policy episode on the test split into {out_dir}", flush=True)
    lake_args = ["--lake", lake] if lake else []
    rc = episode.main(["--dataset", DATASET, "--split", "test", "--policy", "random", "--out", str(out_dir),
                       *lake_args])
    if rc == 0:
        print(f"the demo's episode is in {out_dir}", flush=True)
    return rc
