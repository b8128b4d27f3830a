"""``tradelab paper RUN_DIR --exchange binance --symbol BTC/USDT``: paper-trade a trained policy on live
candles streamed by ``tradelab data stream``'s own code, in one process. Never sends an order and reads no
API key (public market data only). See docs/paper.md."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import threading
from pathlib import Path
from typing import Any

from tradelab_jax.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tradelab paper",
        description="Paper-trade a trained run on live closed candles through the same env step as the "
                    "backtest. Never sends an order; reads no API key.",
    )
    p.add_argument("run_dir", metavar="RUN_DIR", help="a trained run directory (as episode --policy)")
    p.add_argument("--exchange", default="binance", help="default %(default)s")
    p.add_argument("--symbol", required=True, help="e.g. BTC/USDT")
    p.add_argument("--timeframe", default="1m", help="default %(default)s")
    p.add_argument("--dataset", default=None,
                   help="lake dataset holding the warm-up history, which the stream extends "
                        "(default <exchange>_<base><quote>_<timeframe>, e.g. binance_btcusdt_1m)")
    p.add_argument("--lake", default=None, help="data lake (default: data/ or $TRADELAB_LAKE)")
    p.add_argument("--out", default=None,
                   help="session directory; an existing one resumes its account "
                        "(default <outputs>/paper/<UTC timestamp>_<symbol>)")
    p.add_argument("--ws-url", default=None, help="override the websocket URL (a test server)")
    p.add_argument("--rest-url", default=None, help="override the REST base URL (a test server)")
    p.add_argument("--stall-s", type=float, default=30.0, help="reconnect after this long without a message")
    p.add_argument("--until", default=None,
                   help="stop after trading the bar that opens at this time (ISO UTC or epoch ms)")
    p.add_argument("--refresh-s", type=float, default=5.0,
                   help="rewrite telemetry, summary and status at most this often (default %(default)s s)")
    p.add_argument("--plot-s", type=float, default=60.0,
                   help="redraw equity.png this often (default %(default)s s)")
    p.add_argument("--quiet", action="store_true", help="no line per traded bar on stderr")
    return p


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    from tradelab_jax import runs
    from tradelab_jax.data.schema import check_symbol, default_dataset_id, parse_time, timeframe_ms
    from tradelab_jax.paths import check_output_dir, default_outputs

    run_dir = Path(args.run_dir).expanduser()
    if not run_dir.is_dir():
        raise UserError(f"RUN_DIR {args.run_dir!r} is not a directory; give a trained run directory")
    check_symbol(args.symbol)
    tf_ms = timeframe_ms(args.timeframe)
    until = None if args.until is None else parse_time(args.until, "--until")
    dataset = args.dataset or default_dataset_id(args.exchange, args.symbol, args.timeframe)
    if args.out is None:
        slug = args.symbol.replace("/", "").replace(":", "_").lower()
        out = default_outputs() / "paper" / f"{runs.utc_timestamp()}_{slug}"
    else:
        out = Path(args.out).expanduser()
    out = check_output_dir(out, "--out")
    from tradelab_jax.episode import run_settings

    settings = run_settings(run_dir, what="RUN_DIR")
    out.mkdir(parents=True, exist_ok=True)
    from tradelab_jax.errors import BusyError
    from tradelab_jax.io import exclusive_lock

    def busy(_record: Any) -> BusyError:
        return BusyError(f"paper session {out} is running in another process; stop it first")

    with exclusive_lock(out, busy=busy):
        return _run(args, run_dir, settings, out, dataset, tf_ms, until)


def _run(args, run_dir: Path, settings: dict, out: Path, dataset: str, tf_ms: int, until: int | None) -> int:
    import json

    from tradelab_jax import data, runs
    from tradelab_jax.data.lake import Lake
    from tradelab_jax.data.schema import ms_to_iso
    from tradelab_jax.data.stream import StreamConfig, run
    from tradelab_jax.io import atomic_write_json
    from tradelab_jax.paper import files
    from tradelab_jax.paper.session import PaperSession

    market = data.load(dataset, lake=args.lake)
    m = market.manifest
    want = (args.exchange, args.symbol, args.timeframe)
    if (m.get("exchange"), m.get("symbol"), m.get("timeframe")) != want:
        held = f"{m.get('exchange')} {m.get('symbol')} {m.get('timeframe')}"
        raise UserError(f"dataset {dataset!r} holds {held} bars, not {' '.join(want)}; pick its --dataset")
    paper_path = out / files.PAPER_FILE
    resumed = paper_path.is_file()
    if resumed:
        meta = json.loads(paper_path.read_text(encoding="utf-8"))
        mine = {"run": str(run_dir.resolve()), "exchange": args.exchange, "symbol": args.symbol,
                "timeframe": args.timeframe, "dataset": dataset}
        for key, value in mine.items():
            if meta.get(key) != value:
                raise UserError(f"--out {out} is a paper session of {key} {meta.get(key)!r}, not {value!r}; "
                                "resume it with its own settings or pick another --out")
    else:
        last = int(market.ts[-1])
        meta = {"kind": files.KIND, "run": str(run_dir.resolve()), "exchange": args.exchange,
                "symbol": args.symbol, "timeframe": args.timeframe, "timeframe_ms": tf_ms, "dataset": dataset,
                "lake": str(Lake.at(args.lake).root),
                "first_decision_ts": last, "first_decision": ms_to_iso(last),
                "first_close": float(market.bars["close"][-1]), "orders": "none (paper trading)",
                "started_at": runs.utc_now()}
    session = PaperSession(out, run_dir, settings, market.bars, meta, refresh_s=args.refresh_s,
                           plot_s=args.plot_s)
    if not resumed:
        atomic_write_json(paper_path, meta)
    start = {"resumed_at": runs.utc_now()} if resumed else {"started_at": runs.utc_now()}
    session.write_status(status="running", pid=os.getpid(), ended_at=None, error=None, **start)
    session.on_bars([])  # bars the lake gained while the session was down
    stop = threading.Event()
    outcome = {"signal": None}

    def finished() -> bool:
        return session.terminated or (until is not None and session.last_traded_ts >= until)

    def on_closed(symbol: str, candles: list[list]) -> None:
        bars = [dict(zip(("ts", "open", "high", "low", "close", "volume"), c, strict=True)) for c in candles]
        if bars and int(bars[0]["ts"]) > session.last_ts + tf_ms:
            # Bars the streamer replayed from its own journal at start are in the lake, not in this call.
            bars = _lake_bars(dataset, session.last_ts + tf_ms, int(bars[0]["ts"]), args.lake,
                              session.columns) + bars
        if until is not None:
            bars = [b for b in bars if int(b["ts"]) <= until]
        for record in session.on_bars(bars):
            if not args.quiet:
                row = record["row"]
                print(f"{ms_to_iso(record['ts'])} close {record['bar']['close']:.2f} action {row['action']} "
                      f"position {row['position']:+.6f} equity {row['equity']:.2f}", file=sys.stderr)
        if finished():
            stop.set()

    def on_signal(signum, frame):
        del frame
        outcome["signal"] = signum
        stop.set()

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        if not finished():
            cfg = StreamConfig(exchange=args.exchange, symbols=(args.symbol,), timeframe=args.timeframe,
                               dataset_ids=(dataset,), lake=args.lake, ws_url=args.ws_url,
                               rest_url=args.rest_url, stall_s=args.stall_s, status=not args.quiet)
            run(cfg, on_closed=on_closed, stop=stop)
    except BaseException as err:
        session.refresh(force=True)
        session.write_status(status="failed", pid=None, ended_at=runs.utc_now(),
                             error=str(err) if isinstance(err, UserError) else f"{type(err).__name__}: {err}")
        raise
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    session.refresh(force=True)
    state = "cancelled" if outcome["signal"] is not None and not finished() else "done"
    session.write_status(status=state, pid=None, ended_at=runs.utc_now(), gaps=session.gaps)
    n = len(session.records)
    print(f"paper session {out}: {n} bars traded, {state}" +
          (" (kill switch)" if session.terminated else ""), file=sys.stderr)
    return 130 if state == "cancelled" else 0


def _lake_bars(dataset: str, start: int, end: int, lake: Any, columns: list[str]) -> list[dict[str, Any]]:
    """The lake's bars with ``start <= ts < end`` as candles (none when it has none there)."""
    from tradelab_jax import data
    from tradelab_jax.errors import DataError

    try:
        found = data.load(dataset, start=start, end=end, lake=lake, verify=False)
    except DataError:
        return []
    return [{"ts": int(t), **{c: float(found.bars[c][i]) for c in columns}} for i, t in enumerate(found.ts)]
