"""Loopback Binance for the streaming tests: a websocket market stream plus the REST API of ``data ingest``.

:class:`FakeBinanceWS` speaks what ccxt.pro's Binance client sends and parses: it answers
``{"method": "SUBSCRIBE", "params": ["btcusdt@kline_1m"], "id": n}`` with ``{"result": null, "id": n}`` and
then pushes ``{"e": "kline", "s": ..., "k": {"t", "T", "i", "o", "h", "l", "c", "v", "x", ...}}`` messages
for the subscribed streams, played from real bars: each candle as ``updates`` cumulative partial states (the
close walking from the open to the final close, volume growing) ending on the real bar exactly. It owns the
market clock: when candle ``i`` starts forming, the REST server's clock (:class:`FakeBinanceREST`, the
ingest tests' :class:`fake_binance.FakeBinance` with one market per symbol) moves to the middle of that
candle, so REST serves every earlier bar as closed and this one as still forming (a wrong, partial version).

Faults, as ``(kind, candle index, *args)``:

* ``("dup", i)``: every message of candle ``i`` is sent twice;
* ``("swap", i)``: the 2nd and 3rd updates of candle ``i`` go out swapped (a stale state after a newer);
* ``("late", i)``: after candle ``i`` opens, the first (partial) update of candle ``i-1`` is sent again;
* ``("early", i)``: the first update of candle ``i+1`` goes out before the last update of candle ``i`` (so a
  client closes ``i`` on a partial state and then hears of a newer one);
* ``("hole", i, n)``: candles ``i .. i+n-1`` are never sent (only REST has them) while connected;
* ``("drop", i, skip)``: after 2 updates of candle ``i`` every connection is cut (TCP abort), the market moves
  on ``skip`` candles while the client is away, and the feed waits for a new subscription;
* ``("stall", i, seconds, skip)``: after 2 updates of candle ``i`` the open connections get nothing for
  ``seconds`` (they stay up; a client must notice the silence itself), the market moves on ``skip``
  candles, and the feed goes on at the first new subscription, or after ``seconds`` on the old connection
  (``stall_silence_s`` records how long the silence lasted until then, ``stall_resubscribed`` whether a new
  subscription ended it, ``stalled_closed_after_s`` when the client closed a silent connection);
* ``("error", i)``: after 2 updates of candle ``i`` an exchange error (code 503) goes to every connection,
  and the feed waits for a new subscription.

The feed plays candles ``start .. end-1`` and then opens candle ``end`` (one update), which closes ``end-1``;
then it goes quiet. ``expected(symbol)`` is what a correct client stores: bars ``first .. end-1``.

Use: ``with FakeBinanceREST(bars) as rest, FakeBinanceWS(bars, start, end, rest=rest) as ws: ...`` with
``bars = {"BTC/USDT": arrays, ...}``; ``ws.url`` and ``rest.url`` go to ``--ws-url`` / ``--rest-url``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import threading
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "data"))
from fake_binance import FakeBinance, Market

TF_MS = 60_000


def market_id(symbol: str) -> str:
    return symbol.replace("/", "").upper()


# --------------------------------------------------------------------------------------------- REST


class FakeBinanceREST(FakeBinance):
    """The REST endpoints ccxt uses for bars, for several symbols: the ingest tests' loopback server with one
    :class:`fake_binance.Market` per symbol (its klines rows and exchangeInfo entry) on one clock; its
    ``faults`` are those of :class:`fake_binance.FakeBinance` (e.g. ``[("503",)] * 2``)."""

    def __init__(self, bars: dict[str, dict[str, np.ndarray]], now_ms: int = 0, *,
                 faults: list[tuple] | None = None):
        markets = [Market(b, market_id(s), s.split("/")[0], s.split("/")[1]) for s, b in bars.items()]
        super().__init__(now_ms=now_ms, markets=markets, faults=faults)


# --------------------------------------------------------------------------------------------- websocket


class FakeBinanceWS:
    def __init__(
        self,
        bars: dict[str, dict[str, np.ndarray]],
        start: int,
        end: int,
        *,
        rest: FakeBinanceREST | None = None,
        updates: int = 4,
        interval_s: float = 0.002,
        faults: list[tuple] = (),
    ):
        self.bars = {market_id(s): b for s, b in bars.items()}
        grids = [b["ts"] for b in self.bars.values()]
        assert all(np.array_equal(g[start : end + 1], grids[0][start : end + 1]) for g in grids), (
            "grids differ"
        )
        self.ts = grids[0]
        self.start_i, self.end_i = start, end
        self.rest, self.updates, self.interval_s = rest, updates, interval_s
        self.faults: dict[int, list[tuple]] = {}
        for f in faults:
            self.faults.setdefault(f[1], []).append(f)
        self.streams = {f"{m.lower()}@kline_1m" for m in self.bars}
        # observed
        self.connections = 0  # websocket connections accepted
        self.generation = 0  # connections that subscribed to every stream
        self.subscribe_requests: list[dict] = []
        self.sent = 0  # kline messages sent
        self.cut = 0  # connections the server cut (drop faults)
        self.stall_silence_s: list[float] = []  # per stall: from the last message to the new subscription
        self.stall_resubscribed: list[bool] = []
        self.stalled_closed_after_s: list[float] = []  # per silent connection: when its client closed it
        self._silent_from = 0.0
        self._muted: set = set()
        self._stalled: set = set()  # every connection a stall silenced
        self.done = threading.Event()  # the feed has opened candle `end`
        self._conns: dict[object, set[str]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server = None
        self._port = 0
        self._ready = threading.Event()
        self._stopped = False

    # ------------------------------------------------------------------ lifecycle
    def start(self) -> FakeBinanceWS:
        threading.Thread(target=self._thread, daemon=True).start()
        assert self._ready.wait(10), "the websocket server did not start"
        return self

    def _thread(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._amain())

    async def _amain(self) -> None:
        from websockets.asyncio.server import serve

        self._server = await serve(self._handler, "127.0.0.1", 0, ping_interval=None)
        self._port = self._server.sockets[0].getsockname()[1]
        self._new_sub = asyncio.Condition()
        self._ready.set()
        feed = asyncio.create_task(self._feed())
        while not self._stopped:
            await asyncio.sleep(0.05)
        feed.cancel()
        self._server.close()
        await self._server.wait_closed()

    def stop(self) -> None:
        self._stopped = True

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self._port}/ws"

    def __enter__(self) -> FakeBinanceWS:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    def expected(self, symbol: str, first: int) -> dict[str, np.ndarray]:
        """Bars ``first .. end-1`` of ``symbol``: what a correct client has stored when the feed is done."""
        return {k: v[first : self.end_i].copy() for k, v in self.bars[market_id(symbol)].items()}

    # ------------------------------------------------------------------ protocol
    async def _handler(self, conn) -> None:
        self.connections += 1
        self._conns[conn] = set()
        try:
            async for raw in conn:
                msg = json.loads(raw)
                if msg.get("method") == "SUBSCRIBE":
                    self.subscribe_requests.append(msg)
                    self._conns[conn].update(msg.get("params") or [])
                    await conn.send(json.dumps({"result": None, "id": msg.get("id")}))
                    if self._conns[conn] >= self.streams:
                        async with self._new_sub:
                            self.generation += 1
                            self._new_sub.notify_all()
        except Exception:
            pass
        finally:
            self._conns.pop(conn, None)
            if conn in self._stalled:
                self.stalled_closed_after_s.append(time.monotonic() - self._silent_from)

    async def _wait_subscribed(self, after_generation: int = 0) -> None:
        async with self._new_sub:
            await self._new_sub.wait_for(
                lambda: (
                    self.generation > after_generation
                    and any(s >= self.streams for c, s in self._conns.items() if c not in self._muted)
                )
            )

    def _kline(self, mid: str, i: int, j: int) -> str:
        """Update ``j`` (1-based, of ``self.updates``) of candle ``i`` of market ``mid``."""
        b = self.bars[mid]
        o, h, low, c, v = (float(b[k][i]) for k in ("open", "high", "low", "close", "volume"))
        final = j >= self.updates
        if not final:
            frac = j / self.updates
            c = o + (c - o) * frac
            h, low, v = max(o, c), min(o, c), v * frac
        t = int(b["ts"][i])
        k = {
            "t": t, "T": t + TF_MS - 1, "s": mid, "i": "1m", "f": 1, "L": 2,
            "o": repr(o), "c": repr(c), "h": repr(h), "l": repr(low), "v": repr(v),
            "n": 10, "x": final, "q": "0", "V": "0", "Q": "0", "B": "0",
        }  # fmt: skip
        return json.dumps({"e": "kline", "E": t + TF_MS * j // (self.updates + 1), "s": mid, "k": k})

    async def _send_all(self, messages: list[str]) -> None:
        for conn, subs in list(self._conns.items()):
            if conn in self._muted:
                continue
            for m in messages:
                stream = f"{json.loads(m)['s'].lower()}@kline_1m"
                if stream in subs:
                    try:
                        await conn.send(m)
                        self.sent += 1
                    except Exception:
                        pass

    def _set_clock(self, i: int) -> None:
        if self.rest is not None:
            self.rest.now_ms = int(self.ts[i]) + TF_MS // 2

    async def _feed(self) -> None:
        await self._wait_subscribed()
        i = self.start_i
        while i < self.end_i:
            faults = {f[0]: f for f in self.faults.get(i, [])}
            if "hole" in faults:
                i += faults["hole"][2]
                continue
            self._set_clock(i)
            order = list(range(1, self.updates + 1))
            if "swap" in faults:
                order[1], order[2] = order[2], order[1]
            moved_on = False
            for n, j in enumerate(order):
                gen = self.generation
                msgs = [self._kline(mid, i, j) for mid in self.bars]
                if "early" in faults and n == len(order) - 1:  # the next candle opens before this one's end
                    self._set_clock(i + 1)
                    await self._send_all([self._kline(mid, i + 1, 1) for mid in self.bars])
                await self._send_all(msgs * (2 if "dup" in faults else 1))
                if n == 0 and "late" in faults and i > self.start_i:
                    await self._send_all([self._kline(mid, i - 1, 1) for mid in self.bars])
                if n == 1:
                    if "drop" in faults:
                        for conn in list(self._conns):
                            conn.transport.abort()
                            self.cut += 1
                        i += faults["drop"][2]
                        moved_on = True
                    elif "stall" in faults:
                        muted = set(self._conns)
                        self._muted.update(muted)
                        self._stalled.update(muted)
                        silent_from = self._silent_from = time.monotonic()
                        i += faults["stall"][3]
                        moved_on = True
                    elif "error" in faults:
                        err = {"error": {"code": 503, "msg": "Service unavailable, try again"}, "id": None}
                        for conn, _ in list(self._conns.items()):
                            for req in self.subscribe_requests[-len(self.bars) :]:
                                err["id"] = req.get("id")
                                with contextlib.suppress(Exception):
                                    await conn.send(json.dumps(err))
                    if moved_on or "error" in faults:
                        self._set_clock(min(i, self.end_i))
                        if "stall" in faults:
                            try:
                                await asyncio.wait_for(self._wait_subscribed(gen), faults["stall"][2])
                                self.stall_resubscribed.append(True)
                            except TimeoutError:
                                self.stall_resubscribed.append(False)
                            self.stall_silence_s.append(time.monotonic() - silent_from)
                            self._muted -= muted
                        else:
                            await self._wait_subscribed(after_generation=gen)
                        if moved_on:
                            break
                await asyncio.sleep(self.interval_s)
            if not moved_on:
                i += 1
        i = self.end_i
        self._set_clock(i)
        await self._send_all([self._kline(mid, i, 1) for mid in self.bars])
        self.done.set()
        # The market stays open: candle `end` keeps forming (a quiet market), so a client only sees
        # repeated states of it and nothing more closes.
        while True:
            await asyncio.sleep(0.2)
            await self._send_all([self._kline(mid, i, 1) for mid in self.bars])
