"""``tradelab check lookahead|recursive|canary``: prove a feature set, the env over it and a trained policy
free of look-ahead, and show that the pipeline learns a leaked signal but not its causal version."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from tradelab_jax import features as fs
from tradelab_jax.checks import lookahead, recursive
from tradelab_jax.errors import UserError


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="tradelab check", description=__doc__)
    ap.add_argument("check", choices=("lookahead", "recursive", "canary"))
    ap.add_argument("--dataset", default=None, help="default: the run's dataset, else binance_btcusdt_1m")
    ap.add_argument("--lake", default=None)
    ap.add_argument("--features", default=None,
                    help="a shipped feature set's name or a YAML path (default: the run's, else full)")
    ap.add_argument("--run", default=None, metavar="RUN_DIR",
                    help="lookahead: also check this trained run's policy (its action probabilities)")
    ap.add_argument("--bars", type=int, default=20_000, help="check the first N bars (0: all)")
    ap.add_argument("--cuts", type=int, default=8)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=None,
                    help="canary: folder for its lake, runs and canary.json (default: outputs/<ts>_canary)")
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
    # A bad input raises UserError (DataError): tradelab_jax.cli prints its one sentence and exits 2 (3).
    if args.check == "canary":
        return _canary(args)
    from tradelab_jax import data

    if args.bars < 0 or args.cuts < 1:
        raise UserError("--bars must be >= 0 and --cuts >= 1")
    run_dir, dataset, features = None, args.dataset, args.features or "full"
    if args.run is not None:
        from tradelab_jax.episode import run_settings

        if args.check != "lookahead":
            raise UserError("--run goes with check lookahead")
        if args.features is not None:
            raise UserError("with --run, the features come from the run's config.yaml; drop --features")
        from tradelab_jax.runs import CONFIG_FILE

        run_dir = Path(args.run).expanduser()
        if not (run_dir / CONFIG_FILE).is_file():
            raise UserError(f"--run {args.run!r} is not a run directory: it has no {CONFIG_FILE}")
        settings = run_settings(run_dir, what="--run")
        dataset, features = dataset or settings["dataset"], settings["features"]
    market = data.load(dataset or data.DEFAULT_DATASET, lake=args.lake)
    bars = {k: v[: args.bars] if args.bars else v for k, v in market.bars.items()}
    specs = fs.load_feature_set(features) if isinstance(features, str) else features
    if args.check == "lookahead":
        verdicts = lookahead.check_features(bars, specs, cuts=args.cuts, seed=args.seed)
        verdicts.append(lookahead.check_env(bars, specs, cuts=max(1, args.cuts // 2), seed=args.seed))
        if run_dir is not None:
            verdicts.append(lookahead.check_policy(bars, run_dir, cuts=max(1, args.cuts // 2),
                                                   seed=args.seed))
        return report(verdicts, "cuts")
    return report(recursive.check(bars, specs), "offsets")


def _canary(args: argparse.Namespace) -> int:
    """Train both halves, print the table and the verdict; 1 if a half failed."""
    from tradelab_jax.checks import canary
    from tradelab_jax.io import atomic_write_json
    from tradelab_jax.paths import check_output_dir

    out = check_output_dir(args.out or canary.default_out(), "--out")
    halves = canary.run(out, seed=args.seed)
    lines = canary.table(halves)
    failed = [h.name for h in halves if not h.verdict()[0]]
    verdict = (f"canary FAILED: half {', '.join(failed)} (thresholds: docs/lookahead.md)" if failed else
               "canary passed: the pipeline learns the leaked next-bar return, and its causal (lag 1) "
               "version gives nothing away")
    atomic_write_json(out / "canary.json", canary.record(halves, verdict))
    print("\n".join([*lines, verdict]))
    print(f"wrote {out / 'canary.json'}")
    return 1 if failed else 0
