"""`tradelab demo`: the README's main job on the embedded data.

1. Validate every dataset in the lake (schema, grid, OHLC, checksums) and list them.
2. Train a small PPO agent on the default BTC/USDT 1m dataset and print the test-split summary against
   buy-and-hold (`tradelab train experiment=demo`). With --quick, replay a random-policy episode instead.
"""

from __future__ import annotations

import argparse


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="tradelab demo", description=__doc__.splitlines()[0])
    parser.add_argument("--lake", default=None, help="lake root (default: data/ or $TRADELAB_LAKE)")
    parser.add_argument(
        "--quick", action="store_true", help="skip training: validate the lake and replay a random episode"
    )
    args = parser.parse_args(argv)

    from tradelab_jax.data import cli as data_cli

    lake_args = ["--lake", args.lake] if args.lake else []
    print("== 1/2  validating the embedded data lake", flush=True)
    rc = data_cli.main(["validate", "--all", *lake_args])
    if rc != 0:
        return rc

    if not args.quick:
        from tradelab_jax.train import run_demo

        print("== 2/2  training PPO on binance_btcusdt_1m (a few minutes on 2 CPU cores)", flush=True)
        return run_demo([f"data.lake={args.lake}"] if args.lake else [])

    from tradelab_jax import episode

    print("== 2/2  replaying a random-policy episode on the test split", flush=True)
    return episode.main(
        ["--dataset", "binance_btcusdt_1m", "--split", "test", "--policy", "random", *lake_args]
    )
