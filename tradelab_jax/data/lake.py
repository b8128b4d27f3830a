"""The Parquet lake on disk: layout, deterministic month files, manifests and reading bars back.

Layout under a lake root::

    lake/<exchange>/<BASE-QUOTE>/<timeframe>/<dataset_id>/<YYYY-MM>.parquet   one file per UTC month
    manifests/<dataset_id>.json                                             what the dataset is
    provenance/<dataset_id>.md                                              where the numbers came from
    locks/<dataset_id>.lock                                                 while a writer holds the dataset

Month files are written deterministically (fixed codec, level and encodings, one row group, no Arrow schema
or pandas metadata), so the same bars always give the same bytes and the same sha256.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import itertools
import json
import os
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tradelab_jax.data.schema import (
    BAR_COLUMNS,
    COLUMN_DESCRIPTIONS,
    check_exchange,
    check_extra_column,
    check_symbol,
    month_keys,
    ms_to_iso,
    symbol_dir,
    timeframe_ms,
)
from tradelab_jax.errors import BusyError, DataError, UserError
from tradelab_jax.io import (
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    describe_holder,
    exclusive_lock,
)
from tradelab_jax.paths import check_id, inside, resolve_lake

MANIFEST_FORMAT = "tradelab-lake/1"
REQUIRED_MANIFEST_KEYS = ("id", "exchange", "symbol", "timeframe", "columns", "rows", "files")

# Fixed writer settings: changing any of them changes every checksum in every manifest.
_PARQUET_OPTIONS: dict[str, Any] = {
    "compression": "zstd",
    "compression_level": 9,
    "use_dictionary": False,
    "column_encoding": {"ts": "DELTA_BINARY_PACKED"},
    "write_statistics": True,
    "store_schema": False,
    "version": "2.6",
    "data_page_version": "1.0",
}


@dataclass(frozen=True)
class Lake:
    """A lake root folder and the paths inside it."""

    root: Path

    @classmethod
    def at(cls, lake: str | os.PathLike | None = None) -> Lake:
        return cls(resolve_lake(lake))

    @property
    def manifests_dir(self) -> Path:
        return self.root / "manifests"

    def manifest_path(self, dataset_id: str) -> Path:
        return inside(self.root, "manifests", f"{check_id(dataset_id, 'dataset id')}.json")

    def provenance_path(self, dataset_id: str) -> Path:
        return inside(self.root, "provenance", f"{check_id(dataset_id, 'dataset id')}.md")

    def lock_path(self, dataset_id: str) -> Path:
        return inside(self.root, "locks", f"{check_id(dataset_id, 'dataset id')}.lock")

    @contextlib.contextmanager
    def writer(self, dataset_id: str, command: str | None = None) -> Iterator[None]:
        """Hold the dataset's one-writer lock for the block (every command that writes a dataset takes it).

        A second writer is refused at once with :class:`BusyError` naming the holder (pid, host, command,
        since when); a holder that died (even by SIGKILL) holds nothing, the kernel having dropped its lock.
        Not re-entrant: take it once, at the command's edge.
        """

        def busy(record: dict | None) -> BusyError:
            return BusyError(
                f"dataset {dataset_id!r} in lake {self.root} is being written by {describe_holder(record)}; "
                "wait for that command to finish (or stop it) and run this one again"
            )

        with exclusive_lock(self.lock_path(dataset_id), busy=busy, command=command):
            yield

    def dataset_rel_dir(self, exchange: str, symbol: str, timeframe: str, dataset_id: str) -> str:
        timeframe_ms(timeframe)
        return "/".join(
            [
                "lake",
                check_exchange(exchange),
                symbol_dir(symbol),
                timeframe,
                check_id(dataset_id, "dataset id"),
            ]
        )

    def ids(self) -> list[str]:
        """Dataset ids that have a manifest, sorted."""
        if not self.manifests_dir.is_dir():
            return []
        return sorted(p.stem for p in self.manifests_dir.glob("*.json") if not p.name.startswith("."))

    def exists(self, dataset_id: str) -> bool:
        return self.manifest_path(dataset_id).is_file()

    def file_path(self, rel: str) -> Path:
        """A manifest's relative file path resolved inside the lake (never outside it)."""
        return inside(self.root, *str(rel).split("/"))

    def read_manifest(self, dataset_id: str) -> dict:
        path = self.manifest_path(dataset_id)
        if not path.is_file():
            known = ", ".join(self.ids()) or "none"
            raise DataError(f"no dataset {dataset_id!r} in lake {self.root} (known datasets: {known})")
        try:
            manifest = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
            raise DataError(
                f"manifest {path} is not valid JSON ({err}); restore it or re-import the dataset"
            ) from None
        if not isinstance(manifest, dict):
            raise DataError(f"manifest {path} must hold a JSON object, not {type(manifest).__name__}")
        missing = [key for key in REQUIRED_MANIFEST_KEYS if key not in manifest]
        if missing:
            raise DataError(f"manifest {path} lacks the field(s) {', '.join(missing)}")
        if manifest["id"] != dataset_id:
            raise DataError(f"manifest {path} names dataset {manifest['id']!r}, expected {dataset_id!r}")
        if not isinstance(manifest["files"], list) or not all(
            isinstance(f, dict) and isinstance(f.get("path"), str) for f in manifest["files"]
        ):
            raise DataError(f"manifest {path} field 'files' must be a list of objects with a 'path'")
        return manifest


# --------------------------------------------------------------------------------------------- arrays


def normalise_bars(bars: dict[str, Any]) -> dict[str, np.ndarray]:
    """Bars as contiguous arrays in canonical column order: ts int64, OHLCV float64, then extras float64."""
    missing = [c for c in BAR_COLUMNS if c not in bars]
    if missing:
        raise UserError(f"bars lack the column(s) {', '.join(missing)}; required: {', '.join(BAR_COLUMNS)}")
    out = {"ts": np.ascontiguousarray(bars["ts"], dtype="int64")}
    for name in BAR_COLUMNS[1:]:
        out[name] = np.ascontiguousarray(bars[name], dtype="float64")
    for name in bars:
        if name not in out:
            out[check_extra_column(name)] = np.ascontiguousarray(bars[name], dtype="float64")
    lengths = {len(v) for v in out.values()}
    if len(lengths) > 1:
        raise UserError(f"bar columns have different lengths {sorted(lengths)}")
    return out


def take(bars: dict[str, np.ndarray], index: Any) -> dict[str, np.ndarray]:
    return {name: np.ascontiguousarray(values[index]) for name, values in bars.items()}


def concat(parts: Iterable[dict[str, np.ndarray]], columns: Iterable[str]) -> dict[str, np.ndarray]:
    parts = list(parts)
    columns = list(columns)
    if not parts:
        return {c: np.empty(0, dtype="int64" if c == "ts" else "float64") for c in columns}
    return {c: np.concatenate([p[c] for p in parts]) for c in columns}


def find_gaps(ts: np.ndarray, tf_ms: int) -> list[dict]:
    """Missing bars between consecutive timestamps, as inclusive ranges of missing bar open times.

    Each gap is ``{"from_ts", "to_ts", "missing_bars", "from", "to"}``: ``from_ts`` is the open time of the
    first missing bar, ``to_ts`` of the last missing bar (both included), ``from``/``to`` the same in ISO.
    """
    ts = np.asarray(ts, dtype="int64")
    if len(ts) < 2:
        return []
    step = np.diff(ts)
    where = np.nonzero(step > tf_ms)[0]
    gaps = []
    for i in where:
        first = int(ts[i]) + tf_ms
        last = int(ts[i + 1]) - tf_ms
        # Off-grid timestamps are reported by validation; count only whole missing bars here.
        missing = (last - first) // tf_ms + 1
        if missing <= 0:
            continue
        gaps.append(
            {
                "from_ts": first,
                "to_ts": last,
                "missing_bars": int(missing),
                "from": ms_to_iso(first),
                "to": ms_to_iso(last),
            }
        )
    return gaps


# --------------------------------------------------------------------------------------------- files


def parquet_bytes(bars: dict[str, np.ndarray]) -> bytes:
    """Deterministic Parquet bytes of one month of bars."""
    table = pa.table({name: pa.array(values) for name, values in bars.items()})
    buf = io.BytesIO()
    pq.write_table(table, buf, row_group_size=max(1, len(bars["ts"])), **_PARQUET_OPTIONS)
    return buf.getvalue()


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def read_month_file(path: Path, columns: list[str] | None = None) -> dict[str, np.ndarray]:
    """One month file as arrays, with its schema checked (DataError when unreadable or wrongly typed)."""
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise DataError(f"{path} does not exist; the manifest points to a missing file") from None
    except (OSError, pa.ArrowException) as err:
        raise DataError(f"{path} is not a readable Parquet file ({_first_line(err)})") from None
    check_table_schema(table.schema, path, columns)
    return {name: table.column(name).to_numpy() for name in table.column_names}


def check_table_schema(schema: pa.Schema, path: Path | str, columns: list[str] | None = None) -> None:
    names = list(schema.names)
    for name in BAR_COLUMNS:
        if name not in names:
            raise DataError(f"{path} has no column {name!r}; a bar file needs {', '.join(BAR_COLUMNS)}")
    for field in schema:
        want = pa.int64() if field.name == "ts" else pa.float64()
        if field.type != want:
            raise DataError(f"{path} column {field.name!r} has type {field.type}, expected {want}")
    if columns is not None and names != list(columns):
        raise DataError(f"{path} has columns {names}, but the manifest lists {list(columns)}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


# --------------------------------------------------------------------------------------------- writing


def columns_spec(bars: dict[str, np.ndarray]) -> list[dict]:
    return [
        {
            "name": name,
            "dtype": str(values.dtype),
            "description": COLUMN_DESCRIPTIONS.get(name, "extra per-bar value"),
        }
        for name, values in bars.items()
    ]


def provenance_with_note(provenance_text: str | None, dataset_id: str, note: str, heading: str) -> str:
    """The stored provenance: the user's text (if any), then our note under ``heading``."""
    if provenance_text is None:
        return f"# {dataset_id}\n\n{note}\n"
    return f"{provenance_text.rstrip()}\n\n## {heading}\n\n{note}\n"


def write_dataset(
    lake: Lake,
    *,
    dataset_id: str,
    exchange: str,
    symbol: str,
    timeframe: str,
    bars: dict[str, np.ndarray],
    provenance_text: str,
    sources: list[dict],
    unconfirmed_ts: list[int] | None = None,
    previous: dict | None = None,
    changed_months: set[str] | None = None,
    extra_fields: dict | None = None,
) -> dict:
    """Write (or rewrite) a dataset so that at every instant it is its old version or its new one, whole.

    New month files are written beside the files the current manifest reads (a month whose file would
    change goes to a staged name first), then the manifest is switched atomically, then staged files take
    their month's own name (hard link + rename, with a second manifest switch) and the old and leftover
    files are removed. ``bars`` must already be checked: sorted, unique, on the grid. With ``previous`` (the
    dataset's current manifest) and ``changed_months``, only those months are rewritten and the others keep
    their files and checksums. The caller holds :meth:`Lake.writer`.
    """
    check_id(dataset_id, "dataset id")
    check_exchange(exchange)
    check_symbol(symbol)
    tf_ms = timeframe_ms(timeframe)
    bars = normalise_bars(bars)
    ts = bars["ts"]
    if len(ts) == 0:
        raise DataError(f"dataset {dataset_id!r} would hold no bars; nothing was written")
    rel_dir = lake.dataset_rel_dir(exchange, symbol, timeframe, dataset_id)
    old_files = {f["path"]: f for f in (previous or {}).get("files", [])}
    written: list[str] = []
    try:
        files, staged = _write_month_files(lake, rel_dir, bars, old_files, changed_months, written)
    except BaseException:  # a full disk, an interrupt: take back the new files, the old version reads none
        for rel in written:
            if rel not in old_files:
                lake.file_path(rel).unlink(missing_ok=True)
        raise
    crash_test_hold("before-switch")
    first, last = int(ts[0]), int(ts[-1])
    manifest = {
        "format": MANIFEST_FORMAT,
        "id": dataset_id,
        "exchange": exchange,
        "symbol": symbol,
        "timeframe": timeframe,
        "timeframe_ms": tf_ms,
        "columns": columns_spec(bars),
        "first_ts": first,
        "last_ts": last,
        "first_bar": ms_to_iso(first),
        "last_bar": ms_to_iso(last),
        "rows": len(ts),
        "expected_rows": (last - first) // tf_ms + 1,
        "gaps": find_gaps(ts, tf_ms),
        "unconfirmed_ts": [int(t) for t in np.intersect1d(np.asarray(unconfirmed_ts or [], "int64"), ts)],
        "files": files,
        "provenance": {
            "file": f"provenance/{dataset_id}.md",
            "sources": sources,
            "text": provenance_text.rstrip() + "\n",
        },
    }
    if extra_fields:
        manifest.update(extra_fields)
    atomic_write_json(lake.manifest_path(dataset_id), manifest)  # the switch: from here on, the new version
    atomic_write_text(lake.provenance_path(dataset_id), provenance_text.rstrip() + "\n")
    if staged:
        crash_test_hold("after-switch")
        for entry in files:
            if entry["path"] in staged:
                _link_over(lake.file_path(entry["path"]), lake.file_path(staged[entry["path"]]))
                entry["path"] = staged[entry["path"]]
        atomic_write_json(lake.manifest_path(dataset_id), manifest)
    # Old files go only after the new manifest is in place, so a crash never leaves the manifest pointing at
    # a deleted file; so do the leftovers of a killed writer in the dataset's folder (under the lock, no one
    # else writes there).
    live = {f["path"] for f in files}
    for rel in [*old_files, *_dataset_folder_files(lake, rel_dir)]:
        if rel not in live:
            lake.file_path(rel).unlink(missing_ok=True)
    return manifest


def _write_month_files(
    lake: Lake,
    rel_dir: str,
    bars: dict[str, np.ndarray],
    old_files: dict[str, dict],
    changed_months: set[str] | None,
    written: list[str],
) -> tuple[list[dict], dict[str, str]]:
    """The manifest's file entries, each month's file written (or kept), and ``{staged path: own path}``;
    ``written`` collects the paths written so far.

    A month whose own file the current manifest lists with other bytes is written to a hidden staged name,
    so the current version stays whole until the manifest switches.
    """
    ts = bars["ts"]
    keys = month_keys(ts)
    bounds = np.flatnonzero(np.r_[True, keys[1:] != keys[:-1], True])
    files, staged = [], {}
    for lo, hi in itertools.pairwise(bounds):
        month = str(keys[lo])
        rel = f"{rel_dir}/{month}.parquet"
        path = lake.file_path(rel)
        keep = (
            changed_months is not None
            and month not in changed_months
            and rel in old_files
            and old_files[rel].get("rows") == int(hi - lo)
            and path.is_file()
        )
        if keep:
            entry = dict(old_files[rel])
        else:
            data = parquet_bytes(take(bars, slice(lo, hi)))
            sha = hashlib.sha256(data).hexdigest()
            target = rel
            if rel in old_files and old_files[rel].get("sha256") != sha:
                target = f"{rel_dir}/.{month}.{sha[:16]}.parquet"
                staged[target] = rel
            atomic_write_bytes(lake.file_path(target), data)
            written.append(target)
            entry = {"path": target, "sha256": sha, "bytes": len(data)}
        entry.update(month=month, rows=int(hi - lo), first_ts=int(ts[lo]), last_ts=int(ts[hi - 1]))
        files.append(
            {k: entry[k] for k in ("path", "month", "rows", "first_ts", "last_ts", "bytes", "sha256")}
        )
    return files, staged


def _link_over(src: Path, dest: Path) -> None:
    """Make ``dest`` the same file as ``src`` atomically, keeping ``src`` (a second name, no copy)."""
    tmp = dest.with_name(f".{dest.name}.link.tmp")
    tmp.unlink(missing_ok=True)
    os.link(src, tmp)
    os.replace(tmp, dest)


def _dataset_folder_files(lake: Lake, rel_dir: str) -> list[str]:
    """Month files (own or staged names) and temporary files in the dataset's folder, as lake paths."""
    folder = lake.file_path(rel_dir)
    if not folder.is_dir():
        return []
    return [f"{rel_dir}/{p.name}" for p in folder.iterdir()
            if p.is_file() and (p.name.endswith(".parquet") or p.name.endswith(".tmp"))]


def crash_test_hold(stage: str) -> None:
    """For the crash tests only: with ``TRADELAB_TEST_LAKE_HOLD=<stage>:<file>``, create ``<file>`` at that
    stage of a write and wait (at most 120 s) until the test removes it (or kills this process)."""
    spec = os.environ.get("TRADELAB_TEST_LAKE_HOLD", "")
    want, _, marker = spec.partition(":")
    if want != stage or not marker:
        return
    Path(marker).write_text(str(os.getpid()), encoding="utf-8")
    deadline = time.monotonic() + 120
    while Path(marker).exists() and time.monotonic() < deadline:
        time.sleep(0.02)


# --------------------------------------------------------------------------------------------- reading


def read_bars(
    lake: Lake,
    manifest: dict,
    start_ms: int | None = None,
    end_ms: int | None = None,
    verify: bool = True,
) -> dict[str, np.ndarray]:
    """The dataset's bars with ``start_ms <= ts < end_ms``, checking each file against the manifest."""
    columns = [c["name"] for c in manifest["columns"]]
    parts = []
    for entry in manifest["files"]:
        first, last = entry.get("first_ts"), entry.get("last_ts")
        if start_ms is not None and last is not None and last < start_ms:
            continue
        if end_ms is not None and first is not None and first >= end_ms:
            continue
        path = lake.file_path(entry["path"])
        if not path.is_file():
            raise DataError(
                f"dataset {manifest['id']!r}: file {entry['path']} listed in its manifest does not exist "
                f"in lake {lake.root}; run `tradelab data validate {manifest['id']}`"
            )
        if verify and sha256_file(path) != entry.get("sha256"):
            raise DataError(
                f"dataset {manifest['id']!r}: file {entry['path']} does not match the sha256 in its manifest "
                f"(it was changed or corrupted); run `tradelab data validate {manifest['id']}`"
            )
        part = read_month_file(path, columns)
        if start_ms is not None or end_ms is not None:
            mask = np.ones(len(part["ts"]), dtype=bool)
            if start_ms is not None:
                mask &= part["ts"] >= start_ms
            if end_ms is not None:
                mask &= part["ts"] < end_ms
            part = take(part, mask)
        parts.append(part)
    return concat(parts, columns)
