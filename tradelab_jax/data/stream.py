"""Live closed candles into the lake with ccxt.pro ``watch_ohlcv`` (``tradelab data stream``).

Why each rule holds (docs/streaming.md has the whole argument):

* **Closed only.** ccxt.pro's Binance client keeps ``[t, o, h, l, c, v]`` of each kline and drops the
  exchange's closed flag ``x``. While connected, a candle is closed when the next one opens: the exchange
  sends a candle's last update before the first update of the next, over one ordered connection, and each
  update carries the candle's cumulative state, so the last version seen before the next opens is final.
  Every update ccxt parses is seen, in arrival order (:func:`_record_updates`; ccxt's own cache keeps
  only the last state per candle). Within a candle an update with a lower volume than one already seen is
  older (volume only grows within a candle; equal volume means the same state), so duplicated and
  reordered messages never replace a newer state. An update of a candle already closed is ignored, unless
  it shows more volume than was stored (the next candle opened before this one's last update): then REST
  decides, and the correction reaches ``on_corrected``. A candle followed by skipped candles is taken from
  REST, since the stream that lost the next candles may have lost its last updates too.
* **Across an outage nothing streamed is trusted.** After any (re)connect the candle that was forming
  when the connection went is dropped (ccxt's cache may hold a partial candle that looks final; each
  session uses a fresh ccxt client, so no stale cache survives), and the first candle the new connection
  reports (``F``) fixes the cut: every bar from the last stored one (re-fetched to confirm it, and corrected
  if the exchange says otherwise) up to ``F`` comes from the REST API with ``data ingest``'s paging and
  checks. So the dataset never has a gap the exchange could fill, and never a duplicate (bars are merged
  by open time).
* **Durable.** Each closed candle is appended to the dataset's journal and fsynced
  (:mod:`tradelab_jax.data.journal`) before anyone is told about it; compaction merges the journal into
  the month Parquet files with ``data ingest``'s writer (``IngestState.commit``: month files atomically,
  then the manifest), so files are byte-identical to what ``data ingest`` writes, and empties the journal
  only afterwards. A kill at any instant loses at most the candle still forming; a restart replays the
  journal.

In-process use: :func:`run` (``on_closed`` is called after each closed candle is journaled). Disk work
(journal fsync, compaction) and REST run in worker threads, so the event loop keeps reading the websocket
and stalls are judged by arrival times.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import random
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, fields, replace
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from tradelab_jax.data.ingest import (
    Caller,
    IngestPlan,
    IngestSettings,
    IngestState,
    ccxt_version,
    connect,
    default_limit,
    fetch_holes,
    manifest_matches,
    market_type_of,
    open_dataset,
)
from tradelab_jax.data.journal import Journal
from tradelab_jax.data.lake import Lake, crash_test_hold, take
from tradelab_jax.data.schema import (
    BAR_COLUMNS,
    check_exchange,
    check_symbol,
    default_dataset_id,
    ms_to_iso,
    parse_time,
    timeframe_ms,
)
from tradelab_jax.data.validate import check_bars
from tradelab_jax.errors import DataError, UserError
from tradelab_jax.paths import check_id, read_preset

OnClosed = Callable[[str, list[list]], None]


# --------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class StreamConfig:
    """What to stream and how; each knob can come from a flag, a config file (conf/stream/) or the default.

    Times in seconds unless named ``_ms``.
    """

    exchange: str = "binance"
    symbols: tuple[str, ...] = ("BTC/USDT",)
    timeframe: str = "1m"
    dataset_ids: tuple[str, ...] | None = None  # one per symbol; default <exchange>_<base><quote>_<tf>
    lake: str | os.PathLike | None = None
    ws_url: str | None = None  # replaces the exchange's websocket URL for the market type (urls['api']['ws'])
    rest_url: str | None = None  # replaces the scheme and host of every REST URL (as `data ingest --api-url`)
    stall_s: float = 30.0  # no websocket message for this long: reconnect
    backoff_s: float = (
        0.5  # first reconnect delay; doubles per failed attempt (with jitter) up to max_backoff_s
    )
    max_backoff_s: float = 30.0
    compact_every: int = 1  # compact the journal into the month files after this many closed candles
    since: Any = None  # first bar of a dataset that has none yet (default: the first candle streamed)
    timeout_s: float = 30.0  # REST timeout per request
    max_retries: int = 3  # REST retries per request before the fill counts as an exchange error (reconnect)
    status: bool = False  # the live status line on stderr
    status_every_s: float = 30.0  # when stderr is not a terminal: one status line this often

    def check(self) -> StreamConfig:
        check_exchange(self.exchange)
        if not self.symbols:
            raise UserError("give at least one --symbol, e.g. BTC/USDT")
        for s in self.symbols:
            check_symbol(s)
        if len(set(self.symbols)) != len(self.symbols):
            raise UserError(f"--symbol lists a symbol twice ({','.join(self.symbols)}); give each once")
        timeframe_ms(self.timeframe)
        if self.dataset_ids is not None:
            if len(self.dataset_ids) != len(self.symbols):
                raise UserError(
                    f"--dataset-id gives {len(self.dataset_ids)} id(s) for {len(self.symbols)} symbol(s); "
                    "give one per symbol, comma-separated, in the same order"
                )
            for d in self.dataset_ids:
                check_id(d, "dataset id")
        for name, schemes in (("ws_url", ("ws", "wss")), ("rest_url", ("http", "https"))):
            url = getattr(self, name)
            if url is not None:
                parts = urlsplit(url)
                if parts.scheme not in schemes or not parts.netloc:
                    raise UserError(
                        f"invalid {name} {url!r}: give a {'/'.join(schemes)} URL such as "
                        f"{schemes[0]}://127.0.0.1:8080" + ("/ws" if name == "ws_url" else "")
                    )
        for name in ("stall_s", "backoff_s", "max_backoff_s", "timeout_s", "status_every_s"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int | float) or not (0 < v <= 86_400):
                raise UserError(f"invalid {name} {v!r}: give a number of seconds > 0 and <= 86400")
        for name, hi in (("compact_every", 100_000), ("max_retries", 100)):
            v = getattr(self, name)
            if (
                isinstance(v, bool)
                or not isinstance(v, int)
                or not (0 <= v <= hi)
                or (name == "compact_every" and v == 0)
            ):
                raise UserError(f"invalid {name} {v!r}: give a whole number 1-{hi}")
        return self

    @property
    def ids(self) -> tuple[str, ...]:
        return self.dataset_ids or tuple(
            default_dataset_id(self.exchange, s, self.timeframe) for s in self.symbols
        )


CONFIG_KEYS = (
    "ws_url", "rest_url", "stall_s", "backoff_s", "max_backoff_s", "compact_every", "timeout_s",
    "max_retries", "status_every_s",
)  # fmt: skip


def read_config(name_or_path: str | os.PathLike, exchange: str) -> dict[str, Any]:
    """Stream settings from a YAML file or a preset name of ``conf/stream/`` (``binance``, ``loopback``...):
    the top level or ``stream:``, then ``exchanges.<id>`` over it; an unknown key is refused."""
    path, data = read_preset(name_or_path, "stream", "stream config")
    section = data.get("stream", data) if isinstance(data, dict) else None
    if not isinstance(section, dict):
        raise UserError(f"stream config {path} must hold a mapping of settings")
    per = section.get("exchanges") or {}
    if not isinstance(per, dict) or not isinstance(per.get(exchange) or {}, dict):
        raise UserError(f"stream config {path}: exchanges.<id> must map exchange ids to settings")
    values = {k: v for k, v in section.items() if k != "exchanges"}
    values.update(per.get(exchange) or {})
    unknown = sorted(set(values) - set(CONFIG_KEYS))
    if unknown:
        raise UserError(
            f"stream config {path} has unknown key(s) {', '.join(unknown)}; "
            f"valid keys: {', '.join(CONFIG_KEYS)}"
        )
    return values


def config_from(base: StreamConfig, config: str | os.PathLike | None, **flags: Any) -> StreamConfig:
    """``base``, then the config file (or preset), then the flags that were given."""
    values: dict[str, Any] = {}
    if config:
        values.update(read_config(config, base.exchange))
    values.update({k: v for k, v in flags.items() if v is not None})
    valid = {f.name for f in fields(StreamConfig)}
    return replace(base, **{k: v for k, v in values.items() if k in valid}).check()


# --------------------------------------------------------------------------------------------- results


@dataclass
class StreamResult:
    """What one :func:`run` did (counts of bars are per symbol)."""

    bars_stored: dict[str, int] = field(default_factory=dict)  # new closed bars journaled this run
    ws_bars: dict[str, int] = field(default_factory=dict)  # ... of them from the websocket
    rest_bars: dict[str, int] = field(default_factory=dict)  # ... of them from the REST fill
    corrected: dict[str, int] = field(default_factory=dict)  # stored bars the REST confirmation changed
    journal_replays: int = 0  # datasets whose journal held candles at start (a kill before compaction)
    replayed_bars: int = 0  # candles found in those journals
    reconnects: int = 0
    drops: int = 0  # connection closed or failed
    stalls: int = 0  # no message for stall_s
    exchange_errors: int = 0  # an error message from the exchange, or a REST fill that failed
    ignored_stale: int = 0  # updates older than one already seen for the same forming candle
    ignored_late: int = 0  # updates of a candle already closed
    confirmed_before_gap: int = 0  # candles followed by skipped ones, taken from REST (their end may be lost)
    late_newer: int = 0  # updates of a stored candle with more volume than stored: sent to REST to confirm
    compactions: int = 0
    warnings: list[str] = field(default_factory=list)

    def total_stored(self) -> int:
        return sum(self.bars_stored.values())


# --------------------------------------------------------------------------------------------- markets


@dataclass
class _Market:
    """One symbol's dataset while streaming: its stored bars (via ``data ingest``'s state), its journal and
    its forming candle."""

    symbol: str
    dataset_id: str
    state: IngestState
    journal: Journal
    tf_ms: int
    since_ms: int | None
    last_ts: int | None = None  # the last closed bar stored or journaled
    pending: list[list] = field(default_factory=list)  # journaled, not yet compacted
    forming: list | None = None
    fresh: bool = True  # no message seen on the current connection yet


def _rows_to_page(rows: list[list]) -> dict[str, np.ndarray]:
    """Rows as sorted bar arrays, the last row of a repeated open time winning."""
    by_ts = {int(r[0]): r for r in rows}
    ts = sorted(by_ts)
    page = {"ts": np.array(ts, dtype="int64")}
    for i, name in enumerate(BAR_COLUMNS[1:], start=1):
        page[name] = np.array([float(by_ts[t][i]) for t in ts], dtype="float64")
    return page


def _page_rows(page: dict[str, np.ndarray]) -> list[list]:
    cols = [page[c] for c in BAR_COLUMNS]
    return [[int(cols[0][i]), *(float(c[i]) for c in cols[1:])] for i in range(len(cols[0]))]


def _stored_row(bars: dict[str, np.ndarray], ts: int) -> list | None:
    i = int(np.searchsorted(bars["ts"], ts))
    if i < len(bars["ts"]) and int(bars["ts"][i]) == ts:
        return [ts, *(float(bars[c][i]) for c in BAR_COLUMNS[1:])]
    return None


def _same(a: list, b: list) -> bool:
    return int(a[0]) == int(b[0]) and all(
        np.float64(x).tobytes() == np.float64(y).tobytes() for x, y in zip(a[1:6], b[1:6], strict=True)
    )


class _Collector:
    """Stands in for ``IngestState`` under ``data ingest``'s paging loop: keeps the checked pages."""

    def __init__(self) -> None:
        self.rows: list[list] = []

    def commit(self, page: dict[str, np.ndarray]) -> None:
        self.rows.extend(_page_rows(page))


class _NoBar:
    def update(self, _n: int) -> None:
        pass


# --------------------------------------------------------------------------------------------- streamer


class Streamer:
    """One streaming session over one or more symbols of one exchange; :meth:`run` blocks until ``stop``."""

    def __init__(
        self,
        cfg: StreamConfig,
        on_closed: OnClosed | None = None,
        stop: threading.Event | None = None,
        on_corrected: OnClosed | None = None,
    ):
        self.cfg = cfg.check()
        self.on_closed = on_closed
        self.on_corrected = on_corrected
        self.stop = stop or threading.Event()
        self.lake = Lake.at(cfg.lake)
        self.tf_ms = timeframe_ms(cfg.timeframe)
        self.result = StreamResult()
        self.markets: list[_Market] = []
        self._rest: Any = None
        self._call: Caller | None = None
        self._limit = 1000
        self._last_status = 0.0
        self._status_width = 0

    # ------------------------------------------------------------------ lifecycle
    def run(self) -> StreamResult:
        with contextlib.ExitStack() as stack:
            for dataset_id in self.cfg.ids:  # one writer per dataset for the whole session
                stack.enter_context(self.lake.writer(dataset_id))
            self._connect_rest()
            for symbol, dataset_id in zip(self.cfg.symbols, self.cfg.ids, strict=True):
                self.markets.append(self._open(symbol, dataset_id))
            try:
                asyncio.run(self._main())
            finally:
                for m in self.markets:  # what was journaled goes into the month files before we stop
                    self._compact(m)
                self._status(force=True, final=True)
        return self.result

    def _connect_rest(self) -> None:
        settings = IngestSettings(
            api_url=self.cfg.rest_url,
            timeout_s=self.cfg.timeout_s,
            max_retries=self.cfg.max_retries,
            backoff_s=min(self.cfg.backoff_s, 60.0),
            max_backoff_s=min(self.cfg.max_backoff_s, 3600.0),
        )
        settings.check()
        symbol = self.cfg.symbols[0]
        ex, call, _now = connect(self.cfg.exchange, symbol, self.cfg.timeframe, settings)
        for s in self.cfg.symbols[1:]:
            if s not in ex.markets:
                raise UserError(f"{self.cfg.exchange} has no market {s!r}; check the symbol (e.g. ETH/USDT)")
        self._rest, self._call = ex, call
        self._limit = default_limit(ex, symbol)

    def _open(self, symbol: str, dataset_id: str) -> _Market:
        """The dataset as stored (repaired like ``data ingest`` does), then its journal replayed."""
        cfg, lake = self.cfg, self.lake
        manifest, rel_dir, stored = open_dataset(
            lake, dataset_id, cfg.exchange, symbol, cfg.timeframe, self.tf_ms
        )
        text, sources = _provenance(manifest, dataset_id, cfg)
        plan = IngestPlan(
            dataset_id=dataset_id, exchange=cfg.exchange, symbol=symbol, timeframe=cfg.timeframe,
            tf_ms=self.tf_ms, since_ms=0, end_ms=0, holes=[],
            unconfirmed=[int(t) for t in (manifest or {}).get("unconfirmed_ts") or []],
            provenance_text=text, sources=sources,
        )  # fmt: skip
        state = IngestState.start(lake, plan, stored, manifest)
        if stored is not None and not manifest_matches(lake, manifest, rel_dir):
            state.rebuild_manifest()
            self.result.warnings.append(
                f"the manifest of {dataset_id!r} did not match its files (an interrupted write); rebuilt it"
            )
        since_ms = None
        if cfg.since is not None:
            since_ms = -(-parse_time(cfg.since, "--since") // self.tf_ms) * self.tf_ms
        m = _Market(symbol, dataset_id, state, Journal.of(lake, dataset_id), self.tf_ms, since_ms)
        for key in ("bars_stored", "ws_bars", "rest_bars", "corrected"):
            getattr(self.result, key)[symbol] = 0
        rows = m.journal.read()
        if rows:
            page = _rows_to_page(rows)
            findings, _ = check_bars(page, self.tf_ms)
            if findings:
                raise DataError(
                    f"journal {m.journal.path} holds bars that fail validation "
                    f"({findings[0].message}); move it away and start again"
                )
            self.result.journal_replays += 1
            self.result.replayed_bars += len(page["ts"])
            m.pending = _page_rows(page)
            self._compact(m)
        if m.journal.torn:
            self.result.warnings.append(
                f"journal {m.journal.path}: dropped a torn last line (a kill mid-write)"
            )
        if len(state.bars["ts"]):
            m.last_ts = int(state.bars["ts"][-1])
        return m

    # ------------------------------------------------------------------ websocket sessions
    def _ws_exchange(self) -> Any:
        import ccxt.pro

        cls = getattr(ccxt.pro, self.cfg.exchange, None)
        if cls is None:
            raise UserError(
                f"exchange {self.cfg.exchange!r} has no websocket client in ccxt.pro; "
                f"ones that do: {', '.join(ccxt.pro.exchanges[:12])}, ..."
            )
        ex = cls({"enableRateLimit": True, "timeout": int(self.cfg.timeout_s * 1000)})
        if not ex.has.get("watchOHLCV"):
            raise UserError(
                f"exchange {self.cfg.exchange!r} has no watchOHLCV in ccxt.pro, so it cannot stream bars"
            )
        if self.cfg.ws_url:
            ex.urls = dict(ex.urls)
            ex.urls["api"] = dict(ex.urls["api"])
            ex.urls["api"]["ws"] = _override_ws(
                ex.urls["api"].get("ws"), self.cfg.ws_url, market_type_of(self.cfg.symbols[0])
            )
        ex.set_markets_from_exchange(self._rest)  # markets come from the REST client; no second download
        return ex

    async def _main(self) -> None:
        closing: list[asyncio.Task] = []
        try:
            await self._sessions(closing)
        finally:
            await asyncio.gather(*closing, return_exceptions=True)

    async def _sessions(self, closing: list[asyncio.Task]) -> None:
        attempt = 0
        while not self.stop.is_set():
            ex = self._ws_exchange()
            queue: asyncio.Queue = asyncio.Queue()
            for m in self.markets:
                m.fresh, m.forming = True, None  # nothing streamed before this connection is trusted
            tasks = [asyncio.create_task(self._watch(ex, m, queue)) for m in self.markets]
            got_data = False
            try:
                reason, got_data = await self._session(queue)
            finally:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                # The old client closes in the background (ccxt waits 250 ms on exit): the new connection
                # does not wait for it.
                closing.append(asyncio.create_task(_close_quietly(ex)))
            if reason == "stop":
                return
            self.result.reconnects += 1
            attempt = 0 if got_data else attempt + 1
            delay = min(
                self.cfg.backoff_s * (2**attempt) * (1 + 0.25 * random.random()), self.cfg.max_backoff_s
            )
            self._status(force=True, note=f"{reason}; reconnecting in {delay:.2f}s")
            await self._sleep(delay)

    async def _sleep(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while not self.stop.is_set() and time.monotonic() < end:
            await asyncio.sleep(min(0.05, max(0.0, end - time.monotonic())))

    async def _watch(self, ex: Any, m: _Market, queue: asyncio.Queue) -> None:
        log = _record_updates(ex, m.symbol, self.cfg.timeframe)
        try:
            while True:
                candles = await ex.watch_ohlcv(m.symbol, self.cfg.timeframe)
                if log:  # every update since the last wake-up, in arrival order
                    rows, log[:] = list(log), []
                else:  # an exchange whose client keeps its candles elsewhere: the newest rows (copies)
                    rows = sorted((list(c[:6]) for c in candles), key=lambda c: c[0])
                await queue.put(("data", m, rows, time.monotonic()))
        except asyncio.CancelledError:
            raise
        except Exception as err:  # any failure ends this connection; _session decides what it was
            await queue.put(("error", m, err, time.monotonic()))

    async def _session(self, queue: asyncio.Queue) -> tuple[str, bool]:
        """Consume one connection's updates until it stalls, fails or we are stopped."""
        import ccxt

        last = time.monotonic()
        got_data = False
        while True:
            if self.stop.is_set():
                return "stop", got_data
            try:
                kind, m, payload, arrived = await asyncio.wait_for(
                    queue.get(), timeout=min(0.1, self.cfg.stall_s)
                )
            except TimeoutError:
                if time.monotonic() - last > self.cfg.stall_s:
                    self.result.stalls += 1
                    return "stall", got_data
                self._status()
                continue
            if kind == "error":
                # An exchange error resets the connection, so another symbol's task may report the close
                # first: an error message among the failures already queued names the cause.
                while not queue.empty():
                    other = queue.get_nowait()
                    if other[0] == "error" and not isinstance(other[2], ccxt.NetworkError):
                        m, payload = other[1], other[2]
                if isinstance(payload, ccxt.BadSymbol):
                    raise UserError(f"{self.cfg.exchange} does not list {m.symbol}: {payload}")
                if isinstance(payload, ccxt.NetworkError):
                    self.result.drops += 1
                    return "connection lost", got_data
                self.result.exchange_errors += 1
                self.result.warnings.append(f"{m.symbol}: {type(payload).__name__}: {str(payload)[:200]}")
                return "exchange error", got_data
            if arrived - last > self.cfg.stall_s:  # a silence we only see now, behind a backlog
                self.result.stalls += 1
                return "stall", got_data
            last = arrived  # when it came, not when we got to it: a backlog does not hide a stall
            got_data = True
            try:
                await self._on_update(m, payload)
            except DataError as err:  # the REST fill failed after its retries: try again after a reconnect
                self.result.exchange_errors += 1
                self.result.warnings.append(str(err))
                return "REST fill failed", got_data
            self._status()

    # ------------------------------------------------------------------ the closed-candle rule
    async def _on_update(self, m: _Market, updates: list[list]) -> None:
        """Kline updates of one symbol in arrival order: the closed-candle rule (module docstring)."""
        if m.fresh:
            # The first candle of a connection: everything before it comes from REST.
            m.fresh, m.forming, updates = False, updates[0], updates[1:]
            start = m.last_ts if m.last_ts is not None else m.since_ms
            if start is not None and start < m.forming[0]:
                await self._fill(m, start, int(m.forming[0]))
        for c in updates:
            t = int(c[0])
            if t < m.forming[0]:
                # A candle already closed: a stale copy, unless it says more was traded than we stored.
                self.result.ignored_late += 1
                known = self._known_row(m, t)
                if known is not None and c[5] > known[5]:
                    self.result.late_newer += 1
                    await self._fill(m, t, t + self.tf_ms)  # the exchange's REST API decides
            elif t == m.forming[0]:
                if c[5] >= m.forming[5]:
                    m.forming = c
                else:  # an older state of the forming candle (volume only grows within a candle)
                    self.result.ignored_stale += 1
            else:
                closed, m.forming = m.forming, c
                await self._close(m, closed, next_ts=t)

    async def _close(self, m: _Market, bar: list, next_ts: int) -> None:
        t = int(bar[0])
        if m.last_ts is not None and t <= m.last_ts:
            self.result.ignored_late += 1
            return
        if m.last_ts is not None and t > m.last_ts + self.tf_ms:
            await self._fill(m, m.last_ts + self.tf_ms, t)  # bars the websocket never sent
        source = "ws"
        if next_ts > t + self.tf_ms:
            # The stream skipped candles after this one, so it may have lost this one's last updates too:
            # the exchange's REST API says what its final state was.
            rows = await asyncio.to_thread(self._rest_rows, m, t, t + self.tf_ms)
            if rows and int(rows[0][0]) == t:
                self.result.confirmed_before_gap += 1
                bar, source = rows[0], "rest"
        await self._store(m, [bar], source)

    def _known_row(self, m: _Market, t: int) -> list | None:
        """The stored (or journaled) state of the bar opening at ``t``."""
        for row in reversed(m.pending):
            if int(row[0]) == t:
                return row
        return _stored_row(m.state.bars, t)

    async def _fill(self, m: _Market, start: int, stop: int) -> None:
        """Bars ``[start, stop)`` from REST: new ones stored, stored ones confirmed (else corrected)."""
        await asyncio.to_thread(self._compact, m)  # compare against the month files only
        rows = await asyncio.to_thread(self._rest_rows, m, start, stop)
        new, corrected = [], []
        for r in rows:
            if m.last_ts is not None and r[0] <= m.last_ts:
                old = _stored_row(m.state.bars, int(r[0]))
                if old is None or not _same(old, r):
                    corrected.append(r)
            else:
                new.append(r)
        if corrected:
            self.result.corrected[m.symbol] += len(corrected)
            self.result.warnings.append(
                f"{m.symbol}: REST corrected {len(corrected)} stored bar(s) from "
                f"{ms_to_iso(int(corrected[0][0]))}"
            )
            m.journal.append(corrected)
            m.pending.extend(corrected)
            if self.on_corrected is not None:
                self.on_corrected(m.symbol, [list(r) for r in corrected])
            await asyncio.to_thread(self._compact, m)
        if new:
            await self._store(m, new, "rest")

    def _rest_rows(self, m: _Market, start: int, stop: int) -> list[list]:
        """``data ingest``'s paging over one range (retries, validation, last copy of a bar wins)."""
        plan = IngestPlan(
            dataset_id=m.dataset_id, exchange=self.cfg.exchange, symbol=m.symbol,
            timeframe=self.cfg.timeframe, tf_ms=self.tf_ms, since_ms=start, end_ms=stop,
            holes=[(start, stop)], unconfirmed=[], provenance_text="", sources=[],
        )  # fmt: skip
        collector = _Collector()
        assert self._call is not None

        def fetch(cursor: int) -> Any:
            what = f"fetchOHLCV {m.symbol} {self.cfg.timeframe} since {ms_to_iso(cursor)}"
            return self._call(what, self._rest.fetch_ohlcv, m.symbol, self.cfg.timeframe, cursor, self._limit)

        warnings: list[str] = []
        fetch_holes(plan, fetch, collector, _NoBar(), warnings)
        self.result.warnings.extend(warnings)
        return collector.rows

    async def _store(self, m: _Market, rows: list[list], source: str) -> None:
        """Journal (fsync), then tell ``on_closed``, then compact when due.

        The disk work runs in a worker thread so the event loop keeps reading the websocket meanwhile
        (arrival times stay true, so a backlog is never taken for a stall); this market's next update is
        handled only after it (``_session`` awaits each update in turn).
        """
        await asyncio.to_thread(m.journal.append, rows)
        crash_test_hold("stream-after-journal")
        m.pending.extend(rows)
        m.last_ts = int(rows[-1][0])
        self.result.bars_stored[m.symbol] += len(rows)
        getattr(self.result, f"{source}_bars")[m.symbol] += len(rows)
        if self.on_closed is not None:
            self.on_closed(m.symbol, [list(r) for r in rows])
        if len(m.pending) >= self.cfg.compact_every:
            await asyncio.to_thread(self._compact, m)

    def _compact(self, m: _Market) -> None:
        """Journaled candles into the month files (atomic, manifest refreshed), then the journal emptied."""
        if not m.pending:
            m.journal.reset()
            return
        page = _rows_to_page(m.pending)
        keep = np.array([
            (old := _stored_row(m.state.bars, int(t))) is None or not _same(old, row)
            for t, row in zip(page["ts"], _page_rows(page), strict=True)
        ])  # fmt: skip
        if keep.any():
            m.state.commit(take(page, keep))
            self.result.compactions += 1
        m.journal.reset()
        m.pending = []

    # ------------------------------------------------------------------ status line
    def _status(self, force: bool = False, note: str = "", final: bool = False) -> None:
        if not self.cfg.status:
            return
        now = time.monotonic()
        tty = sys.stderr.isatty()
        if not force and now - self._last_status < (0.5 if tty else self.cfg.status_every_s):
            return
        self._last_status = now
        parts = []
        wall_ms = time.time() * 1000
        for m in self.markets:
            if m.last_ts is None:
                parts.append(f"{m.symbol} -")
                continue
            lag = (wall_ms - (m.last_ts + self.tf_ms)) / 1000
            parts.append(f"{m.symbol} {ms_to_iso(m.last_ts)} lag {_fmt_lag(lag)}")
        r = self.result
        line = f"{' | '.join(parts)} | reconnects {r.reconnects} | stored {r.total_stored():,}" + (
            f" | {note}" if note else ""
        )
        if tty and not final:
            pad = max(0, self._status_width - len(line))
            sys.stderr.write("\r" + line + " " * pad)
            self._status_width = len(line)
        else:
            sys.stderr.write(("\r" if tty else "") + line + "\n")
        sys.stderr.flush()


def _record_updates(ex: Any, symbol: str, timeframe: str) -> list[list]:
    """A list that receives every candle update ccxt.pro parses for ``symbol``/``timeframe``, in order.

    ccxt keeps one row per open time, overwrites it in place, and ``watch_ohlcv`` hands back the newest rows
    of that cache when it wakes us: several updates between two wake-ups leave only the last visible, so a
    stale (older) update arriving after the final state would hide the final state for good. A subclass of
    ccxt's own ``ArrayCacheByTimestamp``, put where ``handle_ohlcv`` looks for its cache, records each row
    as ccxt appends it (ccxt's parsing and caching are unchanged).
    """
    from ccxt.async_support.base.ws.cache import ArrayCacheByTimestamp

    log: list[list] = []

    class _Recording(ArrayCacheByTimestamp):
        def append(self, item: list) -> None:
            log.append([int(item[0]), *(float(x) for x in item[1:6])])
            super().append(item)

    limit = ex.safe_integer(ex.options, "OHLCVLimit", 1000)
    if ex.ohlcvs is None:
        ex.ohlcvs = {}
    ex.ohlcvs.setdefault(symbol, {})[timeframe] = _Recording(limit)
    return log


async def _close_quietly(ex: Any) -> None:
    with contextlib.suppress(Exception):
        await ex.close()


def _fmt_lag(seconds: float) -> str:
    if not math.isfinite(seconds):
        return "?"
    if abs(seconds) < 120:
        return f"{seconds:.1f}s"
    if abs(seconds) < 7200:
        return f"{seconds / 60:.1f}min"
    return f"{seconds / 3600:.1f}h" if abs(seconds) < 172_800 else f"{seconds / 86_400:.0f}d"


def _override_ws(ws: Any, url: str, market_type: str) -> Any:
    """The exchange's ``urls['api']['ws']`` with the URL of ``market_type`` (or every URL) replaced."""
    if isinstance(ws, dict):
        if market_type in ws and isinstance(ws[market_type], str):
            return {**ws, market_type: url}
        return {k: _override_ws(v, url, market_type) for k, v in ws.items()}
    return url if isinstance(ws, str) else ws


def _provenance(manifest: dict | None, dataset_id: str, cfg: StreamConfig) -> tuple[str, list[dict]]:
    """The dataset's provenance with this stream's source added once (a restart adds nothing)."""
    provenance = (manifest or {}).get("provenance") or {}
    sources = list(provenance.get("sources") or [])
    version = ccxt_version()
    text = provenance.get("text") or (
        f"# {dataset_id}\n\n{cfg.exchange} candles stored by `tradelab data stream`: closed candles from "
        "ccxt.pro `watch_ohlcv`, with every bar around a (re)connect fetched from the exchange's REST API "
        f"(`fetch_ohlcv`). The data are {cfg.exchange} market data; {cfg.exchange}'s terms of use apply.\n"
    )
    source = {
        "kind": "stream",
        "exchange": cfg.exchange,
        "ws_url": cfg.ws_url,
        "api_url": cfg.rest_url,
        "ccxt": version,
    }
    if source not in sources:
        sources.append(source)
    line = (
        f"- `tradelab data stream` stored closed candles with ccxt {version} watchOHLCV"
        + (f" from {cfg.ws_url}" if cfg.ws_url else "")
        + " and fetchOHLCV"
        + (f" from {cfg.rest_url}" if cfg.rest_url else "")
        + "."
    )
    if line not in text:
        heading = "## Streamed with tradelab"
        text = text.rstrip() + ("\n" if heading in text else f"\n\n{heading}\n\n") + line + "\n"
    return text, sources


def run(
    cfg: StreamConfig,
    on_closed: OnClosed | None = None,
    stop: threading.Event | None = None,
    on_corrected: OnClosed | None = None,
) -> StreamResult:
    """Stream ``cfg.symbols`` into the lake until ``stop`` is set (from any thread).

    ``on_closed(symbol, bars)`` gets closed candles ``[ts_ms, open, high, low, close, volume]`` in increasing
    open time, each already fsynced to the journal, in the streamer's thread; raising stops the stream (the
    journal is compacted first) and the exception propagates. ``on_corrected(symbol, bars)`` gets bars
    already handed to ``on_closed`` (or stored before) that the exchange's REST API corrected: the REST
    confirmation after a reconnect, or an update of a closed candle showing more volume than was stored
    (the exchange sent the next candle before this one's last update). Rare; Binance's ordered stream
    never does the latter.
    """
    return Streamer(cfg, on_closed=on_closed, stop=stop, on_corrected=on_corrected).run()


def result_json(result: StreamResult) -> str:
    return json.dumps({k: getattr(result, k) for k in (f.name for f in fields(StreamResult))}, indent=2)
