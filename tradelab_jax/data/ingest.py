"""Backfill bars from an exchange with ccxt ``fetch_ohlcv`` (``tradelab data ingest``).

How it stays correct when interrupted: the bars already in the dataset's folder are the checkpoint. A run
works out which bars of ``[since, until)`` are missing (:func:`plan_ingest`, pure), fetches only those, and
commits every page (:meth:`IngestState.commit`: month files atomically, then the manifest), so killing it
loses at most the page in flight and re-running the same command continues from there, with no duplicate
and no missing bar. Only closed candles are stored: the
cut-off is the exchange's own clock (``fetchTime``) when it has one. A bar listed as unconfirmed in the
manifest (the last bar of a downloaded file) is fetched again and replaced by the exchange's final bar.
"""

from __future__ import annotations

import email.utils
import json
import os
import random
import sys
import time
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from tradelab_jax.data.lake import Lake, concat, read_month_file, sha256_file, take, write_dataset
from tradelab_jax.data.schema import (
    BAR_COLUMNS,
    check_exchange,
    check_symbol,
    default_dataset_id,
    month_keys,
    ms_to_iso,
    parse_time,
    timeframe_ms,
)
from tradelab_jax.data.validate import check_bars, describe_gaps
from tradelab_jax.errors import DataError, UserError
from tradelab_jax.paths import check_id

CONFIG_ENV = "TRADELAB_DATA_CONFIG"


@dataclass(frozen=True)
class IngestSettings:
    """Knobs of one ingest run; each can come from the command line, a config file or the default."""

    api_url: str | None = None  # replaces the scheme and host of every REST URL of the exchange
    limit: int | None = None  # bars per request; default: the exchange's documented maximum
    max_retries: int = 8  # retries of one request after a transient failure
    timeout_s: float = 30.0  # HTTP timeout per request
    backoff_s: float = 1.0  # first retry delay; doubles each retry (with jitter) up to max_backoff_s
    max_backoff_s: float = 60.0
    market_type: str | None = (
        None  # spot, linear, inverse...: which markets to load (default from the symbol)
    )
    rate_limit_ms: float | None = None  # ccxt's delay per unit of request cost; default: the exchange's own

    @classmethod
    def from_sources(
        cls, exchange: str, config_path: str | os.PathLike | None = None, **overrides: Any
    ) -> IngestSettings:
        """Defaults, then the config file (``--config`` or ``$TRADELAB_DATA_CONFIG``), then the flags."""
        values: dict[str, Any] = {}
        path = config_path or os.environ.get(CONFIG_ENV)
        if path:
            values.update(_read_config(Path(path), exchange))
        values.update({k: v for k, v in overrides.items() if v is not None})
        settings = cls(**values)
        settings.check()
        return settings

    def check(self) -> None:
        if self.api_url is not None:
            parts = urlsplit(self.api_url)
            if parts.scheme not in ("http", "https") or not parts.netloc or parts.query or parts.fragment:
                raise UserError(
                    f"invalid api_url {self.api_url!r}: give an http(s) base URL such as http://127.0.0.1:8080"
                )
        if self.limit is not None and not (isinstance(self.limit, int) and 1 <= self.limit <= 100_000):
            raise UserError(
                f"invalid limit {self.limit!r}: give a whole number of bars per request, 1-100000"
            )
        if not (isinstance(self.max_retries, int) and 0 <= self.max_retries <= 100):
            raise UserError(f"invalid max_retries {self.max_retries!r}: give a whole number 0-100")
        if self.rate_limit_ms is not None and not (
            isinstance(self.rate_limit_ms, int | float) and 0 < self.rate_limit_ms <= 60_000
        ):
            raise UserError(f"invalid rate_limit_ms {self.rate_limit_ms!r}: give milliseconds, 0-60000")
        for name in ("timeout_s", "backoff_s", "max_backoff_s"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or isinstance(value, bool) or not (0 <= value <= 3600):
                raise UserError(f"invalid {name} {value!r}: give a number of seconds 0-3600")
        if self.timeout_s <= 0:
            raise UserError(f"invalid timeout_s {self.timeout_s!r}: it must be > 0")


def _read_config(path: Path, exchange: str) -> dict[str, Any]:
    if not path.is_file():
        raise UserError(f"config file {path} does not exist")
    text = path.read_text(encoding="utf-8")
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            import yaml

            data = yaml.safe_load(text)
    except Exception as err:  # any parse error of a user's file is a user error
        raise UserError(
            f"config file {path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'} ({err})"
        ) from None
    data = data or {}
    if not isinstance(data, dict):
        raise UserError(f"config file {path} must hold a mapping of settings")
    section = data.get("ingest", data)
    if not isinstance(section, dict):
        raise UserError(f"config file {path}: 'ingest' must be a mapping of settings")
    per_exchange = section.get("exchanges") or {}
    if not isinstance(per_exchange, dict):
        raise UserError(f"config file {path}: 'exchanges' must map exchange ids to settings")
    values = {k: v for k, v in section.items() if k != "exchanges"}
    specific = per_exchange.get(exchange) or {}
    if not isinstance(specific, dict):
        raise UserError(f"config file {path}: exchanges.{exchange} must be a mapping of settings")
    values.update(specific)
    valid = {f.name for f in fields(IngestSettings)}
    unknown = sorted(set(values) - valid)
    if unknown:
        raise UserError(
            f"config file {path} has unknown key(s) {', '.join(unknown)}; "
            f"valid keys: {', '.join(sorted(valid))}"
        )
    return values


# --------------------------------------------------------------------------------------------- exchange


def _rebase(url: str, base: str) -> str:
    parts = urlsplit(url)
    return base.rstrip("/") + parts.path + (f"?{parts.query}" if parts.query else "")


def _rebase_tree(node: Any, base: str) -> Any:
    if isinstance(node, str):
        return _rebase(node, base) if node.startswith(("http://", "https://")) else node
    if isinstance(node, dict):
        return {k: _rebase_tree(v, base) for k, v in node.items()}
    return node


def make_exchange(exchange: str, symbol: str, settings: IngestSettings):
    """A ccxt exchange with rate limiting on, the REST URLs rebased if asked, and only the needed markets."""
    import ccxt

    if exchange not in ccxt.exchanges:
        raise UserError(
            f"unknown exchange {exchange!r}: use a ccxt exchange id such as binance, kraken or bybit"
        )
    ex = getattr(ccxt, exchange)({"enableRateLimit": True, "timeout": int(settings.timeout_s * 1000)})
    if not ex.has.get("fetchOHLCV"):
        raise UserError(f"exchange {exchange!r} has no fetchOHLCV in ccxt, so it cannot give bars")
    if settings.rate_limit_ms is not None:
        ex.rateLimit = float(settings.rate_limit_ms)
    if settings.api_url:
        ex.urls = dict(ex.urls)
        ex.urls["api"] = _rebase_tree(ex.urls["api"], settings.api_url)
    market_type = settings.market_type or market_type_of(symbol)
    fetch_markets = ex.options.get("fetchMarkets")
    # Exchanges like binance load spot, linear and inverse markets from three hosts by default; one is enough.
    if isinstance(fetch_markets, dict) and isinstance(fetch_markets.get("types"), list):
        ex.options["fetchMarkets"] = {**fetch_markets, "types": [market_type]}
    elif isinstance(fetch_markets, list):
        ex.options["fetchMarkets"] = [market_type]
    return ex


def market_type_of(symbol: str) -> str:
    """ccxt's market type of a unified symbol: ``spot``, or a swap's ``linear`` / ``inverse`` settlement
    (the key of the exchange's per-type URLs and limits; ingest and the stream read it alike)."""
    pair, _, settle = symbol.partition(":")
    if not settle:
        return "spot"
    return "linear" if settle == pair.split("/")[1] else "inverse"


@dataclass
class Caller:
    """Runs ccxt calls, retrying transient failures with backoff and honouring Retry-After."""

    ex: Any
    settings: IngestSettings
    sleep: Any = time.sleep
    requests: int = 0
    retries: int = 0
    log: list[str] = field(default_factory=list)

    def __call__(self, what: str, fn, *args, **kwargs):
        import ccxt

        attempt = 0
        while True:
            self.requests += 1
            try:
                return fn(*args, **kwargs)
            except ccxt.BadSymbol as err:
                raise UserError(f"{self.ex.id} does not list the symbol: {_short(err)}") from None
            except ccxt.BaseError as err:
                if not _transient(err):
                    raise DataError(
                        f"{self.ex.id} {what} failed ({type(err).__name__}: {_short(err)})"
                    ) from None
                if attempt >= self.settings.max_retries:
                    raise DataError(
                        f"{self.ex.id} {what} still failed after {attempt} retries ({type(err).__name__}: "
                        f"{_short(err)}); the bars fetched so far are saved, re-run the same command to "
                        "continue"
                    ) from None
                delay = self._delay(err, attempt)
                self.log.append(f"{what}: {type(err).__name__}, retry {attempt + 1} in {delay:.2f}s")
                self.retries += 1
                attempt += 1
                self.sleep(delay)

    def _delay(self, err: Exception, attempt: int) -> float:
        import ccxt

        backoff = self.settings.backoff_s * (2**attempt) * (1 + 0.25 * random.random())
        if isinstance(err, ccxt.DDoSProtection):
            wait = _retry_after_s(getattr(self.ex, "last_response_headers", None))
            if wait is not None:
                backoff = max(wait, self.settings.backoff_s)
        return min(backoff, self.settings.max_backoff_s)


def _http_status(err: BaseException) -> int | None:
    """The HTTP status behind a ccxt error, found on the requests error it was raised from."""
    seen = set()
    while err is not None and id(err) not in seen:
        seen.add(id(err))
        response = getattr(err, "response", None)
        status = getattr(response, "status_code", None)
        if isinstance(status, int):
            return status
        err = err.__cause__ or err.__context__
    return None


def _transient(err: BaseException) -> bool:
    """Worth retrying: ccxt's OperationFailed family (network errors, 429/418, 5xx, timeouts, dropped
    connections, bad or empty responses), or any error that came with HTTP 418, 429 or 5xx."""
    import ccxt

    if isinstance(err, ccxt.OperationFailed):
        return True
    status = _http_status(err)
    return status is not None and (status in (418, 429) or status >= 500)


def _retry_after_s(headers: Any) -> float | None:
    if not headers:
        return None
    value = headers.get("Retry-After") if hasattr(headers, "get") else None
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _short(err: Exception) -> str:
    text = " ".join(str(err).split())
    return text[:200] + ("…" if len(text) > 200 else "")


# --------------------------------------------------------------------------------------------- plan


def missing_ranges(have: np.ndarray, start: int, end: int, tf_ms: int) -> list[tuple[int, int]]:
    """Half-open ``[a, b)`` ranges of grid bars in ``[start, end)`` whose open time is not in ``have``."""
    have = np.unique(have[(have >= start) & (have < end)])
    ranges = []
    cursor = start
    for ts in have:
        if ts > cursor:
            ranges.append((cursor, int(ts)))
        cursor = max(cursor, int(ts) + tf_ms)
    if cursor < end:
        ranges.append((cursor, end))
    return ranges


@dataclass(frozen=True)
class IngestPlan:
    """What one run fetches and how the dataset will record it, worked out from what is stored (no I/O).

    Times are UTC epoch ms on the timeframe's grid; ``holes`` are half-open ``[a, b)`` ranges of open times.
    """

    dataset_id: str
    exchange: str
    symbol: str
    timeframe: str
    tf_ms: int
    since_ms: int
    end_ms: int  # exclusive: --until rounded up to the grid, or the exchange's last closed candle if earlier
    holes: list[tuple[int, int]]
    unconfirmed: list[int]  # stored bars that may not be final: fetched again and replaced
    provenance_text: str
    sources: list[dict]

    @property
    def total(self) -> int:
        """Bars in the holes: the length of the progress bar."""
        return sum((b - a) // self.tf_ms for a, b in self.holes)


def plan_ingest(
    *,
    dataset_id: str,
    exchange: str,
    symbol: str,
    timeframe: str,
    tf_ms: int,
    since_ms: int,
    until_ms: int | None,
    now_ms: int,
    stored_ts: np.ndarray | None,
    manifest: dict | None,
    api_url: str | None,
    ccxt_version: str,
) -> IngestPlan:
    """The bars of ``[since_ms, until_ms)`` that have closed by ``now_ms`` (the exchange's clock) and are not
    stored as final (``stored_ts``, less the manifest's unconfirmed bars); ``since_ms`` is on the grid."""
    # Only candles that have closed by the exchange's clock are stored (a forming candle changes later).
    closed_end = (now_ms // tf_ms) * tf_ms
    end_ms = closed_end if until_ms is None else min(-(-until_ms // tf_ms) * tf_ms, closed_end)
    if end_ms <= since_ms:
        raise UserError(
            f"nothing to fetch: no closed {timeframe} candle between {ms_to_iso(since_ms)} and "
            f"{ms_to_iso(end_ms)} (exchange time {ms_to_iso(now_ms)})"
        )
    stored_ts = np.empty(0, "int64") if stored_ts is None else stored_ts
    # Bars that may not be final count as missing, so they are fetched again and replaced.
    unconfirmed = [int(t) for t in (manifest or {}).get("unconfirmed_ts") or []]
    have = stored_ts[~np.isin(stored_ts, unconfirmed)]
    text, sources = _provenance_with_run(
        manifest, dataset_id, exchange, symbol, timeframe, since_ms, end_ms, api_url, ccxt_version
    )
    return IngestPlan(
        dataset_id=dataset_id,
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        tf_ms=tf_ms,
        since_ms=since_ms,
        end_ms=end_ms,
        holes=missing_ranges(have, since_ms, end_ms, tf_ms),
        unconfirmed=unconfirmed,
        provenance_text=text,
        sources=sources,
    )


def _provenance_with_run(
    manifest: dict | None,
    dataset_id: str,
    exchange: str,
    symbol: str,
    timeframe: str,
    since_ms: int,
    end_ms: int,
    api_url: str | None,
    ccxt_version: str,
) -> tuple[str, list[dict]]:
    """The dataset's provenance text and sources with this run added (once: a re-run adds nothing)."""
    provenance = (manifest or {}).get("provenance") or {}
    sources = list(provenance.get("sources") or [])
    text = provenance.get("text") or _new_provenance(dataset_id, exchange, symbol, timeframe)
    line = (
        f"- `tradelab data ingest` fetched closed {exchange} {symbol} {timeframe} candles for "
        f"{ms_to_iso(since_ms)} → {ms_to_iso(end_ms)} (exclusive) with ccxt {ccxt_version} fetchOHLCV"
        + (f" from {api_url}" if api_url else "")
        + "."
    )
    source = {
        "kind": "ingest",
        "exchange": exchange,
        "api_url": api_url,
        "ccxt": ccxt_version,
        "since": ms_to_iso(since_ms),
        "until": ms_to_iso(end_ms),
    }
    if source not in sources:
        sources.append(source)
    if line not in text:
        heading = "## Ingested with tradelab"
        text = text.rstrip() + ("\n" if heading in text else f"\n\n{heading}\n\n") + line + "\n"
    return text, sources


# --------------------------------------------------------------------------------------------- state


@dataclass
class IngestState:
    """The dataset as committed so far; its folder is the checkpoint a re-run continues from."""

    lake: Lake
    plan: IngestPlan
    bars: dict[str, np.ndarray]
    manifest: dict | None  # None until the first write of a new dataset
    unconfirmed: list[int]
    new_bars: int = 0  # bars committed by this run (a replaced unconfirmed bar counts)

    @classmethod
    def start(
        cls, lake: Lake, plan: IngestPlan, stored: dict[str, np.ndarray] | None, manifest: dict | None
    ) -> IngestState:
        bars = (
            stored
            if stored is not None
            else {c: np.empty(0, "int64" if c == "ts" else "float64") for c in BAR_COLUMNS}
        )
        return cls(lake, plan, bars, manifest, list(plan.unconfirmed))

    def rebuild_manifest(self) -> None:
        """Rewrite the dataset from the stored bars: a run killed between writing a month file and the
        manifest left the manifest one step behind."""
        self.manifest = self._write(self.bars, self.unconfirmed)

    def commit(self, page: dict[str, np.ndarray]) -> None:
        """Merge a checked page (sorted, unique, on the grid): its bars replace stored bars with the same
        open time, only its months' files are rewritten, then the manifest (each write atomic)."""
        keep = ~np.isin(self.bars["ts"], page["ts"])
        merged = concat([take(self.bars, keep), page], BAR_COLUMNS)
        merged = take(merged, np.argsort(merged["ts"], kind="stable"))
        # A fetched candle has closed, so it replaces an unconfirmed bar for good.
        fetched = set(page["ts"].tolist())
        unconfirmed = [t for t in self.unconfirmed if t not in fetched]
        changed = {str(m) for m in np.unique(month_keys(page["ts"]))}
        self.manifest = self._write(merged, unconfirmed, previous=self.manifest, changed_months=changed)
        self.bars, self.unconfirmed = merged, unconfirmed
        self.new_bars += len(page["ts"])

    def _write(self, bars: dict[str, np.ndarray], unconfirmed: list[int], **only_changed: Any) -> dict:
        plan = self.plan
        return write_dataset(
            self.lake,
            dataset_id=plan.dataset_id,
            exchange=plan.exchange,
            symbol=plan.symbol,
            timeframe=plan.timeframe,
            bars=bars,
            provenance_text=plan.provenance_text,
            sources=plan.sources,
            unconfirmed_ts=unconfirmed,
            **only_changed,
        )


# --------------------------------------------------------------------------------------------- run


def _remove_leftover_temp_files(lake: Lake, rel_dir: str) -> None:
    """Temporary files of atomic writes that a killed run left behind (never a committed file)."""
    for folder in (lake.file_path(rel_dir), lake.manifests_dir, lake.root / "provenance"):
        if folder.is_dir():
            for tmp in folder.glob(".*.tmp"):
                tmp.unlink(missing_ok=True)


def manifest_matches(lake: Lake, manifest: dict | None, rel_dir: str) -> bool:
    """Whether the manifest lists exactly the month files in the dataset folder, with their checksums."""
    if manifest is None:
        return False
    folder = lake.file_path(rel_dir)
    on_disk = {f"{rel_dir}/{p.name}" for p in folder.glob("[0-9][0-9][0-9][0-9]-[0-9][0-9].parquet")}
    listed = {f["path"]: f.get("sha256") for f in manifest["files"]}
    if set(listed) != on_disk:
        return False
    return all(sha256_file(lake.file_path(rel)) == sha for rel, sha in listed.items())


def _read_existing(lake: Lake, rel_dir: str) -> dict[str, np.ndarray] | None:
    """Bars in the dataset folder, read from its month files (the checkpoint), or None when there are none."""
    folder = lake.file_path(rel_dir)
    if not folder.is_dir():
        return None
    paths = sorted(p for p in folder.glob("[0-9][0-9][0-9][0-9]-[0-9][0-9].parquet"))
    if not paths:
        return None
    parts = [read_month_file(p) for p in paths]
    columns = list(parts[0])
    for p, part in zip(paths, parts, strict=True):
        if list(part) != columns:
            raise DataError(
                f"{p} has columns {list(part)}, other months have {columns}; run `tradelab data validate`"
            )
    bars = concat(parts, columns)
    order = np.argsort(bars["ts"], kind="stable")
    return take(bars, order)


@dataclass
class IngestResult:
    manifest: dict
    new_bars: int
    requests: int
    retries: int
    warnings: list[str]


def ingest(
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    since: Any,
    until: Any = None,
    dataset_id: str | None = None,
    lake: Lake,
    settings: IngestSettings | None = None,
    progress: bool = True,
) -> IngestResult:
    """Fetch the closed bars of ``[since, until)`` (default until: now) missing from the dataset.

    Pages are committed one by one, so an interrupted run can simply be started again.
    """
    check_exchange(exchange)
    check_symbol(symbol)
    tf_ms = timeframe_ms(timeframe)
    dataset_id = check_id(dataset_id or default_dataset_id(exchange, symbol, timeframe), "dataset id")
    with lake.writer(dataset_id):  # one writer per dataset; a second is refused, naming this one
        return _ingest(
            exchange=exchange,
            symbol=symbol,
            timeframe=timeframe,
            tf_ms=tf_ms,
            since=since,
            until=until,
            dataset_id=dataset_id,
            lake=lake,
            settings=settings or IngestSettings(),
            progress=progress,
        )


def _ingest(
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    tf_ms: int,
    since: Any,
    until: Any,
    dataset_id: str,
    lake: Lake,
    settings: IngestSettings,
    progress: bool,
) -> IngestResult:
    since_ms = -(-parse_time(since, "--since") // tf_ms) * tf_ms
    until_ms = None if until is None else parse_time(until, "--until")
    if until_ms is not None and until_ms <= since_ms:
        raise UserError(f"--until {ms_to_iso(until_ms)} must be after --since {ms_to_iso(since_ms)}")
    manifest, rel_dir, stored = open_dataset(lake, dataset_id, exchange, symbol, timeframe, tf_ms)
    ex, call, now_ms = connect(exchange, symbol, timeframe, settings)
    plan = plan_ingest(
        dataset_id=dataset_id,
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        tf_ms=tf_ms,
        since_ms=since_ms,
        until_ms=until_ms,
        now_ms=now_ms,
        stored_ts=None if stored is None else stored["ts"],
        manifest=manifest,
        api_url=settings.api_url,
        ccxt_version=ccxt_version(),
    )
    limit = settings.limit or default_limit(ex, symbol)
    state = IngestState.start(lake, plan, stored, manifest)
    warnings: list[str] = []
    if stored is not None and not manifest_matches(lake, manifest, rel_dir):
        state.rebuild_manifest()
        warnings.append(
            f"the manifest of {dataset_id!r} did not match its files (an interrupted run); rebuilt it"
        )

    def fetch(cursor: int) -> Any:
        what = f"fetchOHLCV {symbol} {timeframe} since {ms_to_iso(cursor)}"
        return call(what, ex.fetch_ohlcv, symbol, timeframe, cursor, limit)

    from tqdm import tqdm

    with tqdm(
        total=plan.total,
        unit="bar",
        desc=f"{dataset_id}",
        disable=None if progress else True,
        file=sys.stderr,
        dynamic_ncols=True,
    ) as bar:
        fetch_holes(plan, fetch, state, bar, warnings)
    if state.manifest is None:
        raise DataError(
            f"{exchange} returned no {symbol} {timeframe} bars between {ms_to_iso(since_ms)} and "
            f"{ms_to_iso(plan.end_ms)}; nothing was written"
        )
    if state.manifest.get("gaps"):
        warnings.append(f"dataset {dataset_id!r} has " + describe_gaps(state.manifest["gaps"]))
    warnings.extend(call.log)
    return IngestResult(state.manifest, state.new_bars, call.requests, call.retries, warnings)


def open_dataset(
    lake: Lake, dataset_id: str, exchange: str, symbol: str, timeframe: str, tf_ms: int
) -> tuple[dict | None, str, dict[str, np.ndarray] | None]:
    """The dataset's manifest, folder and stored bars (None when absent), after removing what a killed run
    left behind; refused when it holds another market, extra columns or bars that fail validation."""
    manifest = lake.read_manifest(dataset_id) if lake.exists(dataset_id) else None
    if manifest is not None:
        for key, want in (("exchange", exchange), ("symbol", symbol), ("timeframe", timeframe)):
            if manifest.get(key) != want:
                raise UserError(
                    f"dataset {dataset_id!r} holds {manifest.get('exchange')} {manifest.get('symbol')} "
                    f"{manifest.get('timeframe')} bars, not {exchange} {symbol} {timeframe}; "
                    "choose another --dataset-id"
                )
    rel_dir = lake.dataset_rel_dir(exchange, symbol, timeframe, dataset_id)
    _remove_leftover_temp_files(lake, rel_dir)
    stored = _read_existing(lake, rel_dir)
    if stored is not None:
        extras = [c for c in stored if c not in BAR_COLUMNS]
        if extras:
            raise UserError(
                f"dataset {dataset_id!r} has extra columns ({', '.join(extras)}) that fetchOHLCV cannot "
                "fill; ingest into another --dataset-id"
            )
        findings, _ = check_bars(stored, tf_ms)
        if findings:
            raise DataError(
                f"dataset {dataset_id!r} fails validation ({findings[0].message}); fix it before ingesting"
            )
    return manifest, rel_dir, stored


def connect(
    exchange: str, symbol: str, timeframe: str, settings: IngestSettings
) -> tuple[Any, Caller, int]:
    """The ccxt exchange, checked to list the market and the timeframe; its caller; its clock (epoch ms)."""
    ex = make_exchange(exchange, symbol, settings)
    call = Caller(ex, settings)
    call("loadMarkets", ex.load_markets)
    if symbol not in ex.markets:
        raise UserError(
            f"{exchange} has no market {symbol!r}; check the symbol (ccxt unified form, e.g. BTC/USDT)"
        )
    if getattr(ex, "timeframes", None) and timeframe not in ex.timeframes:
        raise UserError(f"{exchange} has no {timeframe!r} candles; it offers {', '.join(ex.timeframes)}")
    now_ms = call("fetchTime", ex.fetch_time) if ex.has.get("fetchTime") else ex.milliseconds()
    return ex, call, int(now_ms)


def fetch_holes(plan: IngestPlan, fetch, state: IngestState, bar: Any, warnings: list[str]) -> None:
    """Page through each hole from its start with ``fetch(cursor) -> ccxt rows``, committing every usable
    page; a page with nothing usable ends its hole (``bar`` counts the bars done, fetched or not)."""
    tf_ms = plan.tf_ms
    for start, stop in plan.holes:
        cursor = start
        while cursor < stop:
            page = _page_to_bars(fetch(cursor), plan.exchange)
            usable = _usable_bars(page, cursor, stop, tf_ms, plan.exchange)
            if len(usable["ts"]):
                state.commit(usable)
                advanced = int(usable["ts"][-1]) + tf_ms
                bar.update((advanced - cursor) // tf_ms)
                cursor = advanced
                continue
            # Nothing usable: the exchange has no bars from cursor to the end of this range (a gap), or it
            # ignored `since`; either way this range is done.
            if len(page["ts"]) and not np.any(page["ts"] >= cursor):
                warnings.append(
                    f"{plan.exchange} returned only bars before {ms_to_iso(cursor)} when asked from it; "
                    "it may not support paging back in time"
                )
            bar.update((stop - cursor) // tf_ms)
            break


def _usable_bars(
    page: dict[str, np.ndarray], cursor: int, stop: int, tf_ms: int, exchange: str
) -> dict[str, np.ndarray]:
    """The bars of a sorted page in ``[cursor, stop)`` and on the grid, the last copy of a repeated open time
    winning; a DataError when they fail validation (the pages before are committed already)."""
    ts = page["ts"]
    page = take(page, (ts >= cursor) & (ts < stop) & (ts % tf_ms == 0))
    if len(page["ts"]):
        _, first_idx = np.unique(page["ts"][::-1], return_index=True)
        page = take(page, np.sort(len(page["ts"]) - 1 - first_idx))  # last copy of each ts wins
        findings, _ = check_bars(page, tf_ms)
        if findings:
            raise DataError(
                f"{exchange} returned bars that fail validation ({findings[0].message}); "
                "the pages before it are saved"
            )
    return page


def _page_to_bars(rows: Any, exchange: str) -> dict[str, np.ndarray]:
    if rows is None:
        rows = []
    try:
        arr = np.array([[r[0], r[1], r[2], r[3], r[4], r[5]] for r in rows], dtype="float64").reshape(-1, 6)
    except (TypeError, ValueError, IndexError):
        raise DataError(
            f"{exchange} returned candles that are not [ts, open, high, low, close, volume] rows"
        ) from None
    if len(arr) and not np.isfinite(arr[:, 0]).all():
        raise DataError(f"{exchange} returned a candle without a timestamp")
    page = {"ts": np.array([int(r[0]) for r in rows], dtype="int64")}
    for i, name in enumerate(BAR_COLUMNS[1:], start=1):
        page[name] = np.ascontiguousarray(arr[:, i])
    order = np.argsort(page["ts"], kind="stable")
    return take(page, order)


def default_limit(ex: Any, symbol: str) -> int:
    """The most bars one fetchOHLCV call of ``ex`` returns for ``symbol`` (ccxt's ``features``), else 500."""
    market = ex.markets.get(symbol, {}) if getattr(ex, "markets", None) else {}
    features = getattr(ex, "features", None) or {}
    kind = market.get("type") or "spot"
    section = features.get(kind) or {}
    if kind in ("swap", "future") and isinstance(section, dict):
        section = section.get("linear" if market.get("linear") else "inverse") or section
    ohlcv = section.get("fetchOHLCV") if isinstance(section, dict) else None
    limit = ohlcv.get("limit") if isinstance(ohlcv, dict) else None
    return int(limit) if isinstance(limit, int | float) and limit > 0 else 500


def ccxt_version() -> str:
    """The installed ccxt's version, recorded in manifests and provenance (imported here, not at load)."""
    import ccxt

    return ccxt.__version__


def _new_provenance(dataset_id: str, exchange: str, symbol: str, timeframe: str) -> str:
    return (
        f"# {dataset_id}\n\n{exchange} {symbol} {timeframe} candles fetched from the exchange's public "
        "market-data API with ccxt `fetch_ohlcv`. Only candles that had closed by the exchange's clock "
        f"were stored. The data are {exchange} market data; {exchange}'s terms of use apply.\n"
    )
