"""``tradelab stats DIR``: recompute stats.json for a run, packed sweep, multirun or CV directory (also one
trained before stats.json existed), print one line per configuration and the verdict."""

from __future__ import annotations

import argparse

from tradelab_jax.errors import UserError


def config_line(c: dict) -> str:
    """A configuration's agent Sharpe: mean, IQM and its 95 % interval (or why there is none)."""
    from tradelab_jax.fmt import fmt_num

    a = (c["policies"].get("agent") or {}).get("sharpe") or {}
    if a.get("mean") is None:
        return f"{c['name']}: agent Sharpe n/a ({a.get('reason', 'no agent row')})"
    ci = a.get("iqm_ci95")
    interval = f"95 % interval {fmt_num(ci[0])} to {fmt_num(ci[1])}" if ci else f"no interval ({a['reason']})"
    return (f"{c['name']}: agent Sharpe mean {fmt_num(a['mean'])}, IQM {fmt_num(a['iqm'])}, {interval}; "
            f"{len(c['points'])} point(s)")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="tradelab stats", description=" ".join(__doc__.split()))
    ap.add_argument("dir", help="a run, packed sweep, multirun or CV directory")
    ap.add_argument("--no-write", action="store_true", help="print only, do not write DIR/stats.json")
    args = ap.parse_args(argv)
    from tradelab_jax import paths
    from tradelab_jax.stats.compute import STATS_FILE, compute, write_stats

    if not args.no_write:
        paths.check_output_dir(args.dir, "DIR")
    try:
        s = compute(args.dir) if args.no_write else write_stats(args.dir)
    except (OSError, ValueError) as err:
        raise UserError(f"cannot read {args.dir}: {err}") from err
    for c in s["configs"]:
        print(config_line(c))
    print(s["verdict"])
    if not args.no_write:
        print(f"wrote {args.dir.rstrip('/')}/{STATS_FILE}")
    return 0
