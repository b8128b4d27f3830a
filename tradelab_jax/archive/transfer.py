"""Moving one file to or from S3 with its checksum verified on both sides.

Uploads ask S3 for a SHA-256 checksum (``ChecksumAlgorithm='SHA256'``): S3 checks the bytes it received,
and we compare the checksum it reports with the digest of the local file taken before the upload, so a
file that changed mid-upload or a corrupted transfer is caught. Large files go up in parts; an interrupted
multipart upload is found again with ``list_multipart_uploads`` and its parts are reused when their size
and digest match the local file's.
"""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

from tradelab_jax.archive.client import is_missing
from tradelab_jax.archive.config import ArchiveSpec
from tradelab_jax.archive.local import LocalFile
from tradelab_jax.errors import UserError
from tradelab_jax.io import atomic_path
from tradelab_jax.runs import utc_now

_CHUNK = 1024 * 1024


class IntegrityError(UserError):
    """What S3 holds (or sent back) does not match the local digest."""

    exit_code = 4


def _b64(digest: bytes) -> str:
    return base64.b64encode(digest).decode()


def _strip_etag(etag: str | None) -> str:
    return (etag or "").strip('"')


def remote_matches(head: dict[str, Any], lf: LocalFile) -> bool:
    """Whether the object described by ``head`` (a HeadObject response) holds exactly ``lf``'s bytes.

    Prefers S3's SHA-256 checksum; falls back to the ETag (an MD5 unless SSE-KMS/SSE-C is in use), and
    only then to the sha256 we stored as metadata.
    """
    if head.get("ContentLength") != lf.size:
        return False
    checksum = head.get("ChecksumSHA256")
    if checksum:
        return _same_checksum(checksum, lf.expected_checksum())
    encrypted = head.get("ServerSideEncryption") == "aws:kms" or head.get("SSECustomerAlgorithm")
    if not encrypted and _strip_etag(head.get("ETag")):
        return _strip_etag(head.get("ETag")) == lf.expected_etag()
    return head.get("Metadata", {}).get("sha256") == lf.sha256


def _same_checksum(got: str, want: str) -> bool:
    """Compare S3 checksums; some servers omit the '-N' part count of a composite checksum."""
    got_base, _, got_n = got.partition("-")
    want_base, _, want_n = want.partition("-")
    return got_base == want_base and (not got_n or got_n == want_n)


def head(client: Any, spec: ArchiveSpec, key: str) -> dict[str, Any] | None:
    from botocore.exceptions import ClientError

    try:
        return client.head_object(Bucket=spec.bucket, Key=key, ChecksumMode="ENABLED")
    except ClientError as err:
        if is_missing(err):
            return None
        raise


def upload(client: Any, spec: ArchiveSpec, key: str, lf: LocalFile) -> dict[str, Any]:
    """Upload ``lf`` to ``key`` and verify it; returns its manifest entry."""
    if lf.part_size is None:
        etag = _put_single(client, spec, key, lf)
    else:
        etag = _put_multipart(client, spec, key, lf)
    return manifest_entry(lf, etag, utc_now())


def manifest_entry(lf: LocalFile, etag: str, uploaded_at: str) -> dict[str, Any]:
    return {
        "path": lf.path,
        "size": lf.size,
        "sha256": lf.sha256,
        "checksum_sha256": lf.expected_checksum(),
        "etag": etag,
        "parts": lf.parts,
        "part_size": lf.part_size,
        "uploaded_at": uploaded_at,
    }


def _put_single(client: Any, spec: ArchiveSpec, key: str, lf: LocalFile) -> str:
    with open(lf.abspath, "rb") as body:
        resp = client.put_object(
            Bucket=spec.bucket,
            Key=key,
            Body=body,
            ChecksumAlgorithm="SHA256",
            Metadata={"sha256": lf.sha256},
        )
    got = resp.get("ChecksumSHA256")
    ok = _same_checksum(got, lf.expected_checksum()) if got else None
    if ok is None:  # the server reported no checksum: ask again, falling back to the ETag
        info = head(client, spec, key) or {}
        ok = remote_matches(info, lf)
    if not ok:
        client.delete_object(Bucket=spec.bucket, Key=key)
        raise IntegrityError(
            f"{lf.path} changed while it was uploaded or was corrupted on the way (S3's SHA-256 differs "
            "from the local file's); the upload was removed, push again"
        )
    return _strip_etag(resp.get("ETag"))


def _put_multipart(client: Any, spec: ArchiveSpec, key: str, lf: LocalFile) -> str:
    assert lf.part_size is not None
    upload_id, done = _resumable_upload(client, spec, key, lf)
    if upload_id is None:
        upload_id = client.create_multipart_upload(
            Bucket=spec.bucket,
            Key=key,
            ChecksumAlgorithm="SHA256",
            Metadata={"sha256": lf.sha256},
        )["UploadId"]
    parts = []
    whole = hashlib.sha256()
    read = 0
    with open(lf.abspath, "rb") as f:
        for number in range(1, len(lf.part_sha256) + 1):
            chunk = f.read(lf.part_size)
            digest = hashlib.sha256(chunk).digest()
            whole.update(chunk)
            read += len(chunk)
            if digest != lf.part_sha256[number - 1]:
                raise IntegrityError(
                    f"{lf.path} changed while it was being pushed (part {number} differs from the file "
                    "that was hashed); push again once it stops changing"
                )
            etag = done.get(number)
            if etag is None:
                resp = client.upload_part(
                    Bucket=spec.bucket,
                    Key=key,
                    UploadId=upload_id,
                    PartNumber=number,
                    Body=chunk,
                    ChecksumAlgorithm="SHA256",
                )
                got = resp.get("ChecksumSHA256")
                if got and got != _b64(digest):
                    raise IntegrityError(
                        f"S3 stored part {number} of {lf.path} with a different SHA-256; push again"
                    )
                etag = _strip_etag(resp["ETag"])
            parts.append({"PartNumber": number, "ETag": f'"{etag}"', "ChecksumSHA256": _b64(digest)})
        grew = bool(f.read(1))
    if grew or read != lf.size or whole.hexdigest() != lf.sha256:
        raise IntegrityError(
            f"{lf.path} changed while it was being pushed; push again once it stops changing"
        )
    resp = client.complete_multipart_upload(
        Bucket=spec.bucket, Key=key, UploadId=upload_id, MultipartUpload={"Parts": parts}
    )
    info = head(client, spec, key) or {}
    if not remote_matches(info, lf):
        client.delete_object(Bucket=spec.bucket, Key=key)
        raise IntegrityError(
            f"the assembled S3 object for {lf.path} does not match the local file's checksum; it was "
            "removed, push again"
        )
    _abort_others(client, spec, key, keep=upload_id)
    return _strip_etag(resp.get("ETag") or info.get("ETag"))


def _uploads_for(client: Any, spec: ArchiveSpec, key: str) -> list[dict[str, Any]]:
    uploads: list[dict[str, Any]] = []
    for page in client.get_paginator("list_multipart_uploads").paginate(Bucket=spec.bucket, Prefix=key):
        uploads += [u for u in page.get("Uploads", []) if u["Key"] == key]
    return sorted(uploads, key=lambda u: u.get("Initiated") or 0, reverse=True)


def _resumable_upload(
    client: Any, spec: ArchiveSpec, key: str, lf: LocalFile
) -> tuple[str | None, dict[int, str]]:
    """The in-progress upload of ``key`` with the most parts equal to ``lf``'s, and those parts' ETags."""
    best: tuple[str | None, dict[int, str]] = (None, {})
    for upload in _uploads_for(client, spec, key):
        reusable = _matching_parts(client, spec, key, upload["UploadId"], lf)
        if reusable is not None and (best[0] is None or len(reusable) > len(best[1])):
            best = (upload["UploadId"], reusable)
    return best


def _matching_parts(
    client: Any, spec: ArchiveSpec, key: str, upload_id: str, lf: LocalFile
) -> dict[int, str] | None:
    """Part number -> ETag of the parts of ``upload_id`` equal to ``lf``'s; None for a foreign layout."""
    from botocore.exceptions import ClientError

    assert lf.part_size is not None
    matches: dict[int, str] = {}
    try:
        pages = client.get_paginator("list_parts").paginate(Bucket=spec.bucket, Key=key, UploadId=upload_id)
        remote = [p for page in pages for p in page.get("Parts", [])]
    except ClientError as err:
        if is_missing(err):
            return None
        raise
    n = len(lf.part_sha256)
    for part in remote:
        number = part["PartNumber"]
        if number > n:
            return None
        expected_size = lf.part_size if number < n else lf.size - lf.part_size * (n - 1)
        if part.get("Size") != expected_size:
            return None  # uploaded with another part size: nothing lines up
        checksum = part.get("ChecksumSHA256")
        if checksum:
            same = checksum == _b64(lf.part_sha256[number - 1])
        else:
            same = _strip_etag(part.get("ETag")) == lf.part_md5[number - 1].hex()
        if same:
            matches[number] = _strip_etag(part["ETag"])
    return matches


def _abort_others(client: Any, spec: ArchiveSpec, key: str, keep: str) -> None:
    for upload in _uploads_for(client, spec, key):
        if upload["UploadId"] != keep:
            client.abort_multipart_upload(Bucket=spec.bucket, Key=key, UploadId=upload["UploadId"])


def download(client: Any, spec: ArchiveSpec, key: str, dest: Path, entry: dict[str, Any]) -> None:
    """Stream ``key`` into ``dest`` atomically; the file appears only if its sha256 matches ``entry``."""
    resp = client.get_object(Bucket=spec.bucket, Key=key, ChecksumMode="ENABLED")
    digest = hashlib.sha256()
    size = 0
    with atomic_path(dest) as tmp:
        with open(tmp, "wb") as out:
            for block in resp["Body"].iter_chunks(_CHUNK):
                digest.update(block)
                size += len(block)
                out.write(block)
        if digest.hexdigest() != entry["sha256"] or size != entry["size"]:
            raise IntegrityError(
                f"downloaded {entry['path']} does not match the archive manifest (sha256 "
                f"{digest.hexdigest()[:12]}… instead of {entry['sha256'][:12]}…); nothing was written, "
                "pull again"
            )
