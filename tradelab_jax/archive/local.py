"""The local side of a run: which sweeps hold it, its id, hashing its files.

Finding run directories and reading their state are the run-directory contract's (:mod:`tradelab_jax.runs`).
"""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tradelab_jax.archive.config import MANIFEST_NAME, ArchiveSpec, check_run_id
from tradelab_jax.errors import UserError
from tradelab_jax.runs import find_runs, is_run_dir, is_sweep_dir

_TEMP_FILE = re.compile(r"^\..+\.tmp$")  # tradelab_jax.io's half-written atomic files
_CHUNK = 1024 * 1024


@dataclass(frozen=True)
class LocalFile:
    """One file of a run with every digest an upload or a remote comparison needs."""

    path: str  # posix path relative to the run directory
    abspath: Path
    size: int
    sha256: str  # hex of the whole file
    md5: str  # hex of the whole file (S3's ETag of a single PUT)
    part_size: int | None = None  # set when the file goes up in parts
    part_sha256: tuple[bytes, ...] = field(default=(), repr=False)
    part_md5: tuple[bytes, ...] = field(default=(), repr=False)

    @property
    def parts(self) -> int | None:
        return len(self.part_sha256) if self.part_size else None

    def expected_checksum(self) -> str:
        """S3's ChecksumSHA256: of the bytes, or for a multipart object of the part digests, '-N'."""
        if self.part_size is None:
            return base64.b64encode(bytes.fromhex(self.sha256)).decode()
        composite = hashlib.sha256(b"".join(self.part_sha256)).digest()
        return f"{base64.b64encode(composite).decode()}-{len(self.part_sha256)}"

    def expected_etag(self) -> str:
        """S3's ETag without server-side KMS encryption: MD5, or MD5 of the part MD5s, '-N'."""
        if self.part_size is None:
            return self.md5
        return f"{hashlib.md5(b''.join(self.part_md5)).hexdigest()}-{len(self.part_md5)}"


def sweeps_of(run_dirs: list[Path], outputs: Path) -> list[Path]:
    """The packed sweeps (below the outputs root) that hold any of ``run_dirs``, innermost first."""
    outputs = outputs.resolve()
    found: dict[Path, None] = {}
    for run_dir in run_dirs:
        for parent in run_dir.resolve().parents:
            if parent == outputs or outputs not in parent.parents:
                break
            if is_sweep_dir(parent):
                found[parent] = None
    return sorted(found, key=lambda p: len(p.parts), reverse=True)


def is_under(path: Path, root: Path) -> bool:
    """Whether ``path`` is ``root`` or a folder below it (both resolved)."""
    path, root = path.resolve(), root.resolve()
    return path == root or root in path.parents


def run_id_for(run_dir: Path, outputs: Path, run_id: str | None) -> str:
    """The run id: given, or the run directory's path relative to the outputs root."""
    if run_id:
        return check_run_id(run_id)
    try:
        rel = run_dir.resolve().relative_to(outputs.resolve())
    except ValueError:
        raise UserError(
            f"run directory {run_dir} is outside the outputs root {outputs}: pass --run-id NAME to choose "
            "its id, or --outputs to name the root it belongs to"
        ) from None
    return check_run_id(rel.as_posix())


def _skipped(rel: str, path: Path) -> bool:
    name = path.name
    if rel == MANIFEST_NAME or _TEMP_FILE.match(name) or "__pycache__" in rel.split("/"):
        return True
    # Links could point anywhere on the machine; a run directory holds plain files only.
    return path.is_symlink() or not path.is_file()


def scan_run(
    run_dir: Path, spec: ArchiveSpec, skip_dir: Callable[[Path], bool] | None = None
) -> list[LocalFile]:
    """Every plain file of the run with its digests, in path order (folders ``skip_dir`` names excluded)."""
    files: list[LocalFile] = []
    for dirpath, dirnames, filenames in os.walk(run_dir):
        dirnames[:] = sorted(
            d
            for d in dirnames
            if not (Path(dirpath) / d).is_symlink() and not (skip_dir and skip_dir(Path(dirpath) / d))
        )
        for name in sorted(filenames):
            path = Path(dirpath) / name
            rel = path.relative_to(run_dir).as_posix()
            if _skipped(rel, path):
                continue
            files.append(hash_file(path, rel, spec.part_size_for(path.stat().st_size)))
    return files


def scan_sweep(sweep_dir: Path, spec: ArchiveSpec) -> list[LocalFile]:
    """The sweep-level files of a packed sweep (packed.json, its .hydra/, ...): everything in the sweep
    folder except its point directories and any run or sweep nested below it."""

    def is_point(d: Path) -> bool:
        return (d.parent == sweep_dir and d.name.isdigit()) or is_run_dir(d) or is_sweep_dir(d)

    return scan_run(sweep_dir, spec, skip_dir=is_point)


def sweep_points(sweep_dir: Path) -> list[str]:
    """The sweep's run directories as paths relative to it ('0', '1', ...), in numeric order."""
    def order(p: Path) -> list[tuple[int, str]]:
        return [(int(x), "") if x.isdigit() else (-1, x) for x in p.relative_to(sweep_dir).parts]

    return [p.relative_to(sweep_dir).as_posix() for p in sorted(find_runs(sweep_dir), key=order)]


def hash_file(path: Path, rel: str, part_size: int | None) -> LocalFile:
    sha, md5 = hashlib.sha256(), hashlib.md5()
    part_sha: list[bytes] = []
    part_md5: list[bytes] = []
    size = 0
    with open(path, "rb") as f:
        while True:
            block = f.read(part_size or _CHUNK)
            if not block:
                break
            size += len(block)
            sha.update(block)
            md5.update(block)
            if part_size:
                part_sha.append(hashlib.sha256(block).digest())
                part_md5.append(hashlib.md5(block).digest())
    if part_size and not part_sha:  # an empty file never goes multipart, but stay total
        part_size = None
    return LocalFile(
        rel, path, size, sha.hexdigest(), md5.hexdigest(), part_size, tuple(part_sha), tuple(part_md5)
    )


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()
