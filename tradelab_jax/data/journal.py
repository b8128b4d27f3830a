"""The streamer's write-ahead journal: closed candles made durable before they reach the month files.

``journal/<dataset_id>.jsonl`` in the lake holds one JSON line per closed candle
(``{"ts", "open", "high", "low", "close", "volume"}``, floats written with Python's shortest round-trip
repr, so a replayed bar is bit-identical to the one streamed). A batch is one ``write`` followed by one
``fsync``: once :meth:`Journal.append` returns, a kill at any instant (even SIGKILL or a power loss after the
fsync) keeps those candles. Compaction merges them into the month Parquet files (atomically, with the
manifest) and only then empties the journal, so a kill between the two replays candles that are already
stored: the replay compares them with the stored bars and changes nothing. A kill in the middle of a
``write`` leaves at most one torn last line, which :meth:`Journal.read` drops (that candle's fsync never
returned, so nothing was promised for it).
"""

from __future__ import annotations

import contextlib
import json
import os
from dataclasses import dataclass
from pathlib import Path

from tradelab_jax.data.lake import Lake
from tradelab_jax.data.schema import BAR_COLUMNS
from tradelab_jax.errors import DataError
from tradelab_jax.io import append_durable
from tradelab_jax.paths import check_id, inside

JOURNAL_DIR = "journal"


def journal_path(lake: Lake, dataset_id: str) -> Path:
    return inside(lake.root, JOURNAL_DIR, f"{check_id(dataset_id, 'dataset id')}.jsonl")


@dataclass
class Journal:
    """One dataset's journal file; the caller holds the dataset's :meth:`Lake.writer` lock."""

    path: Path
    torn: int = 0  # torn last lines dropped by read() (a write cut by a kill)

    @classmethod
    def of(cls, lake: Lake, dataset_id: str) -> Journal:
        return cls(journal_path(lake, dataset_id))

    def append(self, rows: list[list]) -> None:
        """Append closed candles ``[ts_ms, open, high, low, close, volume]``, fsynced (durable on return).

        On a full disk the part written is cut off again, so the file still ends with a whole line.
        """
        if not rows:
            return
        data = "".join(
            json.dumps(dict(zip(BAR_COLUMNS, (int(r[0]), *map(float, r[1:6])), strict=True)), allow_nan=False)
            + "\n"
            for r in rows
        ).encode("utf-8")
        self.path.parent.mkdir(parents=True, exist_ok=True)
        start = append_durable(self.path, data)
        if start == 0:  # a new file: make its directory entry durable too
            _fsync_dir(self.path.parent)

    def read(self) -> list[list]:
        """The journaled candles in file order; a torn last line is dropped (counted in ``torn``)."""
        try:
            text = self.path.read_bytes().decode("utf-8", errors="replace")
        except FileNotFoundError:
            return []
        lines = text.split("\n")
        rows = []
        for i, line in enumerate(lines):
            if not line.strip():
                continue
            try:
                rec = json.loads(line)
                row = [int(rec["ts"]), *(float(rec[c]) for c in BAR_COLUMNS[1:])]
            except (ValueError, KeyError, TypeError):
                if i == len(lines) - 1:  # the last line without its newline: a write cut short
                    self.torn += 1
                    continue
                raise DataError(
                    f"journal {self.path} line {i + 1} is not a candle record; move the file away to start "
                    "without it (its candles are then fetched again from the exchange's REST API)"
                ) from None
            rows.append(row)
        return rows

    def reset(self) -> None:
        """Empty the journal (after its candles are compacted into the month files)."""
        if not self.path.exists():
            return
        with open(self.path, "rb+") as f:
            f.truncate(0)
            f.flush()
            os.fsync(f.fileno())


def _fsync_dir(folder: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
