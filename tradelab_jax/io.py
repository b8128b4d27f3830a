"""Atomic file writes: a reader never sees a half-written file, and a crash never corrupts what was stored.

Each writer writes to a temporary file in the destination folder, flushes it to disk and renames it over
the destination (``os.replace`` is atomic on POSIX and Windows). A write that finds its disk or quota full
raises :class:`~tradelab_jax.errors.DiskFullError` (one sentence: the full filesystem, the path, the bytes
needed) after removing its temporary file, so what was stored before is left as it was.

:func:`exclusive_lock` is the one writer lock (a dataset of the lake, a run directory).
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import json
import os
import shutil
import socket
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from tradelab_jax.errors import DiskFullError

DISK_FULL_ERRNOS = (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC))


def is_disk_full(err: BaseException) -> bool:
    """Whether ``err`` says the disk or the quota is full (pyarrow may say it only in words, errno unset)."""
    if not isinstance(err, OSError):
        return False
    return err.errno in DISK_FULL_ERRNOS or any(os.strerror(n) in str(err) for n in DISK_FULL_ERRNOS)


def disk_full_error(path: str | os.PathLike, needed: int | None) -> DiskFullError:
    """The one sentence for a full disk: which filesystem, which file, how many bytes it needed."""
    path = Path(path)
    folder = next((p for p in (path.parent, *path.parent.parents) if p.is_dir()), Path("/"))
    mount = folder.resolve()
    while not os.path.ismount(mount) and mount != mount.parent:
        mount = mount.parent
    try:
        free = f"{shutil.disk_usage(folder).free:,} bytes free"
    except OSError:
        free = "free space unknown"
    need = f"{needed:,} bytes" if needed is not None else "more space than is free"
    return DiskFullError(
        f"the disk holding {path} is full (filesystem {mount}, {free}): writing it needed {need}; free some "
        "space and run the command again (what was stored before is unchanged)"
    )


@contextlib.contextmanager
def atomic_path(dest: str | os.PathLike, suffix: str = ".tmp", size: int | None = None) -> Iterator[Path]:
    """Yield a temporary path next to ``dest``; on success it replaces ``dest``, on error it is removed.

    ``size`` (bytes, when the caller knows it) is named in the sentence of a full disk.
    """
    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=suffix, dir=dest.parent)
    except OSError as err:
        if is_disk_full(err):
            raise disk_full_error(dest, size) from None
        raise
    os.close(fd)
    tmp_path = Path(tmp)
    # mkstemp creates 0600; give the final file the mode a plain open() would (0666 minus the umask).
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp_path, 0o666 & ~umask)
    try:
        yield tmp_path
        with open(tmp_path, "rb+") as f:
            os.fsync(f.fileno())
        os.replace(tmp_path, dest)
    except BaseException as err:
        tmp_path.unlink(missing_ok=True)
        if is_disk_full(err):
            raise disk_full_error(dest, size) from None
        raise


def atomic_write_bytes(dest: str | os.PathLike, data: bytes) -> None:
    with atomic_path(dest, size=len(data)) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(dest: str | os.PathLike, text: str) -> None:
    atomic_write_bytes(dest, text.encode("utf-8"))


def atomic_write_json(dest: str | os.PathLike, obj: Any) -> None:
    atomic_write_text(dest, json.dumps(obj, indent=2, sort_keys=False, allow_nan=False) + "\n")


def append_jsonl(dest: str | os.PathLike, record: dict) -> None:
    """Append one JSON line and flush it (a reader may see the file grow, never a partial line)."""
    append_durable(dest, (json.dumps(record, allow_nan=False) + "\n").encode("utf-8"))


def append_durable(dest: str | os.PathLike, data: bytes) -> int:
    """Append ``data`` and fsync it (durable on return); returns the file's size before the append.

    On a full disk the part that was written is cut off again, so the file still ends where it did (with a
    whole line, for line files).
    """
    with open(dest, "ab") as f:
        start = f.tell()
        try:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        except OSError as err:
            if not is_disk_full(err):
                raise
            with contextlib.suppress(OSError):
                os.truncate(dest, start)
            raise disk_full_error(dest, len(data)) from None
    return start


def holder_record(command: str | None = None) -> dict[str, Any]:
    """Who holds a lock: pid, host, command line and since when (UTC)."""
    return {
        "pid": os.getpid(),
        "host": socket.gethostname(),
        "command": command or " ".join([Path(sys.argv[0]).name, *sys.argv[1:]]).strip() or "python",
        "since": _dt.datetime.now(_dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


def describe_holder(record: dict[str, Any] | None) -> str:
    """``pid 123 on host (tradelab data import ...) since 2025-...Z``, or a plain word when unrecorded."""
    if not record:
        return "another process"
    return (f"pid {record.get('pid', '?')} on {record.get('host', '?')} ({record.get('command', '?')}) "
            f"since {record.get('since', '?')}")


@contextlib.contextmanager
def exclusive_lock(path: str | os.PathLike, *, busy: Callable[[dict[str, Any] | None], Exception],
                   command: str | None = None) -> Iterator[None]:
    """Hold an exclusive OS lock (``flock``) on ``path`` for the block; refuse at once when it is held.

    ``path`` is either a lock file (created; it records :func:`holder_record` and is removed on release) or
    an existing directory (locked as it is, recording nothing). A second taker gets ``busy(record)`` raised,
    ``record`` being the holder's record (None for a directory or when unreadable): we refuse rather than
    wait, so two commands never queue silently behind each other. The kernel drops a flock when its process
    dies, even by SIGKILL, so the lock of a dead process is never stale: the next taker simply gets it (its
    leftover file is reused). Where flock is missing (not POSIX) the block runs unlocked.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    path = Path(path)
    is_dir = path.is_dir()
    # Folders made for the lock file go again with it, so a refused command leaves no trace.
    made = [] if is_dir else [p for p in (path.parent, *path.parent.parents) if not p.exists()]
    while True:
        if is_dir:
            fd = os.open(path, os.O_RDONLY)
        else:
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
                fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
            except FileNotFoundError:  # a releasing holder removed the folder just now
                continue
            except OSError as err:
                if is_disk_full(err):
                    raise disk_full_error(path, None) from None
                raise
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            record = None if is_dir else _read_record(fd)
            os.close(fd)
            raise busy(record) from None
        except OSError:  # a filesystem without flock (some network mounts): run unlocked, as before
            os.close(fd)
            yield
            return
        # A releasing holder unlinks its file before unlocking it; a lock won on such an orphan is no lock.
        if is_dir or _same_file(fd, path):
            break
        os.close(fd)
    try:
        if not is_dir:
            # The record only informs a refused taker; a full disk may drop it.
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
                os.pwrite(fd, (json.dumps(holder_record(command)) + "\n").encode("utf-8"), 0)
        yield
    finally:
        if not is_dir:
            with contextlib.suppress(OSError):
                path.unlink()
        os.close(fd)  # releases the lock
        for folder in made:
            with contextlib.suppress(OSError):  # not empty: someone else uses it
                folder.rmdir()


def _same_file(fd: int, path: Path) -> bool:
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return False
    own = os.fstat(fd)
    return (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino)


def _read_record(fd: int) -> dict[str, Any] | None:
    try:
        record = json.loads(os.pread(fd, 4096, 0).decode("utf-8"))
    except (OSError, ValueError):
        return None
    return record if isinstance(record, dict) else None
