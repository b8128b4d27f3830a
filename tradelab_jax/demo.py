"""`tradelab demo`: the README's main job on the embedded data.

1. Validate the demo's dataset (schema, grid, OHLC, checksums). Only that one: a broken dataset the user
   added to the lake must not stop a demo that never reads it.
2. Train a small PPO agent on it and print the test-split summary against the baselines
   (`tradelab train experiment=demo`). With --quick, replay a random-policy episode instead, written to
   ``<outputs>/<UTC timestamp>_demo-quick/``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

# The dataset of conf/experiment/demo.yaml (`data.id`), the only one the demo reads.
DATASET = "binance_btcusdt_1m"
QUICK_TAG = "demo-quick"


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tradelab demo", description=__doc__.splitlines()[0])
    parser.add_argument("--lake", default=None, help="lake root (default: data/ or $TRADELAB_LAKE)")
    parser.add_argument(
        "--quick", action="store_true",
        help=f"skip training: validate {DATASET} and replay a random-policy episode into "
        f"<outputs>/<UTC timestamp>_{QUICK_TAG}/",
    )
    args = parser.parse_args(argv)

    print(f"== 1/2  validating the demo's dataset {DATASET}", flush=True)
    validate_demo_dataset(args.lake)

    if not args.quick:
        from tradelab_jax.train import run_demo

        print(f"== 2/2  training PPO on {DATASET} (a few minutes on 2 CPU cores)", flush=True)
        return run_demo([f"data.lake={args.lake}"] if args.lake else [])
    return replay_random_episode(args.lake)


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
