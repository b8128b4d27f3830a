"""Read and write run directories: the one contract between trainer, UI, archive and parity tool.

Layout and fields: docs/run-directory.md. This module never imports JAX, so the UI and the archive can use
it cheaply. Every write is atomic (temp file + rename) except ``metrics.jsonl``, which only grows by whole
lines.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import yaml

from tradelab_jax.io import append_jsonl, atomic_write_bytes, atomic_write_json, atomic_write_text

CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval_summary.json"
TELEMETRY_FILE = "telemetry.parquet"
EQUITY_FILE = "equity.png"
CHECKPOINT_DIR = "checkpoints"
LATEST_CHECKPOINT = "latest.json"
CANCEL_FILE = "CANCEL"
PACKED_FILE = "packed.json"  # at the top of a packed sweep: its points and their swept values
MULTIRUN_DIR = "multirun"

STATES = ("queued", "running", "done", "failed", "cancelled")
FINAL_STATES = ("done", "failed", "cancelled")
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_CKPT = re.compile(r"^ckpt_(\d{9})\.msgpack$")


def utc_now() -> str:
    """Now as ISO 8601 UTC with seconds, e.g. ``2025-11-26T11:30:00Z``."""
    return _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def utc_timestamp() -> str:
    """The timestamp part of a run directory's name, e.g. ``20251126T113000Z``."""
    return _dt.datetime.now(_dt.UTC).strftime(TIMESTAMP_FORMAT)


def run_dir_name(tag: str, timestamp: str | None = None) -> str:
    return f"{timestamp or utc_timestamp()}_{tag}"


def new_run_dir(outputs: str | os.PathLike, tag: str, *, multirun: bool = False,
                timestamp: str | None = None) -> Path:
    """``outputs/<ts>_<tag>`` or ``outputs/multirun/<ts>_<tag>`` (not created)."""
    root = Path(outputs)
    if multirun:
        root = root / MULTIRUN_DIR
    return root / run_dir_name(tag, timestamp)


# ---------------------------------------------------------------------------------------------------------
# status.json


def read_status(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(run_dir) / STATUS_FILE
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None


def write_status(run_dir: str | os.PathLike, **fields: Any) -> dict[str, Any]:
    """Merge ``fields`` into ``status.json`` (created if missing) and write it atomically."""
    if "status" in fields and fields["status"] not in STATES:
        raise ValueError(f"invalid status {fields['status']!r}; valid: {', '.join(STATES)}")
    status = read_status(run_dir) or {}
    status.update(fields)
    status["updated_at"] = utc_now()
    atomic_write_json(Path(run_dir) / STATUS_FILE, status)
    return status


def queue_run(run_dir: str | os.PathLike) -> dict[str, Any]:
    """Create a run directory with status ``queued`` (for a launcher that passes ``run.dir=<it>``)."""
    Path(run_dir).mkdir(parents=True, exist_ok=True)
    return write_status(run_dir, status="queued", progress=0.0, pid=None, started_at=None, ended_at=None,
                        error=None, queued_at=utc_now())


def pid_alive(pid: int | None) -> bool:
    if not pid:
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


# ---------------------------------------------------------------------------------------------------------
# config.yaml, metrics.jsonl, eval_summary.json


def write_config(run_dir: str | os.PathLike, config: dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    return yaml.safe_load((Path(run_dir) / CONFIG_FILE).read_text(encoding="utf-8"))


def append_metrics(run_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    append_jsonl(Path(run_dir) / METRICS_FILE, record)


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete line of ``metrics.jsonl`` (a line still being written is skipped)."""
    path = Path(run_dir) / METRICS_FILE
    if not path.exists():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def truncate_metrics(run_dir: str | os.PathLike, max_update: int) -> None:
    """Drop metric lines past ``max_update`` (written after the checkpoint a resume starts from)."""
    kept = [m for m in read_metrics(run_dir) if int(m.get("update", 0)) <= max_update]
    text = "".join(json.dumps(m, allow_nan=False) + "\n" for m in kept)
    atomic_write_text(Path(run_dir) / METRICS_FILE, text)


def read_eval_summary(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    path = Path(run_dir) / EVAL_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.exists() else None


def write_eval_summary(run_dir: str | os.PathLike, summary: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / EVAL_FILE, summary)


# ---------------------------------------------------------------------------------------------------------
# checkpoints/


def write_checkpoint(run_dir: str | os.PathLike, update: int, data: bytes, meta: dict[str, Any],
                     keep: int = 2) -> Path:
    """``checkpoints/ckpt_<update>.msgpack`` then ``checkpoints/latest.json`` naming it, both atomic.

    A crash between the two leaves ``latest.json`` on the previous, complete checkpoint. Older checkpoints
    beyond ``keep`` are removed.
    """
    ckpt_dir = Path(run_dir) / CHECKPOINT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    name = f"ckpt_{update:09d}.msgpack"
    atomic_write_bytes(ckpt_dir / name, data)
    atomic_write_json(ckpt_dir / LATEST_CHECKPOINT, {"file": name, "update": update, **meta})
    found = sorted(p for p in ckpt_dir.iterdir() if _CKPT.match(p.name))
    for old in found[: max(len(found) - max(keep, 1), 0)]:
        if old.name != name:
            old.unlink(missing_ok=True)
    return ckpt_dir / name


def latest_checkpoint(run_dir: str | os.PathLike) -> tuple[Path, dict[str, Any]] | None:
    """``(path, meta)`` of the last complete checkpoint, or None."""
    ckpt_dir = Path(run_dir) / CHECKPOINT_DIR
    try:
        meta = json.loads((ckpt_dir / LATEST_CHECKPOINT).read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    path = ckpt_dir / meta["file"]
    return (path, meta) if path.exists() else None


# ---------------------------------------------------------------------------------------------------------
# cancellation and discovery


def request_cancel(run_dir: str | os.PathLike) -> None:
    """Ask a running trainer to stop at its next chunk boundary (it keeps its last checkpoint)."""
    atomic_write_text(Path(run_dir) / CANCEL_FILE, utc_now() + "\n")


def cancel_requested(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / CANCEL_FILE).exists()


def is_run_dir(path: str | os.PathLike) -> bool:
    return (Path(path) / STATUS_FILE).is_file()


def iter_runs(outputs: str | os.PathLike) -> Iterator[Path]:
    """Every run directory under ``outputs``, newest first.

    Single runs are ``<ts>_<tag>/``; multiruns and packed sweeps are ``multirun/<ts>_<tag>/<n>/``, and a
    packed multirun whose shape-changing keys vary nests one level more: ``multirun/<ts>_<tag>/<job>/<n>/``.
    """
    root = Path(outputs)
    if not root.is_dir():
        return
    found = [p for p in root.iterdir() if p.is_dir() and p.name != MULTIRUN_DIR and is_run_dir(p)]
    multi = root / MULTIRUN_DIR
    groups = [g for g in multi.iterdir() if g.is_dir()] if multi.is_dir() else []
    for group in groups:
        for child in group.iterdir():
            if not child.is_dir() or child.name.startswith("."):
                continue
            if is_run_dir(child):
                found.append(child)
            else:
                found += [p for p in child.iterdir() if p.is_dir() and is_run_dir(p)]

    def order(p: Path) -> tuple[str, str]:
        # Newest sweep first, then its points in order; top-level runs sort by their own timestamp.
        rel = p.relative_to(root).parts
        return (rel[1] if rel[0] == MULTIRUN_DIR else rel[0], "/".join(rel))

    yield from sorted(found, key=order, reverse=True)


def point_dirs(sweep_dir: str | os.PathLike) -> list[Path]:
    """The numbered run directories ``0/ 1/ ...`` of a multirun or packed sweep, in order."""
    root = Path(sweep_dir)
    dirs = [p for p in root.iterdir() if p.is_dir() and p.name.isdigit()] if root.is_dir() else []
    return sorted(dirs, key=lambda p: int(p.name))
