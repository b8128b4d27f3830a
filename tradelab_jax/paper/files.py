"""The paper session directory: file names, the account journal and reading a session back (no JAX).

A paper session directory (docs/paper.md) holds ``paper.json`` (what is traded, by which run, from which
first decision bar), ``account.jsonl`` (one fsynced line per traded bar: the bar, the step's telemetry, the
account after it and the carried PRNG key: everything a restart resumes from), ``status.json`` (the run
directory's lifecycle, ``kind: paper``), ``telemetry.parquet`` and ``summary.json`` (the evaluation's
schema, rebuilt from the journal) and ``equity.png``. The UI reads sessions through :func:`read_session`.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
from pathlib import Path
from typing import Any

PAPER_FILE = "paper.json"
JOURNAL_FILE = "account.jsonl"
SUMMARY_FILE = "summary.json"
KIND = "paper"  # status.json's "kind" of a paper session
SPLIT = "paper"  # the telemetry's split column


def is_paper_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / PAPER_FILE).is_file()


def json_value(value: Any) -> Any:
    """A telemetry or state value as strict JSON: NaN is null; numpy scalars become Python numbers
    (a float32 widened to a Python float is exact, so it reads back to the same float32)."""
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def read_journal(session_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """The journal's records, oldest first. A last line cut short by a kill is skipped (it was never
    acknowledged: its bar is traded again on restart); a damaged line before the last is refused."""
    path = Path(session_dir) / JOURNAL_FILE
    if not path.is_file():
        return []
    lines = path.read_bytes().split(b"\n")
    records = []
    for i, line in enumerate(lines):
        if not line.strip():
            continue
        try:
            records.append(json.loads(line))
        except (json.JSONDecodeError, UnicodeDecodeError):
            if i == len(lines) - 1:  # no newline after it: a partial write
                break
            raise ValueError(f"{path}, line {i + 1}, is not a JSON record; the journal is damaged") from None
    return records


def read_session(session_dir: str | os.PathLike) -> dict[str, Any]:
    """What a viewer shows of a paper session: ``paper`` (paper.json), ``status`` (status.json or None),
    ``summary`` (summary.json or None) and the journal as columns: ``ts`` (epoch ms of each marked bar),
    ``equity``, ``position``, ``close``, ``action`` and ``filled``, plus ``trades`` (the rows where an order
    filled or a stop was hit: ts, side, size, price, fee). Cheap enough to poll every few seconds."""
    session_dir = Path(session_dir)
    paper = json.loads((session_dir / PAPER_FILE).read_text(encoding="utf-8"))
    out: dict[str, Any] = {"dir": str(session_dir), "paper": paper, "status": None, "summary": None}
    for key, name in (("status", "status.json"), ("summary", SUMMARY_FILE)):
        with contextlib.suppress(OSError, ValueError):
            out[key] = json.loads((session_dir / name).read_text(encoding="utf-8"))
    records = read_journal(session_dir)
    rows = [r["row"] for r in records]
    out["ts"] = [r["ts"] for r in records]
    out["close"] = [r["bar"]["close"] for r in records]
    for col in ("equity", "position", "action", "filled"):
        out[col] = [row[col] for row in rows]
    trades = []
    for ts, row in zip(out["ts"], rows, strict=True):
        if row["filled"]:
            side = "buy" if row["order_size"] > 0 else "sell"
            trades.append({"ts": ts, "kind": "order", "side": side, "size": abs(row["order_size"]),
                           "price": row["fill_price"], "fee": row["limit_fee"]})
        if row["stop_hit"]:  # a stop closes the whole position at exit_price
            trades.append({"ts": ts, "kind": "stop", "side": "close", "size": None,
                           "price": row["exit_price"], "fee": row["stop_fee"]})
    out["trades"] = trades
    return out


def find_sessions(root: str | os.PathLike) -> list[Path]:
    """Paper session directories at or below ``root`` (default layout ``<outputs>/paper/<name>/``), newest
    first by their paper.json's modification time."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = [p.parent for p in root.rglob(PAPER_FILE) if not any(part.startswith(".") for part in p.parts)]
    return sorted(found, key=lambda d: (d / PAPER_FILE).stat().st_mtime, reverse=True)
