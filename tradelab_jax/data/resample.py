"""Resampling bars to a longer timeframe, and building bars from a ccxt trades file."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd

from tradelab_jax.data.importer import check_target, read_table_file, source_entry, to_epoch_ms, to_float
from tradelab_jax.data.lake import Lake, provenance_with_note, read_bars, write_dataset
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

# 1970-01-01 was a Thursday; weekly buckets start on Monday 00:00 UTC like exchange weekly candles.
_WEEK_MS = 7 * 86_400_000
_MONDAY_OFFSET_MS = 4 * 86_400_000


def bucket_start(ts: np.ndarray, period_ms: int) -> np.ndarray:
    """Open time of the ``period_ms`` bucket holding each timestamp (UTC-aligned; weeks start Monday)."""
    offset = _MONDAY_OFFSET_MS if period_ms % _WEEK_MS == 0 else 0
    shifted = ts - offset
    return shifted - shifted % period_ms + offset


def _is_summed(name: str) -> bool:
    return name.endswith("volume") or name == "trades"


def resample_bars(
    bars: dict[str, np.ndarray], from_ms: int, to_ms: int
) -> tuple[dict[str, np.ndarray], list[str]]:
    """Aggregate sorted, unique bars to ``to_ms`` buckets, keeping only complete buckets.

    open = first, high = max, low = min, close = last, volume (and extras named ``*volume`` or ``trades``)
    = sum. A bucket is complete when it holds all ``to_ms / from_ms`` bars. Returns (bars, dropped extras).
    """
    if to_ms <= from_ms or to_ms % from_ms:
        raise UserError(
            f"cannot resample {from_ms // 1000}s bars to {to_ms // 1000}s: the target must be a whole "
            "multiple of the source timeframe and longer"
        )
    per_bucket = to_ms // from_ms
    ts = bars["ts"]
    dropped = [name for name in bars if name not in BAR_COLUMNS and not _is_summed(name)]
    if len(ts) == 0:
        return {k: v[:0] for k, v in bars.items() if k not in dropped}, dropped
    buckets = bucket_start(ts, to_ms)
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    counts = np.diff(np.r_[starts, len(ts)])
    complete = counts == per_bucket
    starts_c = starts[complete]
    ends_c = starts_c + per_bucket - 1
    out = {
        "ts": buckets[starts_c],
        "open": bars["open"][starts_c],
        "high": np.maximum.reduceat(bars["high"], starts)[complete],
        "low": np.minimum.reduceat(bars["low"], starts)[complete],
        "close": bars["close"][ends_c],
        "volume": np.add.reduceat(bars["volume"], starts)[complete],
    }
    for name, values in bars.items():
        if name not in out and name not in dropped:
            out[name] = np.add.reduceat(values, starts)[complete]
    return {k: np.ascontiguousarray(v) for k, v in out.items()}, dropped


def _resampled_id(source_id: str, source_tf: str, target_tf: str) -> str:
    suffix = f"_{source_tf}"
    if source_id.endswith(suffix):
        return source_id[: -len(suffix)] + f"_{target_tf}"
    if f"{suffix}_" in source_id:
        return source_id.replace(f"{suffix}_", f"_{target_tf}_", 1)
    return f"{source_id}_{target_tf}"


def resample_dataset(
    dataset_id: str,
    to: str,
    *,
    lake: Lake,
    out_id: str | None = None,
    replace: bool = False,
) -> dict:
    """Write the resampled copy of a lake dataset as a new dataset and return its manifest (holding the new
    dataset's writer lock)."""
    manifest = lake.read_manifest(dataset_id)
    out_id = check_id(out_id or _resampled_id(dataset_id, manifest["timeframe"], to), "dataset id")
    with lake.writer(out_id):
        return _resample_dataset(dataset_id, manifest, to, lake=lake, out_id=out_id, replace=replace)


def _resample_dataset(dataset_id: str, manifest: dict, to: str, *, lake: Lake, out_id: str,
                      replace: bool) -> dict:
    source_tf = manifest["timeframe"]
    from_ms, to_ms = timeframe_ms(source_tf), timeframe_ms(to)
    if out_id == dataset_id:
        raise UserError(f"the resampled dataset needs an id other than its source {dataset_id!r}")
    if lake.exists(out_id) and not replace:
        raise UserError(
            f"dataset {out_id!r} already exists in lake {lake.root}; pass --replace or choose another "
            "--dataset-id"
        )
    bars = read_bars(lake, manifest)
    findings, _ = check_bars(bars, from_ms)
    if findings:
        raise DataError(
            f"dataset {dataset_id!r} fails validation ({findings[0].message}); fix it before resampling"
        )
    out, dropped = resample_bars(bars, from_ms, to_ms)
    if len(out["ts"]) == 0:
        raise DataError(f"dataset {dataset_id!r} has no complete {to} bucket; nothing was written")
    unconfirmed = np.asarray(manifest.get("unconfirmed_ts") or [], dtype="int64")
    out_unconfirmed = sorted({int(b) for b in bucket_start(unconfirmed, to_ms)}) if len(unconfirmed) else None
    note = (
        f"Resampled with `tradelab data resample {dataset_id} --to {to}` from {source_tf} bars: open=first, "
        "high=max, low=min, close=last, volume=sum; only complete buckets were kept"
        + (f"; extra columns dropped: {', '.join(dropped)}" if dropped else "")
        + "."
    )
    source_text = (manifest.get("provenance") or {}).get("text", "")
    text = f"# {out_id}\n\n{note}\n"
    if source_text:
        text += f"\n## Provenance of the source dataset {dataset_id}\n\n{_demote_headings(source_text)}"
    sources = [
        {
            "kind": "resample",
            "dataset": dataset_id,
            "from_timeframe": source_tf,
            "to_timeframe": to,
            "files": [{"path": f["path"], "sha256": f["sha256"]} for f in manifest["files"]],
        }
    ]
    previous = lake.read_manifest(out_id) if lake.exists(out_id) else None
    return write_dataset(
        lake,
        dataset_id=out_id,
        exchange=manifest["exchange"],
        symbol=manifest["symbol"],
        timeframe=to,
        bars=out,
        provenance_text=text,
        sources=sources,
        unconfirmed_ts=out_unconfirmed,
        previous=previous,
    )


def _demote_headings(text: str) -> str:
    return re.sub(r"^(#+) ", lambda m: "#" * min(6, len(m.group(1)) + 2) + " ", text, flags=re.M)


# --------------------------------------------------------------------------------------------- trades

TRADE_TIME = ("ts", "timestamp", "time", "datetime", "date")
TRADE_PRICE = ("price", "px")
TRADE_AMOUNT = ("amount", "qty", "quantity", "size", "base_amount")
TRADE_ID = ("trade_id", "id", "tid")


def _column(frame: pd.DataFrame, aliases: tuple[str, ...], what: str, source: str, required: bool = True):
    lower = {str(c).strip().lower(): c for c in frame.columns}
    for alias in aliases:
        if alias in lower:
            return lower[alias]
    if required:
        raise DataError(
            f"trades file {source} has no {what} column (accepted names: {', '.join(aliases)}; "
            f"found: {', '.join(map(str, frame.columns))})"
        )
    return None


def trades_to_bars(
    frame: pd.DataFrame, tf_ms: int, *, empty: str = "fill", source: str = "trades"
) -> tuple[dict, list[str]]:
    """ccxt trades (time, side, price, amount) -> bars with ``taker_buy_volume`` and ``taker_sell_volume``.

    ``side`` is the taker's side (ccxt's convention). Bars without trades are flat at the previous close with
    zero volume (``empty="fill"``) or left out (``empty="skip"``). Returns (bars, notes).
    """
    if empty not in ("fill", "skip"):
        raise UserError(f"invalid --empty {empty!r}: use fill or skip")
    if len(frame) == 0:
        raise DataError(f"trades file {source} has no rows")
    notes: list[str] = []
    time_col = _column(frame, TRADE_TIME, "time", source)
    ts, _ = to_epoch_ms(frame[time_col], str(time_col), source)
    price = to_float(frame[_column(frame, TRADE_PRICE, "price", source)], "price", source)
    amount = to_float(frame[_column(frame, TRADE_AMOUNT, "amount", source)], "amount", source)
    side_col = _column(frame, ("side", "taker_side"), "side", source)
    side = frame[side_col].astype(str).str.strip().str.lower().to_numpy()
    bad = np.flatnonzero(~np.isin(side, ["buy", "sell"]))
    if len(bad):
        raise DataError(
            f"trades file {source} column {side_col!r} has {frame[side_col].iloc[bad[0]]!r} at data row "
            f"{bad[0] + 1}; expected buy or sell (the taker's side)"
        )
    for name, values, ok in (("price", price, price > 0), ("amount", amount, amount >= 0)):
        wrong = np.flatnonzero(~(np.isfinite(values) & ok))
        if len(wrong):
            raise DataError(
                f"trades file {source} column {name!r} has the invalid value {values[wrong[0]]!r} at data "
                f"row {wrong[0] + 1}; expected a finite number {'> 0' if name == 'price' else '>= 0'}"
            )
    id_col = _column(frame, TRADE_ID, "trade id", source, required=False)
    keys = [ts]
    if id_col is not None and pd.api.types.is_integer_dtype(frame[id_col]):
        ids = frame[id_col].to_numpy(dtype="int64")
        keys = [ids, ts]  # lexsort: last key is primary
        uniq = np.unique(ids)
        holes = int(uniq[-1] - uniq[0] + 1 - len(uniq))
        if len(uniq) != len(ids):
            raise DataError(f"trades file {source} has {len(ids) - len(uniq)} duplicate trade id(s)")
        if holes:
            notes.append(
                f"{holes} trade id(s) are missing between {uniq[0]} and {uniq[-1]} (trades not in the file)"
            )
    order = np.lexsort(keys)
    if np.any(order != np.arange(len(order))):
        notes.append("trades were not in time order and were sorted")
    ts, price, amount, side = ts[order], price[order], amount[order], side[order]
    buckets = ts - ts % tf_ms
    starts = np.flatnonzero(np.r_[True, buckets[1:] != buckets[:-1]])
    ends = np.r_[starts[1:], len(ts)] - 1
    is_buy = side == "buy"
    bars = {
        "ts": buckets[starts],
        "open": price[starts],
        "high": np.maximum.reduceat(price, starts),
        "low": np.minimum.reduceat(price, starts),
        "close": price[ends],
        "volume": np.add.reduceat(amount, starts),
        "taker_buy_volume": np.add.reduceat(np.where(is_buy, amount, 0.0), starts),
        "taker_sell_volume": np.add.reduceat(np.where(is_buy, 0.0, amount), starts),
    }
    if empty == "fill" and len(starts) > 1:
        grid = np.arange(bars["ts"][0], bars["ts"][-1] + tf_ms, tf_ms, dtype="int64")
        pos = np.searchsorted(grid, bars["ts"])
        have = np.zeros(len(grid), dtype=bool)
        have[pos] = True
        # Index of the latest real bar at or before each grid point, for the previous close.
        last_real = np.maximum.accumulate(np.where(have, np.arange(len(grid)), -1))
        close_full = np.empty(len(grid))
        close_full[pos] = bars["close"]
        prev_close = close_full[last_real]
        filled = {"ts": grid}
        for name in ("open", "high", "low", "close"):
            col = prev_close.copy()
            col[pos] = bars[name]
            filled[name] = col
        for name in ("volume", "taker_buy_volume", "taker_sell_volume"):
            col = np.zeros(len(grid))
            col[pos] = bars[name]
            filled[name] = col
        empty_bars = len(grid) - len(pos)
        if empty_bars:
            notes.append(
                f"{empty_bars} bar(s) without trades were filled flat at the previous close with zero volume"
            )
        bars = filled
    return bars, notes


def trades_file_to_dataset(
    path: str | Path,
    *,
    exchange: str,
    symbol: str,
    timeframe: str,
    lake: Lake,
    dataset_id: str | None = None,
    empty: str = "fill",
    provenance: str | Path | None = None,
    replace: bool = False,
) -> tuple[dict, list[str]]:
    """Build bars from a trades file and write them as a dataset; the last bar is marked unconfirmed.

    The dataset's writer lock is held from the existence check to the last write.
    """
    check_exchange(exchange)
    check_symbol(symbol)
    timeframe_ms(timeframe)
    dataset_id = check_id(dataset_id or default_dataset_id(exchange, symbol, timeframe), "dataset id")
    with lake.writer(dataset_id):
        return _trades_file_to_dataset(Path(path), exchange=exchange, symbol=symbol, timeframe=timeframe,
                                       lake=lake, dataset_id=dataset_id, empty=empty, provenance=provenance,
                                       replace=replace)


def _trades_file_to_dataset(path: Path, *, exchange: str, symbol: str, timeframe: str, lake: Lake,
                            dataset_id: str, empty: str, provenance: str | Path | None,
                            replace: bool) -> tuple[dict, list[str]]:
    tf_ms, dataset_id, provenance_text = check_target(exchange, symbol, timeframe, lake, dataset_id,
                                                      provenance, replace)
    frame = read_table_file(path)
    bars, notes = trades_to_bars(frame, tf_ms, empty=empty, source=str(path))
    findings, gaps = check_bars(bars, tf_ms)
    if findings:
        raise DataError(f"bars built from {path} fail validation: {findings[0].message}; nothing was written")
    if gaps:
        notes.append(describe_gaps(gaps))
    last = int(bars["ts"][-1])
    source = source_entry("trades-to-bars", path)
    empty_text = "filled flat at the previous close with zero volume" if empty == "fill" else "left out"
    note = (
        f"Built with `tradelab data trades-to-bars` from `{path.name}` (sha256 `{source['sha256']}`, "
        f"{len(frame):,} trades) as {exchange} {symbol} {timeframe} bars: open/close = first/last trade "
        "price, high/low = max/min price, volume = sum of amounts, taker_buy_volume / taker_sell_volume = "
        f"sum of amounts whose taker side was buy / sell; bars without trades were {empty_text}. "
        f"The last bar ({ms_to_iso(last)}) is marked unconfirmed because the file may end inside it."
        + (" " + " ".join(n[0].upper() + n[1:] + "." for n in notes) if notes else "")
    )
    text = provenance_with_note(provenance_text, dataset_id, note, "Bars built for the tradelab lake")
    previous = lake.read_manifest(dataset_id) if lake.exists(dataset_id) else None
    manifest = write_dataset(
        lake,
        dataset_id=dataset_id,
        exchange=exchange,
        symbol=symbol,
        timeframe=timeframe,
        bars=bars,
        provenance_text=text,
        sources=[source],
        unconfirmed_ts=[last],
        previous=previous,
    )
    return manifest, notes
