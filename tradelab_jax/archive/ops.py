"""Push, pull and list archived runs: ``s3://bucket/prefix/runs/<run_id>/<file>`` plus a manifest.

The manifest (``archive_manifest.json``) is written last, so a run appears in ``list`` and can be pulled
only once every file it names is in S3 and verified. It records each file's path, size, sha256, S3
checksum and ETag, part layout and upload time, plus the run's status when pushed.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tradelab_jax import __version__
from tradelab_jax.archive.client import is_missing
from tradelab_jax.archive.config import MANIFEST_FORMAT, ArchiveSpec, check_run_id
from tradelab_jax.archive.local import read_status, scan_run, sha256_of
from tradelab_jax.archive.transfer import download, head, manifest_entry, remote_matches, upload, utc_now
from tradelab_jax.errors import UserError
from tradelab_jax.paths import inside

Log = Callable[[str], None]
IN_PROGRESS = ("queued", "running")  # status.json states of a run that is not finished


def _quiet(_: str) -> None:
    pass


@dataclass
class PushResult:
    run_id: str
    url: str
    uploaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    uploaded_bytes: int = 0
    total_bytes: int = 0
    pruned: list[str] = field(default_factory=list)


@dataclass
class PullResult:
    run_id: str
    dest: Path
    downloaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    downloaded_bytes: int = 0


def get_manifest(client: Any, spec: ArchiveSpec, run_id: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    key = spec.manifest_key(run_id)
    try:
        body = client.get_object(Bucket=spec.bucket, Key=key)["Body"].read()
    except ClientError as err:
        if is_missing(err):
            return None
        raise
    try:
        manifest = json.loads(body)
        files = manifest["files"]
        assert manifest.get("format") == MANIFEST_FORMAT and isinstance(files, list)
        for entry in files:
            assert isinstance(entry["path"], str) and isinstance(entry["sha256"], str)
            assert isinstance(entry["size"], int)
    except (ValueError, KeyError, TypeError, AssertionError):
        raise UserError(
            f"{spec.url(key)} is not a {MANIFEST_FORMAT} manifest; push the run again to rewrite it"
        ) from None
    return manifest


def push_run(
    client: Any,
    spec: ArchiveSpec,
    run_dir: Path,
    run_id: str,
    *,
    allow_running: bool = False,
    check_remote: bool = False,
    prune: bool = False,
    log: Log = _quiet,
) -> PushResult:
    """Upload what changed since the archived manifest, verify it, then write the new manifest."""
    check_run_id(run_id)
    status = read_status(run_dir)
    if status in IN_PROGRESS and not allow_running:
        raise UserError(
            f"run {run_id} has not finished (its status.json says {status!r}): wait for it to end, or pass "
            "--allow-running to push a snapshot"
        )
    result = PushResult(run_id, spec.url(spec.run_prefix(run_id)))
    local = scan_run(run_dir, spec)
    previous = get_manifest(client, spec, run_id)
    archived = {e["path"]: e for e in (previous or {}).get("files", [])}
    entries = []
    for lf in local:
        key = spec.file_key(run_id, lf.path)
        result.total_bytes += lf.size
        old = archived.get(lf.path)
        same_as_manifest = old is not None and old["sha256"] == lf.sha256 and old["size"] == lf.size
        if same_as_manifest and not check_remote:
            entries.append(old)
            result.unchanged.append(lf.path)
            continue
        # Not in the manifest (new, changed, or left by an interrupted push): skip it if S3 already has it.
        info = head(client, spec, key)
        if info is not None and remote_matches(info, lf):
            etag = str(info.get("ETag", "")).strip('"')
            entries.append(old if same_as_manifest else manifest_entry(lf, etag, utc_now()))
            result.unchanged.append(lf.path)
            continue
        log(f"upload {lf.path} ({human_size(lf.size)}{f', {lf.parts} parts' if lf.parts else ''})")
        entries.append(upload(client, spec, key, lf))
        result.uploaded.append(lf.path)
        result.uploaded_bytes += lf.size
    manifest = {
        "format": MANIFEST_FORMAT,
        "run_id": run_id,
        "status": status,
        "pushed_at": utc_now(),
        "pushed_by": f"tradelab_jax {__version__}",
        "file_count": len(entries),
        "total_size": result.total_bytes,
        "files": entries,
    }
    body = (json.dumps(manifest, indent=2, allow_nan=False) + "\n").encode()
    client.put_object(
        Bucket=spec.bucket,
        Key=spec.manifest_key(run_id),
        Body=body,
        ContentType="application/json",
        ChecksumAlgorithm="SHA256",
    )
    if prune:
        result.pruned = _prune(client, spec, run_id, {e["path"] for e in entries}, log)
    return result


def _prune(client: Any, spec: ArchiveSpec, run_id: str, keep: set[str], log: Log) -> list[str]:
    """Delete archived objects of the run that the new manifest no longer names."""
    prefix = spec.run_prefix(run_id)
    keep = keep | {spec.manifest_key(run_id)[len(prefix) :]}
    stale = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=spec.bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            rel = obj["Key"][len(prefix) :]
            # Objects of runs nested below this id (multirun children) belong to those runs.
            if rel not in keep and not _belongs_to_nested_run(client, spec, prefix, rel):
                stale.append(rel)
    for rel in stale:
        log(f"prune {rel}")
        client.delete_object(Bucket=spec.bucket, Key=prefix + rel)
    return stale


def _belongs_to_nested_run(client: Any, spec: ArchiveSpec, prefix: str, rel: str) -> bool:
    parts = rel.split("/")[:-1]
    for i in range(1, len(parts) + 1):
        if head(client, spec, f"{prefix}{'/'.join(parts[:i])}/archive_manifest.json") is not None:
            return True
    return False


def _safe_parts(path: str, run_id: str) -> tuple[str, ...]:
    pure = PurePosixPath(path)
    parts = pure.parts
    if pure.is_absolute() or not parts or any(p in {"", ".", ".."} for p in parts) or "\\" in path:
        raise UserError(
            f"the archive manifest of run {run_id} names an unsafe path {path!r}; only relative paths inside "
            "the run directory are restored"
        )
    return parts


def pull_run(
    client: Any,
    spec: ArchiveSpec,
    run_id: str,
    outputs: Path,
    *,
    force: bool = False,
    log: Log = _quiet,
) -> PullResult:
    """Restore an archived run under ``outputs/<run_id>`` with every file verified against the manifest."""
    check_run_id(run_id)
    manifest = get_manifest(client, spec, run_id)
    if manifest is None:
        raise UserError(
            f"no archived run {run_id!r} in {spec.url(spec.runs_root)}: `tradelab archive list` shows the "
            "archived run ids"
        )
    dest = inside(outputs, *run_id.split("/"))
    result = PullResult(run_id, dest)
    plan, conflicts = [], []
    for entry in manifest["files"]:
        target = inside(dest, *_safe_parts(entry["path"], run_id))
        if (
            target.is_file()
            and target.stat().st_size == entry["size"]
            and sha256_of(target) == entry["sha256"]
        ):
            result.unchanged.append(entry["path"])
            continue
        if target.exists():
            conflicts.append(entry["path"])
        plan.append((entry, target))
    if conflicts and not force:
        raise UserError(
            f"{dest} already holds a different copy of run {run_id} ({len(conflicts)} file(s) differ, e.g. "
            f"{conflicts[0]}): pass --force to replace them with the archived files"
        )
    for entry, target in plan:
        if target.is_dir():
            raise UserError(f"cannot restore {entry['path']}: {target} is a directory; move it away first")
        log(f"download {entry['path']} ({human_size(entry['size'])})")
        download(client, spec, spec.file_key(run_id, entry["path"]), target, entry)
        result.downloaded.append(entry["path"])
        result.downloaded_bytes += entry["size"]
    return result


def list_runs(client: Any, spec: ArchiveSpec) -> list[dict[str, Any]]:
    """One row per archived run (id, status, files, size, pushed_at), sorted by id."""
    suffix = "/archive_manifest.json"
    ids = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=spec.bucket, Prefix=spec.runs_root):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith(suffix):
                ids.append(key[len(spec.runs_root) : -len(suffix)])
    rows = []
    for run_id in sorted(ids):
        manifest = get_manifest(client, spec, run_id)
        if manifest is None:
            continue
        rows.append(
            {
                "id": run_id,
                "status": manifest.get("status", "unknown"),
                "files": len(manifest["files"]),
                "size": sum(e["size"] for e in manifest["files"]),
                "pushed_at": manifest.get("pushed_at", ""),
            }
        )
    return rows


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
