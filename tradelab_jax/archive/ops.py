"""Push, pull and list archived runs: ``s3://bucket/prefix/runs/<run_id>/<file>`` plus a manifest.

A packed sweep's own files (packed.json, its .hydra/) are archived the same way under the sweep's id, with
a manifest of ``"kind": "sweep"``; its points are runs archived below it (``<sweep_id>/<n>``).

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
from tradelab_jax.archive.config import MANIFEST_FORMAT, MANIFEST_NAME, ArchiveSpec, check_run_id
from tradelab_jax.archive.local import LocalFile, scan_run, scan_sweep, sha256_of, sweep_points
from tradelab_jax.archive.transfer import download, head, manifest_entry, remote_matches, upload, utc_now
from tradelab_jax.errors import UserError
from tradelab_jax.paths import inside
from tradelab_jax.runs import ACTIVE_STATES, run_state

Log = Callable[[str], None]
SWEEP_KIND = "sweep"  # a manifest's "kind" for a packed sweep's own files; absent for a run


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
    written: bool = True  # False when nothing changed and the archived manifest was left as it was
    kind: str = "run"


@dataclass
class PullResult:
    run_id: str
    dest: Path
    downloaded: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    downloaded_bytes: int = 0
    kind: str = "run"


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


def is_sweep_manifest(manifest: dict[str, Any] | None) -> bool:
    return bool(manifest) and manifest.get("kind") == SWEEP_KIND


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
    # The recorded state, not one derived from this machine's processes: the run may be training on
    # another node of a shared filesystem.
    status = run_state(run_dir, derive=False)
    if status in ACTIVE_STATES and not allow_running:
        raise UserError(
            f"run {run_id} has not finished (its status.json says {status!r}): wait for it to end, or pass "
            "--allow-running to push a snapshot"
        )
    return _push_files(
        client, spec, run_id, scan_run(run_dir, spec), {"status": status},
        check_remote=check_remote, prune=prune, log=log,
    )


def push_sweep(
    client: Any,
    spec: ArchiveSpec,
    sweep_dir: Path,
    sweep_id: str,
    *,
    check_remote: bool = False,
    prune: bool = False,
    log: Log = _quiet,
) -> PushResult:
    """Archive a packed sweep's own files (packed.json, .hydra/, ...) under ``sweep_id``.

    Its points are runs archived under ``<sweep_id>/<n>``; this manifest (``"kind": "sweep"``) names them
    and carries the sweep's status: the points' common status, or ``mixed``.
    """
    check_run_id(sweep_id)
    points = sweep_points(sweep_dir)
    states = {run_state(sweep_dir / p, derive=False) for p in points}
    status = states.pop() if len(states) == 1 else ("mixed" if states else "unknown")
    extra = {"kind": SWEEP_KIND, "points": points, "status": status}
    result = _push_files(
        client, spec, sweep_id, scan_sweep(sweep_dir, spec), extra,
        check_remote=check_remote, prune=prune, log=log,
    )
    result.kind = SWEEP_KIND
    return result


_STAMPS = ("pushed_at", "pushed_by")  # what changes on every push, whatever was pushed


def _same_content(a: dict[str, Any], b: dict[str, Any]) -> bool:
    def content(m: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in m.items() if k not in _STAMPS}

    return content(a) == content(b)


def _push_files(
    client: Any,
    spec: ArchiveSpec,
    run_id: str,
    local: list[LocalFile],
    extra: dict[str, Any],
    *,
    check_remote: bool,
    prune: bool,
    log: Log,
) -> PushResult:
    result = PushResult(run_id, spec.url(spec.run_prefix(run_id)))
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
        **extra,
        "pushed_at": utc_now(),
        "pushed_by": f"tradelab_jax {__version__}",
        "file_count": len(entries),
        "total_size": result.total_bytes,
        "files": entries,
    }
    if previous is not None and _same_content(previous, manifest):
        result.written = False  # nothing changed: the archived manifest (and its pushed_at) stays as it is
    else:
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
    keep = keep | {MANIFEST_NAME}
    rels = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=spec.bucket, Prefix=prefix):
        rels += [obj["Key"][len(prefix) :] for obj in page.get("Contents", [])]
    # Objects of runs nested below this id (multirun children, a sweep's points) belong to those runs.
    nested = tuple(r[: -len(MANIFEST_NAME)] for r in rels if r.endswith(f"/{MANIFEST_NAME}"))
    stale = [r for r in rels if r not in keep and not r.startswith(nested)]
    for rel in stale:
        log(f"prune {rel}")
        client.delete_object(Bucket=spec.bucket, Key=prefix + rel)
    return stale


def _safe_parts(path: str, run_id: str) -> tuple[str, ...]:
    pure = PurePosixPath(path)
    parts = pure.parts
    if pure.is_absolute() or not parts or any(p in {"", ".", ".."} for p in parts) or "\\" in path:
        raise UserError(
            f"the archive manifest of run {run_id} names an unsafe path {path!r}; only relative paths inside "
            "the run directory are restored"
        )
    return parts


def _plan_pull(
    manifest: dict[str, Any], run_id: str, outputs: Path
) -> tuple[PullResult, list[tuple[dict[str, Any], Path]], list[str]]:
    """What pulling ``run_id`` would download, and which local files differ from the archive."""
    dest = inside(outputs, *run_id.split("/"))
    kind = SWEEP_KIND if is_sweep_manifest(manifest) else "run"
    result = PullResult(run_id, dest, kind=kind)
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
    return result, plan, conflicts


def _pull_all(
    client: Any,
    spec: ArchiveSpec,
    items: list[tuple[str, dict[str, Any]]],
    outputs: Path,
    *,
    force: bool,
    log: Log,
) -> list[PullResult]:
    """Pull every ``(id, manifest)``; a conflict anywhere stops the pull before anything is written."""
    plans = [_plan_pull(manifest, run_id, outputs) for run_id, manifest in items]
    for result, _, conflicts in plans:
        if conflicts and not force:
            raise UserError(
                f"{result.dest} already holds a different copy of run {result.run_id} ({len(conflicts)} "
                f"file(s) differ, e.g. {conflicts[0]}): pass --force to replace them with the archived files"
            )
    for result, plan, _ in plans:
        for entry, target in plan:
            if target.is_dir():
                raise UserError(
                    f"cannot restore {entry['path']}: {target} is a directory; move it away first"
                )
            log(f"download {entry['path']} ({human_size(entry['size'])})")
            download(client, spec, spec.file_key(result.run_id, entry["path"]), target, entry)
            result.downloaded.append(entry["path"])
            result.downloaded_bytes += entry["size"]
    return [result for result, _, _ in plans]


def _no_such_run(spec: ArchiveSpec, run_id: str) -> UserError:
    return UserError(
        f"no archived run {run_id!r} in {spec.url(spec.runs_root)}: `tradelab archive list` shows the "
        "archived run ids"
    )


def pull_run(
    client: Any,
    spec: ArchiveSpec,
    run_id: str,
    outputs: Path,
    *,
    force: bool = False,
    log: Log = _quiet,
) -> PullResult:
    """Restore the files of one archived id under ``outputs/<run_id>``, each verified against the manifest."""
    check_run_id(run_id)
    manifest = get_manifest(client, spec, run_id)
    if manifest is None:
        raise _no_such_run(spec, run_id)
    return _pull_all(client, spec, [(run_id, manifest)], outputs, force=force, log=log)[0]


@dataclass
class PullTree:
    results: list[PullResult]
    note: str | None = None


def archived_ids(client: Any, spec: ArchiveSpec, below: str | None = None) -> list[str]:
    """Ids with a manifest in the archive (only those nested below ``below`` when given), sorted."""
    root = spec.run_prefix(below) if below else spec.runs_root
    suffix = f"/{MANIFEST_NAME}"
    ids = []
    for page in client.get_paginator("list_objects_v2").paginate(Bucket=spec.bucket, Prefix=root):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key.endswith(suffix) and len(key) > len(root) + len(MANIFEST_NAME):
                ids.append(key[len(spec.runs_root) : -len(suffix)])
    return sorted(ids)


def pull_tree(
    client: Any,
    spec: ArchiveSpec,
    run_id: str,
    outputs: Path,
    *,
    force: bool = False,
    log: Log = _quiet,
) -> PullTree:
    """``pull`` of the CLI: a run brings its sweep's files (packed.json, ...) along; a sweep (or any id
    with archived runs below it) brings every run below it, then its own files last."""
    check_run_id(run_id)
    manifest = get_manifest(client, spec, run_id)
    note = None
    if manifest is not None and not is_sweep_manifest(manifest):
        items = [(run_id, manifest)]
        parts = run_id.split("/")
        for n in range(len(parts) - 1, 0, -1):
            above = "/".join(parts[:n])
            sweep = get_manifest(client, spec, above)
            if is_sweep_manifest(sweep):
                items.append((above, sweep))
    else:
        nested = [(i, get_manifest(client, spec, i)) for i in archived_ids(client, spec, run_id)]
        nested = [(i, m) for i, m in nested if m is not None]
        if manifest is None and not nested:
            raise _no_such_run(spec, run_id)
        runs_first = sorted(nested, key=lambda im: (is_sweep_manifest(im[1]), -im[0].count("/"), im[0]))
        items = runs_first + ([(run_id, manifest)] if manifest is not None else [])
        if manifest is None and not any(is_sweep_manifest(m) for _, m in nested):
            note = (
                f"{run_id} has no archived sweep files (packed.json, .hydra/): it was pushed by an older "
                "tradelab or is a plain folder of runs; push the sweep folder again to archive them"
            )
    return PullTree(_pull_all(client, spec, items, outputs, force=force, log=log), note)


def list_runs(client: Any, spec: ArchiveSpec) -> list[dict[str, Any]]:
    """One row per archived run or sweep (id, kind, status, files, size, pushed_at), sorted by id.

    A sweep's row counts its own files plus those of every run archived below it, and lists those runs as
    ``points``.
    """
    manifests = {i: m for i in archived_ids(client, spec) if (m := get_manifest(client, spec, i)) is not None}
    rows = []
    for run_id, manifest in manifests.items():
        row = {
            "id": run_id,
            "kind": SWEEP_KIND if is_sweep_manifest(manifest) else "run",
            "status": manifest.get("status", "unknown"),
            "files": len(manifest["files"]),
            "size": sum(e["size"] for e in manifest["files"]),
            "pushed_at": manifest.get("pushed_at", ""),
        }
        if row["kind"] == SWEEP_KIND:
            below = {i: m for i, m in manifests.items() if i.startswith(f"{run_id}/")}
            row["files"] += sum(len(m["files"]) for m in below.values())
            row["size"] += sum(e["size"] for m in below.values() for e in m["files"])
            row["points"] = [i for i, m in below.items() if not is_sweep_manifest(m)]
        rows.append(row)
    return rows


def human_size(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if n < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"
