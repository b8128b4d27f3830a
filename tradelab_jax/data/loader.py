"""Reading datasets out of the lake: :func:`load` -> :class:`MarketData`, time splits, and listing."""

from __future__ import annotations

import copy
import math
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradelab_jax.data.lake import Lake, read_bars, sha256_file, take
from tradelab_jax.data.schema import ms_to_iso, parse_time, timeframe_ms
from tradelab_jax.errors import DataError, UserError

DEFAULT_DATASET = "binance_btcusdt_1m"
SPLITS = ("train", "val", "test")
DEFAULT_FRACTIONS = (0.7, 0.15, 0.15)


@dataclass(frozen=True)
class MarketData:
    """Bars of one dataset (or a time slice of it) plus the dataset's manifest.

    ``bars`` maps ``ts`` (int64 bar open time, UTC epoch ms), ``open``, ``high``, ``low``, ``close``,
    ``volume`` and any extra columns (float64) to 1-D arrays of equal length ``T``, in time order.
    """

    dataset_id: str
    bars: dict[str, np.ndarray]
    manifest: dict

    def __len__(self) -> int:
        return len(self.bars["ts"])

    @property
    def ts(self) -> np.ndarray:
        return self.bars["ts"]

    @property
    def columns(self) -> tuple[str, ...]:
        return tuple(self.bars)

    @property
    def timeframe_ms(self) -> int:
        return int(self.manifest["timeframe_ms"])

    def between(self, start: Any = None, end: Any = None) -> MarketData:
        """Bars with ``start <= ts < end`` (dates, datetimes or epoch ms; ``None`` leaves that side open)."""
        ts = self.ts
        lo = 0 if start is None else int(np.searchsorted(ts, parse_time(start, "start"), "left"))
        hi = len(ts) if end is None else int(np.searchsorted(ts, parse_time(end, "end"), "left"))
        return self._slice(lo, max(lo, hi), {"start": _iso_or_none(start), "end": _iso_or_none(end)})

    def split(
        self,
        name: str,
        fractions: Sequence[float] = DEFAULT_FRACTIONS,
        *,
        dates: Sequence[Any] | None = None,
    ) -> MarketData:
        """The ``train``, ``val`` or ``test`` part, in time order and without overlap.

        By default the parts are ``fractions`` of the bars. With ``dates=(val_start, test_start)`` they are
        cut at those instants instead: train is before ``val_start``, val up to ``test_start``, test from it.
        """
        if dates is None:
            lo, hi = split_bounds(len(self), name, fractions)
            how = {"split": name, "fractions": [float(f) for f in fractions]}
        else:
            _check_split_name(name)
            if len(dates) != 2:
                raise UserError(f"split dates must be (val_start, test_start), got {len(dates)} value(s)")
            val_ms, test_ms = parse_time(dates[0], "val start"), parse_time(dates[1], "test start")
            if val_ms > test_ms:
                raise UserError(
                    f"split dates must be in order: val start {ms_to_iso(val_ms)} is after "
                    f"test start {ms_to_iso(test_ms)}"
                )
            cuts = [0, *np.searchsorted(self.ts, [val_ms, test_ms], "left").tolist(), len(self)]
            index = SPLITS.index(name)
            lo, hi = int(cuts[index]), int(cuts[index + 1])
            if lo == hi:
                raise UserError(
                    f"split {name!r} of dataset {self.dataset_id!r} is empty with dates "
                    f"{ms_to_iso(val_ms)} and {ms_to_iso(test_ms)}; the data covers "
                    f"{_range_text(self.ts)}"
                )
            how = {"split": name, "dates": [ms_to_iso(val_ms), ms_to_iso(test_ms)]}
        return self._slice(lo, hi, how)

    def _slice(self, lo: int, hi: int, how: dict) -> MarketData:
        manifest = copy.deepcopy(self.manifest)
        bars = take(self.bars, slice(lo, hi))
        selection = dict(manifest.get("selection") or {})
        selection.update(how)
        selection.update({"rows": hi - lo, "first_bar": _first_iso(bars), "last_bar": _last_iso(bars)})
        manifest["selection"] = selection
        return MarketData(self.dataset_id, bars, manifest)


def _check_split_name(name: str) -> None:
    if name not in SPLITS:
        raise UserError(f"invalid split {name!r}: use one of {', '.join(SPLITS)}")


def split_bounds(n_bars: int, name: str, fractions: Sequence[float] = DEFAULT_FRACTIONS) -> tuple[int, int]:
    """Bar indices ``(start, stop)`` of split ``name`` when ``n_bars`` are cut by ``fractions`` in time order.

    Boundaries are ``round(n * f_train)`` and ``round(n * (f_train + f_val))``; test takes the rest, so the
    three parts always tile ``[0, n_bars)`` exactly.
    """
    _check_split_name(name)
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or any(not math.isfinite(f) or f < 0 for f in fractions):
        raise UserError(f"split fractions must be three numbers >= 0 (train, val, test), got {fractions}")
    if abs(sum(fractions) - 1.0) > 1e-6:
        raise UserError(f"split fractions must add up to 1, got {fractions} (sum {sum(fractions):g})")
    if n_bars < 0:
        raise UserError(f"n_bars must be >= 0, got {n_bars}")
    cut1 = round(n_bars * fractions[0])
    cut2 = max(cut1, min(n_bars, round(n_bars * (fractions[0] + fractions[1]))))
    cuts = (0, cut1, cut2, n_bars)
    index = SPLITS.index(name)
    start, stop = cuts[index], cuts[index + 1]
    if start >= stop:
        raise UserError(f"split {name!r} is empty: {n_bars} bars cut by fractions {fractions}")
    return start, stop


def load(
    dataset_id: str = DEFAULT_DATASET,
    start: Any = None,
    end: Any = None,
    lake: str | os.PathLike | None = None,
    *,
    verify: bool = True,
) -> MarketData:
    """Bars of ``dataset_id`` with ``start <= ts < end`` (dates, datetimes or epoch ms; ``None`` = all).

    Each file is checked against the sha256 in the manifest unless ``verify=False``. Bars listed in
    ``manifest["unconfirmed_ts"]`` may not be final (a candle still forming at download); they are kept,
    see docs/data.md.
    """
    the_lake = Lake.at(lake)
    manifest = the_lake.read_manifest(dataset_id)
    start_ms = None if start is None else parse_time(start, "start")
    end_ms = None if end is None else parse_time(end, "end")
    if start_ms is not None and end_ms is not None and start_ms >= end_ms:
        raise UserError(f"start {ms_to_iso(start_ms)} must be before end {ms_to_iso(end_ms)}")
    bars = read_bars(the_lake, manifest, start_ms, end_ms, verify=verify)
    if len(bars["ts"]) == 0:
        raise DataError(
            f"dataset {dataset_id!r} has no bars between {ms_to_iso(start_ms) or 'its start'} and "
            f"{ms_to_iso(end_ms) or 'its end'}; it covers {manifest.get('first_bar')} to "
            f"{manifest.get('last_bar')}"
        )
    if start_ms is not None or end_ms is not None:
        manifest = copy.deepcopy(manifest)
        manifest["selection"] = {
            "start": ms_to_iso(start_ms),
            "end": ms_to_iso(end_ms),
            "rows": len(bars["ts"]),
            "first_bar": _first_iso(bars),
            "last_bar": _last_iso(bars),
        }
    return MarketData(dataset_id, bars, manifest)


def list_datasets(lake: str | os.PathLike | None = None, *, verify: bool = True) -> list[dict]:
    """One summary per dataset: id, market, range, rows, gaps and a quick status.

    The status is ``ok`` when the manifest parses and every listed file exists with the recorded sha256;
    otherwise it names the first problem (``tradelab data validate`` runs every rule).
    """
    the_lake = Lake.at(lake)
    out = []
    for dataset_id in the_lake.ids():
        try:
            manifest = the_lake.read_manifest(dataset_id)
        except UserError as err:
            out.append({"id": dataset_id, "status": "bad manifest", "problem": str(err)})
            continue
        status, problem = "ok", None
        for entry in manifest["files"]:
            try:
                path = the_lake.file_path(entry["path"])
            except UserError as err:
                status, problem = "bad manifest", str(err)
                break
            if not path.is_file():
                status, problem = "missing file", f"{entry['path']} does not exist"
                break
            if verify and sha256_file(path) != entry.get("sha256"):
                status, problem = "checksum mismatch", f"{entry['path']} differs from its manifest sha256"
                break
        gaps = manifest.get("gaps") or []
        item = {
            "id": dataset_id,
            "exchange": manifest.get("exchange"),
            "symbol": manifest.get("symbol"),
            "timeframe": manifest.get("timeframe"),
            "first_bar": manifest.get("first_bar"),
            "last_bar": manifest.get("last_bar"),
            "rows": manifest.get("rows"),
            "gaps": len(gaps),
            "missing_bars": sum(int(g.get("missing_bars", 0)) for g in gaps),
            "files": len(manifest["files"]),
            "status": status,
        }
        if problem:
            item["problem"] = problem
        out.append(item)
    return out


def _first_iso(bars: dict[str, np.ndarray]) -> str | None:
    return ms_to_iso(int(bars["ts"][0])) if len(bars["ts"]) else None


def _last_iso(bars: dict[str, np.ndarray]) -> str | None:
    return ms_to_iso(int(bars["ts"][-1])) if len(bars["ts"]) else None


def _iso_or_none(value: Any) -> str | None:
    return None if value is None else ms_to_iso(parse_time(value))


def _range_text(ts: np.ndarray) -> str:
    return f"{ms_to_iso(int(ts[0]))} to {ms_to_iso(int(ts[-1]))}" if len(ts) else "nothing"


__all__ = ["DEFAULT_DATASET", "MarketData", "list_datasets", "load", "split_bounds", "timeframe_ms"]
