"""``tradelab check lookahead|recursive``: prove a feature set (and the env over it) free of look-ahead."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from tradelab_jax import features as fs
from tradelab_jax.checks import lookahead, recursive
from tradelab_jax.errors import UserError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tradelab check", description=__doc__)
    ap.add_argument("check", choices=("lookahead", "recursive"))
    ap.add_argument("--dataset", default="binance_btcusdt_1m")
    ap.add_argument("--lake", default=None)
    ap.add_argument("--features", default="full", help="a shipped feature set's name or a YAML path")
    ap.add_argument("--bars", type=int, default=20_000, help="check the first N bars (0: all)")
    ap.add_argument("--cuts", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    return ap


def report(verdicts: Sequence[lookahead.Verdict], what: str) -> int:
    """Print the table; 1 (naming the first failing feature and bar) if any moved, else 0."""
    width = max(len(v.name) for v in verdicts)
    print(f"{'feature':<{width}}  {what:>8}  {'bars':>10}  verdict")
    for v in verdicts:
        verdict = "ok" if v.ok else f"MOVED at bar {v.first_moved} ({v.perturbation})"
        print(f"{v.name:<{width}}  {v.cuts:>8}  {v.bars:>10}  {verdict}")
    bad = [v for v in verdicts if not v.ok]
    if bad:
        print(failure_sentence(bad[0], what), file=sys.stderr)
        return 1
    return 0


def failure_sentence(v: lookahead.Verdict, what: str) -> str:
    if what == "cuts":
        return f"look-ahead: {v.name} moved at bar {v.first_moved} when bars after the cut were rewritten " \
               f"({v.perturbation})"
    return f"recursive: {v.name} differs at bar {v.first_moved} when the series starts later " \
           f"({v.perturbation}); its documented warm-up is too short"


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        from tradelab_jax import data

        if args.bars < 0 or args.cuts < 1:
            raise UserError("--bars must be >= 0 and --cuts >= 1")
        market = data.load(args.dataset, lake=args.lake)
        bars = {k: v[: args.bars] if args.bars else v for k, v in market.bars.items()}
        specs = fs.load_feature_set(args.features)
        if args.check == "lookahead":
            verdicts = lookahead.check_features(bars, specs, cuts=args.cuts, seed=args.seed)
            verdicts.append(lookahead.check_env(bars, specs, cuts=max(1, args.cuts // 2), seed=args.seed))
            return report(verdicts, "cuts")
        return report(recursive.check(bars, specs), "offsets")
    except UserError as err:
        print(f"tradelab check: {err}", file=sys.stderr)
        return 2
