"""Read and write run directories: the one contract between trainer, UI, archive and parity tool.

Layout and fields: docs/run-directory.md. This module never imports JAX, so the UI and the archive can use
it cheaply. Every write is atomic (temp file + rename) except ``metrics.jsonl``, which only grows by whole
lines.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tradelab_jax.errors import UserError
from tradelab_jax.io import (
    append_jsonl,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    exclusive_lock,
)

CONFIG_FILE = "config.yaml"
STATUS_FILE = "status.json"
METRICS_FILE = "metrics.jsonl"
EVAL_FILE = "eval_summary.json"
TELEMETRY_FILE = "telemetry.parquet"
EQUITY_FILE = "equity.png"
CHECKPOINT_DIR = "checkpoints"
LATEST_CHECKPOINT = "latest.json"
CANCEL_FILE = "CANCEL"
CONSOLE_FILE = "console.log"  # a launcher's (the UI's) capture of the trainer's output
PACKED_FILE = "packed.json"  # at the top of a packed sweep: its points and their swept values
MULTIRUN_DIR = "multirun"

# The run-state vocabulary: what status.json's ``status`` holds, written by the trainer and by launchers.
ACTIVE_STATES = ("queued", "running")  # a launcher or a trainer holds the run
FINAL_STATES = ("done", "failed", "cancelled")
STATES = (*ACTIVE_STATES, *FINAL_STATES)
# Derived, never written: an active run whose recorded process is gone (SIGKILL, power loss, a lost launcher).
INTERRUPTED = "interrupted"
EFFECTIVE_STATES = (*STATES, INTERRUPTED)  # what effective_state() says of a run with a status
UNKNOWN = "unknown"  # no status.json, or one that cannot be read
# Runs that stopped before the end and that nothing holds: run.resume continues them from a checkpoint.
RESUMABLE_STATES = ("cancelled", "failed", INTERRUPTED)
WHAT_RESUMES = (f"only a {', '.join(RESUMABLE_STATES[:-1])} or {RESUMABLE_STATES[-1]} run with a checkpoint "
                "can be resumed")
TIMESTAMP_FORMAT = "%Y%m%dT%H%M%SZ"
_CKPT = re.compile(r"^ckpt_(\d{9})\.msgpack$")


class RunFileError(ValueError):
    """A run's file that is there but not read: a link out of its run directory, or not what the contract
    says it holds (bad YAML or JSON, not a mapping). The message is one sentence naming the file."""


def run_file_path(run_dir: str | os.PathLike, name: str) -> Path:
    """``run_dir/name`` as its real path; :class:`RunFileError` when that lies outside the real path of
    ``run_dir`` (a symbolic link out of the run, or ``..``).

    The one rule by which every reader of the contract opens a run's file, so a link planted in a run (or
    in a copy pulled from elsewhere) never makes the UI, the archive or the parity tool read another file.
    A run's own directory may itself be reached through a link (``run.dir=<link>``); its files may not.
    """
    try:
        root = Path(run_dir).resolve()
        path = (root / name).resolve()
    except (OSError, RuntimeError):  # a loop of links (RuntimeError before Python 3.13)
        raise RunFileError(f"{Path(run_dir) / name} is a loop of symbolic links; not followed") from None
    if root not in path.parents:
        raise RunFileError(f"{Path(run_dir) / name} is a symbolic link out of its run directory; "
                           "not followed")
    return path


def _read_text(run_dir: str | os.PathLike, name: str) -> str:
    """A run file's text (FileNotFoundError when missing), refusing a link out and text that is not UTF-8."""
    path = run_file_path(run_dir, name)
    try:
        return path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise RunFileError(f"{Path(run_dir) / name} is not UTF-8 text") from None
    except IsADirectoryError:
        raise RunFileError(f"{Path(run_dir) / name} is a folder, not a file") from None


def _read_mapping(run_dir: str | os.PathLike, name: str) -> dict[str, Any]:
    """A run file holding one JSON (``.json``) or YAML mapping; :class:`RunFileError` for anything else."""
    text, where = _read_text(run_dir, name), Path(run_dir) / name
    try:
        value = json.loads(text) if name.endswith(".json") else yaml.safe_load(text)
    except (json.JSONDecodeError, yaml.YAMLError) as err:
        kind = "JSON" if name.endswith(".json") else "YAML"
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise RunFileError(f"{where} is not valid {kind} ({first})") from None
    if not isinstance(value, dict):
        what = "nothing" if value is None else f"a {type(value).__name__}"
        raise RunFileError(f"{where} holds {what}, not a mapping")
    return value


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
    """The run's status.json, None when there is none; :class:`RunFileError` when it is refused."""
    try:
        return _read_mapping(run_dir, STATUS_FILE)
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
    except (ProcessLookupError, TypeError, ValueError, OverflowError):  # gone, or no pid (a foreign file)
        return False
    except PermissionError:
        return True
    return True


def recorded_state(status: dict[str, Any] | None) -> str:
    """The state a status.json (as read by :func:`read_status`) records, or ``unknown``."""
    if not isinstance(status, dict):
        return UNKNOWN
    return str(status.get("status") or UNKNOWN)


def effective_state(status: dict[str, Any] | None) -> str:
    """The recorded state, except that an active run whose pid is dead on this machine is ``interrupted``.

    An active run without a pid (queued by a launcher that has not started its trainer yet), or whose pid
    belongs to another host (a peer process of a multi-process run), stays active.
    The pid is only meaningful on the machine that wrote it, so the archive, which may read a run on a
    shared filesystem from another node, keeps to :func:`recorded_state`.
    """
    state = recorded_state(status)
    if state in ACTIVE_STATES and status.get("pid") and _this_host(status) and not pid_alive(status["pid"]):
        return INTERRUPTED
    return state


def host() -> str:
    """This machine's name, written beside a trainer's ``pid`` in status.json (a pid means something on its
    host only)."""
    import socket

    return socket.gethostname()


def _this_host(status: dict[str, Any]) -> bool:
    """Whether the pid in ``status`` is this machine's: its ``host`` (written by the trainer since
    multi-process runs, where peers on other nodes write their own points) is ours, or absent."""
    return status.get("host") in (None, host())


def run_state(run_dir: str | os.PathLike, *, derive: bool = True) -> str:
    """The run's :func:`effective_state` (``derive``) or :func:`recorded_state`; ``unknown`` when its
    status.json is missing or cannot be read (damaged, or written by hand)."""
    try:
        status = read_status(run_dir)
    except (OSError, ValueError):
        return UNKNOWN
    return effective_state(status) if derive else recorded_state(status)


def holds_run(run_dir: str | os.PathLike) -> bool:
    """Whether ``run_dir`` already holds a run that a new training must not overwrite: any status but
    ``queued`` (a launcher creates the directory queued for exactly the training it then starts)."""
    status = read_status(run_dir)
    return status is not None and status.get("status") != "queued"


def run_lock(run_dir: str | os.PathLike):
    """A context manager: the one-trainer lock of a run directory (or packed sweep root), held for the run.

    An OS lock on the directory itself (nothing is added to it; the kernel drops it when the trainer dies,
    even by SIGKILL); a second trainer is refused at once with one sentence naming the holder.
    """
    from tradelab_jax.errors import BusyError

    def busy(_record: Any) -> BusyError:
        try:
            st = read_status(run_dir) or {}
        except (OSError, ValueError):
            st = {}
        since = st.get("resumed_at") or st.get("started_at") or st.get("updated_at") or "?"
        return BusyError(f"run directory {run_dir} is being trained by another process (pid "
                         f"{st.get('pid') or '?'}, status {st.get('status') or '?'} since {since}); wait for "
                         "it to finish or cancel it, or pick another run.dir")

    return exclusive_lock(run_dir, busy=busy)


# ---------------------------------------------------------------------------------------------------------
# config.yaml, metrics.jsonl, eval_summary.json


def write_config(run_dir: str | os.PathLike, config: dict[str, Any]) -> None:
    atomic_write_text(Path(run_dir) / CONFIG_FILE, yaml.safe_dump(config, sort_keys=False))


def read_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The run's config.yaml (FileNotFoundError when missing); :class:`RunFileError` when it is refused."""
    return _read_mapping(run_dir, CONFIG_FILE)


def append_metrics(run_dir: str | os.PathLike, record: dict[str, Any]) -> None:
    append_jsonl(Path(run_dir) / METRICS_FILE, record)


def read_metrics(run_dir: str | os.PathLike) -> list[dict[str, Any]]:
    """Every complete line of ``metrics.jsonl`` (a line still being written is skipped)."""
    return read_metrics_counted(run_dir)[0]


def read_metrics_counted(run_dir: str | os.PathLike) -> tuple[list[dict[str, Any]], int]:
    """``(records, skipped)``: each line of ``metrics.jsonl`` that is a JSON object, and how many lines are
    not (a line still being written, or damaged); :class:`RunFileError` when the file is refused."""
    try:
        text = _read_text(run_dir, METRICS_FILE)
    except FileNotFoundError:
        return [], 0
    out, skipped = [], 0
    for line in text.splitlines():
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            record = None
        if isinstance(record, dict):
            out.append(record)
        elif line.strip():
            skipped += 1
    return out, skipped


def truncate_metrics(run_dir: str | os.PathLike, max_update: int) -> None:
    """Drop metric lines past ``max_update`` (written after the checkpoint a resume starts from)."""
    kept = [m for m in read_metrics(run_dir) if int(m.get("update", 0)) <= max_update]
    text = "".join(json.dumps(m, allow_nan=False) + "\n" for m in kept)
    atomic_write_text(Path(run_dir) / METRICS_FILE, text)


def read_eval_summary(run_dir: str | os.PathLike) -> dict[str, Any] | None:
    """The run's eval_summary.json, None before evaluation; :class:`RunFileError` when it is refused."""
    try:
        return _read_mapping(run_dir, EVAL_FILE)
    except FileNotFoundError:
        return None


def write_eval_summary(run_dir: str | os.PathLike, summary: dict[str, Any]) -> None:
    atomic_write_json(Path(run_dir) / EVAL_FILE, summary)


# ---------------------------------------------------------------------------------------------------------
# checkpoints/


class CheckpointError(UserError):
    """A checkpoint, or the ``latest.json`` naming it, that is not what it claims to be. The message is a
    clause naming the file and what is wrong; callers prefix what they were doing (``cannot resume DIR:``)."""


def write_checkpoint(run_dir: str | os.PathLike, update: int, data: bytes, meta: dict[str, Any],
                     keep: int = 2) -> Path:
    """``checkpoints/ckpt_<update>.msgpack`` then ``checkpoints/latest.json`` naming it, both atomic.

    A crash between the two leaves ``latest.json`` on the previous, complete checkpoint. ``latest.json``
    records the file's size and sha256, so a reader can tell a damaged file (:func:`read_checkpoint`).
    Older checkpoints beyond ``keep`` are removed.
    """
    ckpt_dir = Path(run_dir) / CHECKPOINT_DIR
    ckpt_dir.mkdir(parents=True, exist_ok=True)
    name = f"ckpt_{update:09d}.msgpack"
    atomic_write_bytes(ckpt_dir / name, data)
    atomic_write_json(ckpt_dir / LATEST_CHECKPOINT, {"file": name, "update": update, "bytes": len(data),
                                                     "sha256": hashlib.sha256(data).hexdigest(), **meta})
    found = sorted(p for p in ckpt_dir.iterdir() if _CKPT.match(p.name))
    for old in found[: max(len(found) - max(keep, 1), 0)]:
        if old.name != name:
            old.unlink(missing_ok=True)
    return ckpt_dir / name


def latest_checkpoint(run_dir: str | os.PathLike) -> tuple[Path, dict[str, Any]] | None:
    """``(path, meta)`` of the last complete checkpoint, None before the first one (no ``latest.json``);
    :class:`CheckpointError` when ``latest.json`` cannot be read or names no checkpoint of this run."""
    latest = Path(run_dir) / CHECKPOINT_DIR / LATEST_CHECKPOINT
    try:
        meta = json.loads(latest.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except OSError as err:
        raise CheckpointError(f"{latest} cannot be read ({err.strerror or err})") from None
    except ValueError as err:  # not JSON, or not UTF-8
        raise CheckpointError(f"{latest} is not valid JSON ({str(err).splitlines()[0]})") from None
    name = meta.get("file") if isinstance(meta, dict) else None
    if not isinstance(name, str):
        raise CheckpointError(f'{latest} names no checkpoint: it has no "file" field')
    match = _CKPT.match(name)
    if match is None or meta.get("update") != int(match.group(1)):
        raise CheckpointError(f"{latest} names {name!r} at update {meta.get('update')!r}; expected "
                              "ckpt_<update:09d>.msgpack and that update")
    path = latest.parent / name
    if not path.is_file():
        raise CheckpointError(f"{latest} names {name}, which is not in {latest.parent}")
    return path, meta


def read_checkpoint(run_dir: str | os.PathLike) -> tuple[Path, bytes, dict[str, Any]] | None:
    """``(path, bytes, meta)`` of the last complete checkpoint, verified against the size and sha256 that
    ``latest.json`` records; None before the first one; :class:`CheckpointError` naming the file otherwise.

    A checkpoint written before ``latest.json`` recorded them is read unverified (its bytes still have to
    fit the run when restored: ``tradelab_jax.training.checkpoint.restore``).
    """
    found = latest_checkpoint(run_dir)
    if found is None:
        return None
    path, meta = found
    try:
        data = path.read_bytes()
    except OSError as err:
        raise CheckpointError(f"checkpoint {path} cannot be read ({err.strerror or err})") from None
    size, digest = meta.get("bytes"), meta.get("sha256")
    if not data:
        raise CheckpointError(f"checkpoint {path} is empty (0 bytes)")
    if size is not None and size != len(data):
        raise CheckpointError(f"checkpoint {path} is damaged: it holds {len(data):,} bytes, "
                              f"{LATEST_CHECKPOINT} recorded {size} (truncated or overwritten)")
    if digest is not None and digest != hashlib.sha256(data).hexdigest():
        raise CheckpointError(f"checkpoint {path} is damaged: its sha256 is not the one {LATEST_CHECKPOINT} "
                              "recorded (changed since it was written)")
    return path, data, meta


# ---------------------------------------------------------------------------------------------------------
# cancellation and discovery


def request_cancel(run_dir: str | os.PathLike) -> None:
    """Ask a running trainer to stop at its next chunk boundary (it keeps its last checkpoint)."""
    atomic_write_text(Path(run_dir) / CANCEL_FILE, utc_now() + "\n")


def cancel_requested(run_dir: str | os.PathLike) -> bool:
    return (Path(run_dir) / CANCEL_FILE).exists()


def is_run_dir(path: str | os.PathLike) -> bool:
    """A run directory is a folder holding status.json (whoever wrote it: trainer, launcher, archive pull)."""
    return (Path(path) / STATUS_FILE).is_file()


def is_sweep_dir(path: str | os.PathLike) -> bool:
    """A packed sweep's folder: it holds packed.json above its point directories and is no run itself."""
    return (Path(path) / PACKED_FILE).is_file() and not is_run_dir(path)


@dataclass(frozen=True)
class Skipped:
    """An entry under an outputs root that discovery passed over, and why (one clause)."""

    path: Path
    why: str


def scan_runs(root: str | os.PathLike) -> tuple[list[Path], list[Skipped]]:
    """``(runs, skipped)``: every run directory at or below ``root`` in path order (the one run discovery),
    and the entries passed over on the way.

    A run's own subfolders are not searched, nor are hidden folders (``.hydra/``, the UI's ``.queue/``).
    Under an outputs root this finds single runs ``<ts>_<tag>/``, multirun and packed-sweep points
    ``multirun/<ts>_<tag>/<n>/`` and those of a packed multirun whose shape-changing keys vary
    ``multirun/<ts>_<tag>/<job>/<n>/``, and runs pulled from the archive wherever their id put them.
    Passed over: a symbolic link to a folder (a run or a sweep linked in from elsewhere is never followed,
    so nothing outside ``root`` is read through it), and a folder that holds no run at any depth.
    """
    root = Path(root)
    if is_run_dir(root):
        return [root], []
    found: list[Path] = []
    skipped: list[Skipped] = []
    holding: set[Path] = set()  # folders with a run at or below them
    walked: list[Path] = []
    for dirpath, dirnames, _ in os.walk(root):
        here = Path(dirpath)
        if here != root and is_run_dir(here):
            found.append(here)
            holding.update(here.parents)
            dirnames.clear()
            continue
        walked.append(here)
        kept = []
        for d in sorted(d for d in dirnames if not d.startswith(".")):
            if (here / d).is_symlink():
                skipped.append(Skipped(here / d, "a symbolic link, not followed"))
            else:
                kept.append(d)
        dirnames[:] = kept
    linked = {s.path.parent for s in skipped}
    for here in walked:
        if here != root and here not in holding and here not in linked and not _has_subfolder(here):
            skipped.append(Skipped(here, f"no run directory (no {STATUS_FILE})"))
    return found, sorted(skipped, key=lambda s: s.path)


def _has_subfolder(path: Path) -> bool:
    """Whether ``path`` holds a visible folder (then the deepest run-less folder below is the one named)."""
    try:
        return any(e.is_dir() and not e.name.startswith(".") for e in os.scandir(path))
    except OSError:
        return False


def find_runs(root: str | os.PathLike) -> list[Path]:
    """Every run directory at or below ``root``, in path order (:func:`scan_runs` less what it skipped)."""
    return scan_runs(root)[0]


def iter_runs(outputs: str | os.PathLike) -> Iterator[Path]:
    """:func:`find_runs` under ``outputs``, newest first (:func:`order_runs`)."""
    root = Path(outputs)
    if root.is_dir():
        yield from order_runs(root, find_runs(root))


def order_runs(outputs: str | os.PathLike, found: list[Path]) -> list[Path]:
    """Runs under ``outputs`` newest first: ordered by the timestamp of the run or of its sweep
    (``multirun/<ts>_<tag>``), then by path, all descending (a sweep's last point first)."""
    root = Path(outputs)

    def order(p: Path) -> tuple[str, str]:
        rel = p.relative_to(root).parts or ("",)
        return (rel[1] if rel[0] == MULTIRUN_DIR and len(rel) > 1 else rel[0], "/".join(rel))

    return sorted(found, key=order, reverse=True)


def point_dirs(sweep_dir: str | os.PathLike) -> list[Path]:
    """The numbered run directories ``0/ 1/ ...`` of a multirun or packed sweep, in order."""
    root = Path(sweep_dir)
    if not root.is_dir():
        return []
    # A linked point is not followed, as in scan_runs: its files would be read from wherever it points.
    dirs = [p for p in root.iterdir() if p.name.isdigit() and p.is_dir() and not p.is_symlink()]
    return sorted(dirs, key=lambda p: int(p.name))


# ---------------------------------------------------------------------------------------------------------
# resuming: the one rule for `train run.resume=`, the UI's Resume button and anyone else who asks


class NotResumable(ValueError):
    """Why a run cannot be resumed, as a clause naming it (``it is done ...``); callers prefix the run."""


@dataclass(frozen=True)
class Resumable:
    """What ``run.resume=<path>`` continues."""

    path: Path  # the run directory, or the packed sweep's directory
    dirs: tuple[Path, ...]  # the run directories that train on: the run, or the sweep's points not done
    update: int  # the update of the last checkpoint (the smallest over the points), where training continues


def resume_root(run_dir: str | os.PathLike) -> Path:
    """What resumes for a picked run: its packed sweep's directory for a point of one (the points were
    trained as one program), else the run itself."""
    run_dir = Path(run_dir)
    return run_dir.parent if is_sweep_dir(run_dir.parent) else run_dir


def _checkpoint_update(run_dir: Path) -> int | None:
    """The update of the run's last complete checkpoint, or None when there is none to continue from."""
    try:
        run_file_path(run_dir, f"{CHECKPOINT_DIR}/{LATEST_CHECKPOINT}")  # a link out is no checkpoint either
        found = latest_checkpoint(run_dir)
    except CheckpointError as err:  # a damaged latest.json: say what is wrong, not "no checkpoint"
        raise NotResumable(str(err)) from None
    except (OSError, ValueError, KeyError):  # a damaged latest.json is no checkpoint to resume from
        return None
    if found is None or not (run_dir / CONFIG_FILE).is_file():
        return None
    return int(found[1].get("update") or 0)


def left_to_train(dirs: list[Path]) -> list[Path]:
    """The points of a packed sweep a resume trains: those not ``done``. A done point (its process finished
    it while a peer of a multi-process run died) is left as it is; a single run is its one directory."""
    if len(dirs) <= 1:
        return list(dirs)
    return [d for d in dirs if run_state(d, derive=False) != "done"]


def resumable(path: str | os.PathLike, *, picked: str | os.PathLike | None = None,
              for_trainer: bool = False) -> Resumable:
    """Check that the run or packed sweep at ``path`` can be resumed; :class:`NotResumable` if not.

    Every run directory it holds must be ``cancelled``, ``failed`` or ``interrupted`` (an active state
    whose pid is dead, :func:`effective_state`) and have a checkpoint and its config; a packed sweep's points
    that are already ``done`` are left as they are (a multi-process sweep whose peer died: the others'
    points finished) as long as one point is left to train. An active run with a
    live pid is busy. A ``queued`` run without a pid is held by the launcher that queued it: refused to
    anyone else (``for_trainer`` false: a second Resume), but taken by the trainer it starts
    (``for_trainer``: ``train run.resume=``, which cannot tell the launcher's start from a user's).
    ``picked`` is the run the caller was asked about; reasons name the others as points of its sweep.
    """
    path = Path(path)
    picked = Path(picked) if picked is not None else path
    dirs = point_dirs(path) if is_sweep_dir(path) else [path]
    if not dirs:
        raise NotResumable("it is a packed sweep without point directories")
    left = left_to_train(dirs)
    if not left:
        raise NotResumable("every point of the sweep is done (trained and evaluated); nothing to resume (to "
                           "train longer, start a new run with a larger agent.total_timesteps)")
    updates = []
    for d in left:
        who = "it" if d == picked else f"point {d.name}" + (" of its packed sweep" if picked != path else "")
        try:
            status = read_status(d)
        except (OSError, ValueError):  # being written by hand or damaged: not something to train on
            status = None
        state = effective_state(status)
        if state == UNKNOWN:
            raise NotResumable(f"{who} has no readable {STATUS_FILE}")
        if state == "done":
            raise NotResumable(f"{who} is done (trained and evaluated); nothing to resume (to train longer, "
                               "start a new run with a larger agent.total_timesteps)")
        pid = status.get("pid") if status else None
        if state in ACTIVE_STATES and (not for_trainer or pid_alive(pid)):
            held = f"; pid {pid}" if pid else ""
            raise NotResumable(f"{who} is {state} (cancel its job first, or let it finish{held})")
        if state not in (*RESUMABLE_STATES, *(ACTIVE_STATES if for_trainer else ())):
            raise NotResumable(f"{who} is {state}")
        update = _checkpoint_update(d)
        if update is None:
            raise NotResumable(f"{who} has no checkpoint (it stopped before its first chunk ended)")
        updates.append(update)
    return Resumable(path=path, dirs=tuple(left), update=min(updates))
