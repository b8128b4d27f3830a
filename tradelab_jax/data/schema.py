"""Names, units and small conversions shared by every part of the lake (no I/O here)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import numpy as np

from tradelab_jax.errors import UserError

BAR_COLUMNS = ("ts", "open", "high", "low", "close", "volume")
PRICE_COLUMNS = ("open", "high", "low", "close")
COLUMN_DESCRIPTIONS = {
    "ts": "bar open time, UTC epoch milliseconds",
    "open": "first trade price of the bar (quote currency)",
    "high": "highest trade price of the bar (quote currency)",
    "low": "lowest trade price of the bar (quote currency)",
    "close": "last trade price of the bar (quote currency)",
    "volume": "traded volume in base-asset units",
    "taker_buy_volume": "volume of trades whose taker (aggressor) bought, base-asset units",
    "taker_sell_volume": "volume of trades whose taker (aggressor) sold, base-asset units",
}

_UNIT_MS = {"s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_TIMEFRAME = re.compile(r"^([1-9][0-9]{0,3})([smhdw])$")
_EXCHANGE = re.compile(r"^[a-z0-9][a-z0-9_]{0,63}$")
_SYMBOL = re.compile(r"^[A-Za-z0-9]{1,32}/[A-Za-z0-9]{1,32}(:[A-Za-z0-9]{1,32})?$")
_EXTRA_COLUMN = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def timeframe_ms(timeframe: str) -> int:
    """Length of a timeframe such as ``1m``, ``5m``, ``1h`` or ``1d`` in milliseconds."""
    match = _TIMEFRAME.match(str(timeframe))
    if not match:
        raise UserError(
            f"invalid timeframe {timeframe!r}: use a number and a unit s, m, h, d or w, e.g. 1m, 5m, 1h, 1d"
        )
    return int(match.group(1)) * _UNIT_MS[match.group(2)]


def check_exchange(exchange: str) -> str:
    if not isinstance(exchange, str) or not _EXCHANGE.match(exchange):
        raise UserError(f"invalid exchange {exchange!r}: use a ccxt exchange id such as binance or kraken")
    return exchange


def check_symbol(symbol: str) -> str:
    if not isinstance(symbol, str) or not _SYMBOL.match(symbol):
        raise UserError(
            f"invalid symbol {symbol!r}: use the ccxt unified form BASE/QUOTE (e.g. BTC/USDT) "
            "or BASE/QUOTE:SETTLE for derivatives"
        )
    return symbol


def check_extra_column(name: str) -> str:
    if not _EXTRA_COLUMN.match(name):
        raise UserError(f"invalid column name {name!r}: use lower-case letters, digits and '_'")
    return name


def symbol_dir(symbol: str) -> str:
    """The folder name of a symbol: ``BTC/USDT`` -> ``BTC-USDT``, ``BTC/USDT:USDT`` -> ``BTC-USDT-USDT``."""
    return check_symbol(symbol).replace("/", "-").replace(":", "-")


def default_dataset_id(exchange: str, symbol: str, timeframe: str) -> str:
    """``<exchange>_<base><quote>_<timeframe>`` lower-cased (``binance_btcusdt_1m``)."""
    check_symbol(symbol)
    pair, _, settle = symbol.partition(":")
    base, quote = pair.split("/")
    name = f"{base}{quote}" + (f"_{settle}" if settle else "")
    return f"{check_exchange(exchange)}_{name}_{timeframe}".lower()


def ms_to_iso(ms: int | None) -> str | None:
    """``1747699200000`` -> ``2025-05-20T00:00:00Z`` (milliseconds kept only when not zero)."""
    if ms is None:
        return None
    stamp = dt.datetime.fromtimestamp(int(ms) / 1000, tz=dt.UTC)
    text = stamp.strftime("%Y-%m-%dT%H:%M:%S")
    if int(ms) % 1000:
        text += f".{int(ms) % 1000:03d}"
    return text + "Z"


def month_of(ms: int) -> str:
    """The UTC month ``YYYY-MM`` that contains epoch-ms ``ms``."""
    return dt.datetime.fromtimestamp(int(ms) / 1000, tz=dt.UTC).strftime("%Y-%m")


def month_keys(ts: np.ndarray) -> np.ndarray:
    """``YYYY-MM`` (as ``datetime64[M]``) of each epoch-ms timestamp."""
    return np.asarray(ts, dtype="int64").astype("datetime64[ms]").astype("datetime64[M]")


def parse_time(value: Any, what: str = "time") -> int:
    """A user-given instant as UTC epoch ms.

    Accepts an ISO date or date-time (``2025-09-01``, ``2025-09-01T12:00``, ``...Z``; naive means UTC),
    a ``datetime``/``date``/``numpy.datetime64``/``pandas.Timestamp``, or an integer of epoch milliseconds.
    """
    if isinstance(value, bool):
        raise UserError(f"invalid {what} {value!r}: give a date like 2025-09-01 or epoch milliseconds")
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, np.datetime64):
        return int(value.astype("datetime64[ms]").astype("int64"))
    if isinstance(value, dt.datetime):
        stamp = value if value.tzinfo else value.replace(tzinfo=dt.UTC)
        return round(stamp.timestamp() * 1000)
    if isinstance(value, dt.date):
        return int(dt.datetime(value.year, value.month, value.day, tzinfo=dt.UTC).timestamp() * 1000)
    if isinstance(value, str):
        text = value.strip()
        if re.fullmatch(r"-?[0-9]{1,16}", text):
            return int(text)
        try:
            stamp = dt.datetime.fromisoformat(text.replace("Z", "+00:00").replace("z", "+00:00"))
        except ValueError:
            raise UserError(
                f"invalid {what} {value!r}: give an ISO date or date-time such as 2025-09-01 or "
                "2025-09-01T12:00Z (naive times are UTC), or epoch milliseconds"
            ) from None
        return parse_time(stamp, what)
    # pandas.Timestamp is a datetime subclass; anything else is not a time.
    raise UserError(f"invalid {what} {value!r}: give a date like 2025-09-01 or epoch milliseconds")
