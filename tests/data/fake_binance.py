"""A loopback HTTP server that speaks the Binance spot REST endpoints ccxt uses for bars.

``GET /api/v3/exchangeInfo``, ``GET /api/v3/time`` and ``GET /api/v3/klines`` with Binance's
``symbol``/``interval``/``startTime``/``endTime``/``limit`` semantics and 12-column rows, served from real
bars of one spot market or several (a :class:`Market` each: the stream tests' REST server is this one with
their symbols). The server has its own clock (``now_ms``): candles after it do not exist yet, and the candle
containing it is served as still forming (with a different close and volume than its final version), like
the real API does. Faults are queued per klines request: ``429``/``418`` with Retry-After, ``500``/``503``,
or ``drop`` (headers and half of the body, then the connection is cut). ``hold_after=n`` answers ``n``
klines requests and holds every later one until :meth:`release`, so a test can kill a client mid-run at a
known point instead of racing a delay.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections import deque
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import numpy as np

INTERVAL_MS = {"1m": 60_000, "3m": 180_000, "5m": 300_000, "15m": 900_000, "1h": 3_600_000}


class Market:
    """One spot market as Binance serves it: 12-column klines rows of its bars at a clock, and its
    exchangeInfo entry."""

    def __init__(self, bars: dict[str, np.ndarray], symbol: str = "BTCUSDT", base: str = "BTC",
                 quote: str = "USDT"):
        self.bars = {k: np.asarray(v) for k, v in bars.items()}
        self.symbol, self.base, self.quote = symbol, base, quote

    def closed_bars(self, start: int, end: int, now_ms: int,
                    interval_ms: int = 60_000) -> dict[str, np.ndarray]:
        ts = self.bars["ts"]
        mask = (ts >= start) & (ts < end) & (ts + interval_ms <= now_ms)
        return {k: v[mask] for k, v in self.bars.items()}

    def klines(self, start: int | None, end: int | None, limit: int, interval_ms: int,
               now_ms: int) -> list[list]:
        ts = self.bars["ts"]
        visible = ts <= now_ms
        if start is not None:
            visible &= ts >= start
        if end is not None:
            visible &= ts <= end
        idx = np.flatnonzero(visible)
        idx = idx[:limit] if start is not None else idx[-limit:]
        rows = []
        for i in idx:
            t = int(ts[i])
            o, h, low, c, v = (float(self.bars[k][i]) for k in ("open", "high", "low", "close", "volume"))
            if t + interval_ms > now_ms:  # still forming: the close and volume are not final yet
                c, v = o, v / 2
                h, low = max(o, c), min(o, c)
            rows.append(
                [
                    t,
                    f"{o:.8f}",
                    f"{h:.8f}",
                    f"{low:.8f}",
                    f"{c:.8f}",
                    f"{v:.8f}",
                    t + interval_ms - 1,
                    f"{v * c:.8f}",
                    100,
                    f"{v / 2:.8f}",
                    f"{v * c / 2:.8f}",
                    "0",
                ]
            )
        return rows

    def symbol_info(self) -> dict:
        return {
            "symbol": self.symbol,
            "status": "TRADING",
            "baseAsset": self.base,
            "baseAssetPrecision": 8,
            "quoteAsset": self.quote,
            "quotePrecision": 8,
            "quoteAssetPrecision": 8,
            "orderTypes": ["LIMIT", "MARKET"],
            "isSpotTradingAllowed": True,
            "isMarginTradingAllowed": False,
            "permissions": [],
            "permissionSets": [["SPOT"]],
            "filters": [
                {
                    "filterType": "PRICE_FILTER",
                    "minPrice": "0.01",
                    "maxPrice": "1000000.00",
                    "tickSize": "0.01",
                },
                {
                    "filterType": "LOT_SIZE",
                    "minQty": "0.00001",
                    "maxQty": "9000.00000",
                    "stepSize": "0.00001",
                },
            ],
        }


class FakeBinance:
    """The server: one market from ``bars`` (``symbol``/``base``/``quote``), or several from ``markets`` (the
    stream tests' ``FakeBinanceREST``), all on the server's one clock ``now_ms``."""

    def __init__(
        self,
        bars: dict[str, np.ndarray] | None = None,
        now_ms: int = 0,
        *,
        symbol: str = "BTCUSDT",
        base: str = "BTC",
        quote: str = "USDT",
        markets: list[Market] | None = None,
        hold_after: int | None = None,
        faults: list[tuple] | None = None,
    ):
        if markets is None:
            assert bars is not None, "give the bars of one market, or markets"
            markets = [Market(bars, symbol, base, quote)]
        self.markets = {m.symbol: m for m in markets}
        self.now_ms = int(now_ms)
        self.hold_after = hold_after
        self._released = threading.Event()
        self.holding = 0  # klines requests waiting for release()
        self.faults: deque = deque(faults or [])
        self.log: list[dict] = []  # every request: path, query, status, time, the clock
        self.klines_ok = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeBinance:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        server.daemon_threads = True
        self._server = server
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def release(self) -> None:
        """Answer the held klines requests, and every later one."""
        self._released.set()

    def stop(self) -> None:
        self.release()  # no handler thread is left waiting
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> FakeBinance:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def klines_requests(self) -> list[dict]:
        with self._lock:
            return [r for r in self.log if r["path"] == "/api/v3/klines"]

    # ------------------------------------------------------------------ data
    def closed_bars(self, start: int, end: int, interval_ms: int = 60_000) -> dict[str, np.ndarray]:
        """What a correct client should end up with for ``[start, end)`` of the (first) market: closed
        candles only."""
        return next(iter(self.markets.values())).closed_bars(start, end, self.now_ms, interval_ms)

    def exchange_info(self) -> dict:
        return {
            "timezone": "UTC",
            "serverTime": self.now_ms,
            "rateLimits": [
                {"rateLimitType": "REQUEST_WEIGHT", "interval": "MINUTE", "intervalNum": 1, "limit": 6000}
            ],
            "exchangeFilters": [],
            "symbols": [m.symbol_info() for m in self.markets.values()],
        }


def _make_handler(fake: FakeBinance):
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args) -> None:  # keep test output quiet
            pass

        def _send(self, status: int, payload, headers: dict | None = None, drop: bool = False) -> None:
            body = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json;charset=UTF-8")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            if drop:
                self.wfile.write(body[: len(body) // 2])
                self.wfile.flush()
                self.connection.shutdown(socket.SHUT_RDWR)
                self.close_connection = True
                return
            self.wfile.write(body)

        def do_GET(self) -> None:
            parts = urlsplit(self.path)
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            record = {"path": parts.path, "query": query, "time": time.monotonic(), "status": 200,
                      "now_ms": fake.now_ms}
            with fake._lock:
                fake.log.append(record)
            if parts.path == "/api/v3/time":
                return self._send(200, {"serverTime": fake.now_ms})
            if parts.path == "/api/v3/exchangeInfo":
                return self._send(200, fake.exchange_info())
            if parts.path != "/api/v3/klines":
                record["status"] = 404
                return self._send(404, {"code": -1, "msg": f"no such endpoint {parts.path}"})
            with fake._lock:
                fault = fake.faults.popleft() if fake.faults else None
                answered = fake.klines_ok
            if fake.hold_after is not None and answered >= fake.hold_after and not fake._released.is_set():
                with fake._lock:
                    fake.holding += 1
                fake._released.wait()
                with fake._lock:
                    fake.holding -= 1
            if fault is not None:
                kind = fault[0]
                if kind in ("429", "418"):
                    record["status"] = int(kind)
                    return self._send(
                        int(kind),
                        {
                            "code": -1003,
                            "msg": "Too many requests; current limit is 6000 request weight per 1 MINUTE.",
                        },
                        {"Retry-After": str(fault[1] if len(fault) > 1 else 1)},
                    )
                if kind in ("500", "502", "503"):
                    record["status"] = int(kind)
                    return self._send(
                        int(kind), {"code": -1001, "msg": "Internal error; unable to process your request."}
                    )
                if kind == "drop":
                    record["status"] = "dropped"
                    market = fake.markets.get(query.get("symbol", "")) or next(iter(fake.markets.values()))
                    rows = market.klines(int(query["startTime"]), None, 1000, 60_000, fake.now_ms)
                    return self._send(200, rows, drop=True)
            market = fake.markets.get(query.get("symbol", ""))
            if market is None:
                record["status"] = 400
                return self._send(400, {"code": -1121, "msg": "Invalid symbol."})
            interval = INTERVAL_MS.get(query.get("interval", ""))
            if interval is None:
                record["status"] = 400
                return self._send(400, {"code": -1120, "msg": "Invalid interval."})
            limit = min(int(query.get("limit", 500)), 1000)
            start = int(query["startTime"]) if "startTime" in query else None
            end = int(query["endTime"]) if "endTime" in query else None
            rows = market.klines(start, end, limit, interval, fake.now_ms)
            with fake._lock:
                fake.klines_ok += 1
            return self._send(200, rows)

    return Handler
