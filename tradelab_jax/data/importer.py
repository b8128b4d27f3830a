"""Bring a user's CSV or Parquet file of bars into the lake (``tradelab data import``).

The file is read and normalised completely in memory and checked with every validation rule before
anything is written, so a refused file leaves the lake exactly as it was.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tradelab_jax.data.lake import Lake, provenance_with_note, write_dataset
from tradelab_jax.data.schema import (
    BAR_COLUMNS,
    check_exchange,
    check_symbol,
    default_dataset_id,
    ms_to_iso,
    timeframe_ms,
)
from tradelab_jax.data.validate import check_bars, describe_gaps
from tradelab_jax.errors import DataError, UserError
from tradelab_jax.paths import check_id

TIME_ALIASES = ("ts", "timestamp", "open_time", "opentime", "date", "datetime", "time", "open_timestamp")
VALUE_ALIASES = {
    "open": ("open", "o", "open_price"),
    "high": ("high", "h", "high_price"),
    "low": ("low", "l", "low_price"),
    "close": ("close", "c", "close_price"),
    "volume": ("volume", "v", "vol", "base_volume", "volume_base"),
}
EXTRA_ALIASES = {
    "taker_buy_base_volume": "taker_buy_volume",
    "taker_buy_base_asset_volume": "taker_buy_volume",
    "taker_buy_volume": "taker_buy_volume",
    "taker_sell_base_volume": "taker_sell_volume",
    "taker_sell_volume": "taker_sell_volume",
    "quote_asset_volume": "quote_volume",
    "quote_volume": "quote_volume",
    "number_of_trades": "trades",
    "trades": "trades",
    "count": "trades",
    "taker_buy_quote_asset_volume": "taker_buy_quote_volume",
    "taker_buy_quote_volume": "taker_buy_quote_volume",
}
# Columns that repeat what the bar already says, or say nothing.
DROP_ALWAYS = {"close_time", "closetime", "ignore", "unnamed_0", "index", "level_0"}
BINANCE_KLINE_COLUMNS = (
    "open_time",
    "open",
    "high",
    "low",
    "close",
    "volume",
    "close_time",
    "quote_volume",
    "trades",
    "taker_buy_base_volume",
    "taker_buy_quote_volume",
    "ignore",
)
PARQUET_MAGIC = b"PAR1"


@dataclass
class ImportResult:
    manifest: dict
    dropped_columns: list[str] = field(default_factory=list)
    time_unit: str = "ms"
    warnings: list[str] = field(default_factory=list)


def read_table_file(path: Path) -> pd.DataFrame:
    """A CSV or Parquet file as a DataFrame (DataError for a missing, empty, truncated or unknown file)."""
    if not path.exists():
        raise UserError(f"input file {path} does not exist")
    if not path.is_file():
        raise UserError(f"input {path} is not a file")
    size = path.stat().st_size
    if size == 0:
        raise DataError(f"input file {path} is empty (0 bytes); expected a CSV or Parquet file of bars")
    with open(path, "rb") as f:
        head = f.read(4)
    suffixes = [s.lower() for s in path.suffixes]
    if head == PARQUET_MAGIC or (suffixes and suffixes[-1] in {".parquet", ".pq"}):
        if head != PARQUET_MAGIC:
            raise DataError(f"input file {path} is not a Parquet file (it does not start with PAR1)")
        try:
            table = pq.read_table(path)
        except (OSError, pa.ArrowException) as err:
            raise DataError(
                f"input file {path} is not a readable Parquet file; it may be truncated ({_line(err)})"
            ) from None
        try:
            return table.to_pandas()
        except (pa.ArrowException, ValueError) as err:
            raise DataError(f"input file {path} has columns pandas cannot read ({_line(err)})") from None
    return _read_csv(path)


def _read_csv(path: Path) -> pd.DataFrame:
    try:
        with open(path, encoding="utf-8-sig") as f:
            first = f.readline()
    except UnicodeDecodeError:
        raise DataError(f"input file {path} is neither Parquet nor UTF-8 CSV text") from None
    if not first.strip():
        raise DataError(
            f"input file {path} has an empty first line; expected a CSV header or a first row of bars"
        )
    fields = [x.strip() for x in first.split(",")]
    headerless = all(_is_number(x) for x in fields)
    names = None
    if headerless:
        if len(fields) == len(BINANCE_KLINE_COLUMNS):
            names = list(BINANCE_KLINE_COLUMNS)
        elif len(fields) == len(BAR_COLUMNS):
            names = list(BAR_COLUMNS)
        else:
            raise DataError(
                f"input file {path} has no header and {len(fields)} columns; a headerless file must have 6 "
                "(ts, open, high, low, close, volume) or 12 (Binance klines) columns"
            )
    try:
        return pd.read_csv(
            path,
            header=None if headerless else "infer",
            names=names,
            encoding="utf-8-sig",
        )
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as err:
        raise DataError(f"input file {path} is not a readable CSV file ({_line(err)})") from None


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _line(err: BaseException) -> str:
    lines = str(err).strip().splitlines()
    return lines[0] if lines else type(err).__name__


def _clean_name(name: object) -> str:
    return re.sub(r"[^a-z0-9]+", "_", str(name).strip().lower()).strip("_")


def frame_to_bars(frame: pd.DataFrame, source: str) -> tuple[dict[str, np.ndarray], list[str], str]:
    """Map common column names and time units onto the bar schema: (bars, dropped columns, time unit)."""
    if len(frame) == 0:
        raise DataError(f"input file {source} has a header but no rows")
    by_clean: dict[str, str] = {}
    for col in frame.columns:
        by_clean.setdefault(_clean_name(col), col)
    time_col = next((by_clean[a] for a in TIME_ALIASES if a in by_clean), None)
    if time_col is None:
        raise DataError(
            f"input file {source} has no time column; name one of {', '.join(TIME_ALIASES[:6])} "
            f"(found columns: {', '.join(map(str, frame.columns))})"
        )
    used = {time_col}
    ts, unit = to_epoch_ms(frame[time_col], str(time_col), source)
    bars: dict[str, np.ndarray] = {"ts": ts}
    for name, aliases in VALUE_ALIASES.items():
        col = next((by_clean[a] for a in aliases if a in by_clean and by_clean[a] not in used), None)
        if col is None:
            raise DataError(
                f"input file {source} has no {name!r} column (accepted names: {', '.join(aliases)}; "
                f"found: {', '.join(map(str, frame.columns))})"
            )
        used.add(col)
        bars[name] = to_float(frame[col], str(col), source)
    dropped = []
    for col in frame.columns:
        if col in used:
            continue
        clean = _clean_name(col)
        target = EXTRA_ALIASES.get(clean, clean)
        numeric = pd.api.types.is_numeric_dtype(frame[col]) and not pd.api.types.is_bool_dtype(frame[col])
        if (
            clean in DROP_ALWAYS
            or not re.match(r"^[a-z][a-z0-9_]{0,63}$", target)
            or not numeric
            or target in bars
        ):
            dropped.append(str(col))
            continue
        bars[target] = to_float(frame[col], str(col), source)
    if "taker_buy_volume" in bars and "taker_sell_volume" not in bars:
        bars["taker_sell_volume"] = bars["volume"] - bars["taker_buy_volume"]
    return bars, dropped, unit


def to_epoch_ms(series: pd.Series, name: str, source: str) -> tuple[np.ndarray, str]:
    """Times in ms, s, µs, ns or ISO text (naive = UTC) as int64 epoch milliseconds, and the unit found."""
    if series.isna().any():
        row = int(np.flatnonzero(series.isna().to_numpy())[0])
        raise DataError(f"input file {source} column {name!r} has an empty time at data row {row + 1}")
    if pd.api.types.is_datetime64_any_dtype(series):
        stamps = pd.to_datetime(series, utc=True)
        return stamps.dt.as_unit("ms").astype("int64").to_numpy(), "datetime"
    if pd.api.types.is_bool_dtype(series):
        raise DataError(f"input file {source} column {name!r} holds booleans, not times")
    if not pd.api.types.is_numeric_dtype(series):
        text = series.astype(str).str.strip()
        if text.str.fullmatch(r"-?\d+(\.\d+)?").all():
            series = pd.to_numeric(text)
        else:
            try:
                stamps = pd.to_datetime(text, utc=True, format="ISO8601")
            except (ValueError, TypeError):
                bad = _first_bad_time(text)
                raise DataError(
                    f"input file {source} column {name!r} value {bad!r} is not a time; use epoch ms/s or "
                    "ISO 8601 such as 2025-05-20T00:00:00Z"
                ) from None
            return stamps.dt.as_unit("ms").astype("int64").to_numpy(), "iso"
    values = series.to_numpy(dtype="float64")
    if not np.isfinite(values).all():
        raise DataError(f"input file {source} column {name!r} has a NaN or infinite time")
    biggest = float(np.max(np.abs(values))) if len(values) else 0.0
    unit, scale = (
        ("s", 1e3)
        if biggest < 1e11
        else ("ms", 1.0)
        if biggest < 1e14
        else ("us", 1e-3)
        if biggest < 1e17
        else ("ns", 1e-6)
    )
    if unit in ("ms", "s") and pd.api.types.is_integer_dtype(series):
        ms = series.to_numpy(dtype="int64") * int(scale)
    else:
        scaled = values * scale
        ms = np.round(scaled).astype("int64")
        if np.any(np.abs(scaled - ms) > 1e-3):
            raise DataError(
                f"input file {source} column {name!r} has times that are not whole milliseconds "
                f"(read as {unit}); bars must start on whole milliseconds"
            )
    return ms, unit


def _first_bad_time(text: pd.Series) -> str:
    for value in text:
        try:
            pd.to_datetime(value, utc=True, format="ISO8601")
        except (ValueError, TypeError):
            return value
    return str(text.iloc[0])


def to_float(series: pd.Series, name: str, source: str) -> np.ndarray:
    if pd.api.types.is_bool_dtype(series):
        raise DataError(f"input file {source} column {name!r} holds booleans; expected numbers")
    if pd.api.types.is_numeric_dtype(series):
        return series.to_numpy(dtype="float64", na_value=np.nan)
    numeric = pd.to_numeric(series, errors="coerce")
    bad = numeric.isna() & series.notna()
    if bad.any():
        row = int(np.flatnonzero(bad.to_numpy())[0])
        raise DataError(
            f"input file {source} column {name!r} has the non-numeric value {series.iloc[row]!r} "
            f"at data row {row + 1}; expected numbers"
        )
    return numeric.to_numpy(dtype="float64", na_value=np.nan)


def check_or_refuse(bars: dict[str, np.ndarray], tf_ms: int, source: str) -> list[dict]:
    """Run every rule; raise DataError naming the first problem, or return the gaps."""
    findings, gaps = check_bars(bars, tf_ms)
    if findings:
        more = f" (and {len(findings) - 1} more problem(s))" if len(findings) > 1 else ""
        hint = "; pass --sort to sort the rows by time" if findings[0].check == "order" else ""
        raise DataError(f"{source}: {findings[0].message}{more}; nothing was imported{hint}")
    return gaps


def source_entry(kind: str, path: Path) -> dict:
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    return {"kind": kind, "file": path.name, "bytes": path.stat().st_size, "sha256": digest}


def check_target(exchange: str, symbol: str, timeframe: str, lake: Lake, dataset_id: str | None,
                 provenance: str | Path | None, replace: bool) -> tuple[int, str, str | None]:
    """``(timeframe in ms, dataset id, provenance text)`` for a new dataset, before any file is read.

    Refuses a bad exchange/symbol/timeframe/id, an existing dataset without ``replace`` (nothing stored is
    overwritten by accident) and a missing provenance file.
    """
    check_exchange(exchange)
    check_symbol(symbol)
    tf_ms = timeframe_ms(timeframe)
    dataset_id = check_id(dataset_id or default_dataset_id(exchange, symbol, timeframe), "dataset id")
    if lake.exists(dataset_id) and not replace:
        raise UserError(
            f"dataset {dataset_id!r} already exists in lake {lake.root}; pass --replace to overwrite it "
            "or choose another --dataset-id"
        )
    if provenance is None:
        return tf_ms, dataset_id, None
    prov_path = Path(provenance)
    if not prov_path.is_file():
        raise UserError(f"provenance file {prov_path} does not exist")
    return tf_ms, dataset_id, prov_path.read_text(encoding="utf-8")


def import_file(
    path: str | Path,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    lake: Lake,
    dataset_id: str | None = None,
    provenance: str | Path | None = None,
    replace: bool = False,
    sort: bool = False,
    unconfirmed_last_bar: bool = False,
) -> ImportResult:
    """Read, normalise and check ``path``; write it as a dataset only when every rule passes.

    The dataset's writer lock is held from the existence check to the last write, so two imports into one
    id never both pass the check (the second is refused, naming the first).
    """
    check_exchange(exchange)
    check_symbol(symbol)
    timeframe_ms(timeframe)
    dataset_id = check_id(dataset_id or default_dataset_id(exchange, symbol, timeframe), "dataset id")
    with lake.writer(dataset_id):
        return _import_file(Path(path), exchange=exchange, symbol=symbol, timeframe=timeframe, lake=lake,
                            dataset_id=dataset_id, provenance=provenance, replace=replace, sort=sort,
                            unconfirmed_last_bar=unconfirmed_last_bar)


def _import_file(path: Path, *, exchange: str, symbol: str, timeframe: str, lake: Lake, dataset_id: str,
                 provenance: str | Path | None, replace: bool, sort: bool,
                 unconfirmed_last_bar: bool) -> ImportResult:
    tf_ms, dataset_id, provenance_text = check_target(exchange, symbol, timeframe, lake, dataset_id,
                                                      provenance, replace)
    frame = read_table_file(path)
    bars, dropped, unit = frame_to_bars(frame, str(path))
    if sort:
        order = np.argsort(bars["ts"], kind="stable")
        bars = {k: v[order] for k, v in bars.items()}
    gaps = check_or_refuse(bars, tf_ms, str(path))
    source = source_entry("import", path)
    note = (
        f"Imported with `tradelab data import` from `{path.name}` (sha256 `{source['sha256']}`, "
        f"{source['bytes']:,} bytes) as {exchange} {symbol} {timeframe} bars, {len(bars['ts']):,} rows. "
        f"Times were read as {unit}. Columns dropped: {', '.join(dropped) or 'none'}."
    )
    if unconfirmed_last_bar:
        note += (
            f" The last bar ({ms_to_iso(int(bars['ts'][-1]))}) is kept but marked unconfirmed "
            "(`unconfirmed_ts` in the manifest): it may have been a still-forming candle when the source "
            "was downloaded, and `tradelab data ingest` over that time replaces it with the exchange's "
            "final bar."
        )
    provenance_text = provenance_with_note(provenance_text, dataset_id, note,
                                           "Imported into the tradelab lake")
    previous = lake.read_manifest(dataset_id) if lake.exists(dataset_id) else None
    manifest = write_dataset(
        lake,
        dataset_id=dataset_id,
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        bars=bars,
        provenance_text=provenance_text,
        sources=[source],
        unconfirmed_ts=[int(bars["ts"][-1])] if unconfirmed_last_bar else None,
        previous=previous,
    )
    warnings = [describe_gaps(gaps)] if gaps else []
    if dropped:
        warnings.append(f"dropped column(s) {', '.join(dropped)}")
    if unconfirmed_last_bar:
        warnings.append(f"last bar {ms_to_iso(int(bars['ts'][-1]))} is marked unconfirmed")
    return ImportResult(manifest, dropped, unit, warnings)
