"""``tradelab data``: ingest, import, validate, list, resample and trades-to-bars.

Every subcommand takes ``--lake DIR`` (default ``$TRADELAB_LAKE`` or the repo's ``data/``). Bad input raises
:class:`~tradelab_jax.errors.UserError`/:class:`~tradelab_jax.errors.DataError`, which the ``tradelab``
dispatcher prints as one ``error:`` line; nothing in the lake changes unless a command succeeds.
"""

from __future__ import annotations

import argparse
import json
import sys

from tradelab_jax.errors import DataError, UserError

EPILOG = "See docs/data.md for the lake layout, the manifest fields and the validation rules."


def _add_lake(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--lake",
        metavar="DIR",
        help="lake root (default: $TRADELAB_LAKE, else the repo's data/)",
    )


def _add_market(p: argparse.ArgumentParser, timeframe_default: str | None = None) -> None:
    p.add_argument("--exchange", required=True, help="ccxt exchange id, e.g. binance")
    p.add_argument("--symbol", required=True, help="ccxt unified symbol, e.g. BTC/USDT")
    if timeframe_default is None:
        p.add_argument("--timeframe", required=True, help="bar length, e.g. 1m, 5m, 1h")
    else:
        p.add_argument(
            "--timeframe", default=timeframe_default, help=f"bar length (default {timeframe_default})"
        )
    p.add_argument(
        "--dataset-id",
        help="dataset id (default <exchange>_<base><quote>_<timeframe> lower-cased, e.g. binance_btcusdt_1m)",
    )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradelab data",
        description="The market-data lake: Parquet month files plus one manifest per dataset.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "ingest",
        help="backfill bars from an exchange with ccxt fetchOHLCV (resumable)",
        description=(
            "Page through ccxt fetchOHLCV from --since to --until into the lake. Respects the exchange's "
            "rate limit, retries 429/418/5xx/timeouts/dropped connections with backoff, never stores a "
            "candle that is still forming, commits each page atomically and refreshes the manifest, so "
            "re-running the same command after an interruption continues where it stopped."
        ),
        epilog=EPILOG,
    )
    _add_market(p)
    p.add_argument("--since", required=True, help="first bar open time (ISO date/time, UTC, or epoch ms)")
    p.add_argument("--until", help="end, exclusive (default: now; bars still forming are never stored)")
    p.add_argument("--api-url", help="override the exchange's REST base URL (e.g. a mirror or a test server)")
    p.add_argument(
        "--config",
        metavar="FILE",
        help="YAML/JSON file with ingest settings (api_url, limit, rate_limit_ms, max_retries, timeout_s, "
        "backoff_s, max_backoff_s, market_type), at the top level, under ingest: or under exchanges.<id>; "
        "default $TRADELAB_DATA_CONFIG",
    )
    p.add_argument("--limit", type=int, help="bars per request (default: the exchange's maximum)")
    p.add_argument(
        "--rate-limit-ms",
        type=float,
        help="ccxt's delay per unit of request cost in ms (default: the exchange's published limit)",
    )
    p.add_argument("--max-retries", type=int, help="retries of one request before giving up (default 8)")
    p.add_argument("--timeout", type=float, dest="timeout_s", help="HTTP timeout in seconds (default 30)")
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    _add_lake(p)

    p = sub.add_parser(
        "import",
        help="bring a CSV or Parquet file of bars into the lake",
        description=(
            "Read a CSV or Parquet file (time column ts/timestamp/date/open_time in ms, s, us, ns or ISO "
            "8601; open, high, low, close, volume), check every validation rule and write it as a dataset. "
            "A file that breaks a rule is refused and the lake is left unchanged."
        ),
        epilog=EPILOG,
    )
    p.add_argument("path", help="CSV or Parquet file")
    _add_market(p)
    p.add_argument("--provenance", metavar="FILE", help="Markdown file describing where the data came from")
    p.add_argument("--replace", action="store_true", help="overwrite an existing dataset with the same id")
    p.add_argument(
        "--sort", action="store_true", help="sort rows by time first (duplicates are still refused)"
    )
    p.add_argument(
        "--unconfirmed-last-bar",
        action="store_true",
        help="mark the last bar as possibly still forming when the file was made",
    )
    _add_lake(p)

    p = sub.add_parser(
        "validate",
        help="check datasets: files, checksums, schema, time grid, gaps, OHLC, NaN",
        description="Check every rule on one dataset or all of them; exits non-zero on any error.",
        epilog=EPILOG,
    )
    which = p.add_mutually_exclusive_group()
    which.add_argument("dataset_id", nargs="?", help="dataset to check")
    which.add_argument("--all", action="store_true", help="check every dataset (the default)")
    p.add_argument("--json", action="store_true", help="print a JSON report")
    _add_lake(p)

    p = sub.add_parser(
        "list",
        help="list datasets with range, rows, gaps and status",
        description="One line per dataset of the lake, read from its manifest: id, market, timeframe, first "
        "and last bar, rows, gaps, and a quick status (ok when every file exists with its manifest sha256; "
        "`tradelab data validate` runs every rule).",
        epilog=EPILOG,
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    _add_lake(p)

    p = sub.add_parser(
        "resample",
        help="aggregate a dataset to a longer timeframe (complete buckets only)",
        description=(
            "open=first, high=max, low=min, close=last, volume (and *volume extras)=sum; a bucket is written "
            "only when every one of its bars is present."
        ),
        epilog=EPILOG,
    )
    p.add_argument("dataset_id", help="source dataset")
    p.add_argument("--to", required=True, dest="to", help="target timeframe, e.g. 5m, 15m, 1h")
    p.add_argument(
        "--dataset-id",
        dest="out_id",
        help="id of the new dataset (default: source id with the new timeframe)",
    )
    p.add_argument("--replace", action="store_true", help="overwrite an existing dataset with the same id")
    _add_lake(p)

    p = sub.add_parser(
        "trades-to-bars",
        help="turn a ccxt trades file into bars with taker buy/sell volume",
        description=(
            "Read a ccxt-style trades file (ts/timestamp, side, price, amount) and write bars with "
            "taker_buy_volume and taker_sell_volume. Minutes without trades become flat bars at the previous "
            "close with zero volume (--empty fill, default) or are left out as gaps (--empty skip)."
        ),
        epilog=EPILOG,
    )
    p.add_argument("path", help="CSV or Parquet trades file")
    _add_market(p, timeframe_default="1m")
    p.add_argument(
        "--empty", choices=("fill", "skip"), default="fill", help="what to do with bars without trades"
    )
    p.add_argument("--provenance", metavar="FILE", help="Markdown file describing where the trades came from")
    p.add_argument("--replace", action="store_true", help="overwrite an existing dataset with the same id")
    _add_lake(p)

    p = sub.add_parser(
        "stream",
        help="store live closed candles from the exchange's websocket (ccxt.pro), gaps filled by REST",
        description=(
            "Watch candles with ccxt.pro watch_ohlcv and store each one once it has closed (when the next "
            "one opens). On start and after every reconnect the bars since the last stored one come from the "
            "REST API (data ingest's backfill), so the dataset has no gap the exchange could fill and no "
            "duplicate. Each closed candle is fsynced to a journal, then compacted into the month files with "
            "the manifest refreshed; a restart replays the journal. Reconnects with backoff after a drop, a "
            "stall or an exchange error. SIGINT/SIGTERM stop cleanly. See docs/streaming.md."
        ),
        epilog=EPILOG,
    )
    p.add_argument("--exchange", required=True, help="ccxt exchange id with a ccxt.pro client, e.g. binance")
    p.add_argument("--symbol", required=True, help="ccxt symbol(s), comma-separated: BTC/USDT,ETH/USDT")
    p.add_argument("--timeframe", required=True, help="bar length, e.g. 1m")
    p.add_argument("--dataset-id", help="dataset id(s), one per symbol, comma-separated (default "
                   "<exchange>_<base><quote>_<timeframe>)")
    p.add_argument("--since", help="first bar of a dataset that has none yet (ISO UTC or epoch ms; default: "
                   "the first candle streamed)")
    p.add_argument("--stall-s", type=float, help="reconnect after this many seconds without a message "
                   "(default 30)")
    p.add_argument("--ws-url", help="override the websocket URL (e.g. ws://127.0.0.1:9000/ws)")
    p.add_argument("--rest-url", help="override the REST base URL (as data ingest --api-url)")
    p.add_argument("--config", metavar="FILE|PRESET", help="stream settings: a YAML file or a preset of "
                   "conf/stream/ (ws_url, rest_url, stall_s, backoff_s, max_backoff_s, compact_every, "
                   "timeout_s, max_retries, status_every_s)")
    p.add_argument("--compact-every", type=int, help="closed candles per compaction into the month files "
                   "(default 1)")
    p.add_argument("--no-status", action="store_true", help="hide the live status line")
    p.add_argument("--json", action="store_true", help="print the final counts as JSON")
    _add_lake(p)

    p = sub.add_parser(
        "retain",
        help="drop a dataset's bars older than a window or a date (dry run unless --yes)",
        description=(
            "Remove the bars opening before now minus --keep (e.g. 90d) or before --before DATE. Dry run by "
            "default: it lists the month files that would go and the bytes freed; --yes deletes. The kept "
            "bars are rewritten with the lake's writer (manifest switched atomically, under the dataset's "
            "writer lock), so a kill leaves the old or the new version whole. The repo's shipped datasets "
            "are never touched. See docs/streaming.md (retention, cron and systemd timers)."
        ),
        epilog=EPILOG,
    )
    p.add_argument("dataset_id", help="dataset to trim")
    when = p.add_mutually_exclusive_group()
    when.add_argument("--keep", help="keep this much before now (UTC): 90d, 12h, 2w")
    when.add_argument("--before", help="remove bars opening before this date/time (ISO UTC or epoch ms)")
    p.add_argument("--config", metavar="FILE|PRESET", help="a retention preset of conf/retention/ or a "
                   "YAML file; its data: section gives keep or before")
    p.add_argument("--yes", action="store_true", help="delete (default: only list what would go)")
    _add_lake(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    handler = {
        "ingest": _ingest,
        "import": _import,
        "validate": _validate,
        "list": _list,
        "resample": _resample,
        "trades-to-bars": _trades_to_bars,
        "stream": _stream,
        "retain": _retain,
    }[args.command]
    if args.command in WRITING_COMMANDS:
        from tradelab_jax.paths import check_output_dir, resolve_lake

        check_output_dir(resolve_lake(args.lake), "--lake")
    return handler(args)


# Subcommands that write into the lake: their --lake is checked before anything is read or fetched.
WRITING_COMMANDS = frozenset({"ingest", "import", "resample", "trades-to-bars", "stream", "retain"})


def _lake(args: argparse.Namespace):
    from tradelab_jax.data.lake import Lake

    return Lake.at(args.lake)


def _summary(manifest: dict) -> str:
    gaps = manifest.get("gaps") or []
    return (
        f"{manifest['id']}: {manifest['rows']:,} bars {manifest['first_bar']} → {manifest['last_bar']}, "
        f"{len(gaps)} gap(s), {len(manifest['files'])} file(s)"
    )


def _ingest(args: argparse.Namespace) -> int:
    from tradelab_jax.data.ingest import IngestSettings, ingest

    settings = IngestSettings.from_sources(
        exchange=args.exchange,
        config_path=args.config,
        api_url=args.api_url,
        limit=args.limit,
        rate_limit_ms=args.rate_limit_ms,
        max_retries=args.max_retries,
        timeout_s=args.timeout_s,
    )
    result = ingest(
        exchange=args.exchange,
        symbol=args.symbol,
        timeframe=args.timeframe,
        since=args.since,
        until=args.until,
        dataset_id=args.dataset_id,
        lake=_lake(args),
        settings=settings,
        progress=not args.no_progress,
    )
    print(
        f"ingested {result.new_bars:,} new bar(s) in {result.requests} request(s) "
        f"({result.retries} retried); {_summary(result.manifest)}"
    )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _import(args: argparse.Namespace) -> int:
    from tradelab_jax.data.importer import import_file

    result = import_file(
        args.path,
        exchange=args.exchange,
        symbol=args.symbol,
        timeframe=args.timeframe,
        lake=_lake(args),
        dataset_id=args.dataset_id,
        provenance=args.provenance,
        replace=args.replace,
        sort=args.sort,
        unconfirmed_last_bar=args.unconfirmed_last_bar,
    )
    print(f"imported {_summary(result.manifest)}")
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _validate(args: argparse.Namespace) -> int:
    from tradelab_jax.data.validate import format_reports, reports_json, validate_all

    lake = _lake(args)
    ids = [args.dataset_id] if args.dataset_id else None
    if ids is None and not lake.ids():
        raise UserError(f"lake {lake.root} has no datasets (no manifests/*.json)")
    reports = validate_all(lake, ids)
    print(reports_json(reports) if args.json else format_reports(reports))
    return 0 if all(r.ok for r in reports) else DataError.exit_code


def _list(args: argparse.Namespace) -> int:
    from tradelab_jax.data.loader import list_datasets

    items = list_datasets(args.lake)
    if args.json:
        print(json.dumps({"datasets": items}, indent=2))
        return 0
    if not items:
        print(f"no datasets in lake {_lake(args).root}")
        return 0
    header = ("id", "market", "tf", "first bar", "last bar", "rows", "gaps", "status")
    rows = [
        (
            i["id"],
            f"{i.get('exchange') or '?'} {i.get('symbol') or '?'}",
            i.get("timeframe") or "?",
            i.get("first_bar") or "-",
            i.get("last_bar") or "-",
            f"{i['rows']:,}" if isinstance(i.get("rows"), int) else "-",
            f"{i['gaps']} ({i['missing_bars']:,} bars)" if i.get("gaps") else str(i.get("gaps", "-")),
            i["status"],
        )
        for i in items
    ]
    widths = [max(len(h), *(len(r[k]) for r in rows)) for k, h in enumerate(header)]
    print("  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip())
    for row in rows:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0 if all(i["status"] == "ok" for i in items) else DataError.exit_code


def _resample(args: argparse.Namespace) -> int:
    from tradelab_jax.data.resample import resample_dataset

    manifest = resample_dataset(
        args.dataset_id, args.to, lake=_lake(args), out_id=args.out_id, replace=args.replace
    )
    print(f"resampled to {_summary(manifest)}")
    return 0


def _trades_to_bars(args: argparse.Namespace) -> int:
    from tradelab_jax.data.resample import trades_file_to_dataset

    manifest, notes = trades_file_to_dataset(
        args.path,
        exchange=args.exchange,
        symbol=args.symbol,
        timeframe=args.timeframe,
        lake=_lake(args),
        dataset_id=args.dataset_id,
        empty=args.empty,
        provenance=args.provenance,
        replace=args.replace,
    )
    print(f"built {_summary(manifest)}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def _split(text: str | None) -> tuple[str, ...] | None:
    return None if text is None else tuple(t.strip() for t in text.split(",") if t.strip())


def _stream(args: argparse.Namespace) -> int:
    import signal
    import threading

    from tradelab_jax.data.stream import StreamConfig, config_from, result_json, run

    base = StreamConfig(exchange=args.exchange, symbols=_split(args.symbol), timeframe=args.timeframe,
                        dataset_ids=_split(args.dataset_id), lake=args.lake, since=args.since,
                        status=not args.no_status)
    cfg = config_from(base, args.config, ws_url=args.ws_url, rest_url=args.rest_url, stall_s=args.stall_s,
                      compact_every=args.compact_every)
    stop = threading.Event()
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        result = run(cfg, stop=stop)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if args.json:
        print(result_json(result))
    else:
        print(
            f"stopped: stored {result.total_stored():,} closed bar(s) ("
            + ", ".join(f"{s} {n:,}" for s, n in result.bars_stored.items())
            + f"), {result.reconnects} reconnect(s), {result.journal_replays} journal replay(s)"
        )
    for warning in result.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _retain(args: argparse.Namespace) -> int:
    from tradelab_jax.data.retain import read_preset, retain

    keep, before = args.keep, args.before
    if keep is None and before is None and args.config:
        preset = read_preset(args.config, "data", ("keep", "before"))
        keep, before = preset.get("keep"), preset.get("before")
    plan = retain(_lake(args), args.dataset_id, keep=keep, before=before, yes=args.yes)
    if not plan.bars_removed:
        print(plan.describe())
    elif args.yes:
        print(f"removed {plan.describe()}")
    else:
        print(f"would remove {plan.describe()}\ndry run: nothing was deleted; add --yes to delete")
    return 0


if __name__ == "__main__":
    from tradelab_jax.cli import main as _tradelab_main

    sys.exit(_tradelab_main(["data", *sys.argv[1:]]))
