"""Where runs are archived: bucket, prefix, endpoint and transfer sizes, from flags then environment.

Nothing here reads credentials: boto3 finds them through the standard AWS chain (environment variables,
``AWS_PROFILE`` / ``~/.aws``, an instance role), and they are never logged or written anywhere.
"""

from __future__ import annotations

import math
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradelab_jax.errors import UserError
from tradelab_jax.paths import check_id, conf_dir

MiB = 1024 * 1024
MIN_PART_SIZE = 5 * MiB  # S3's smallest part (all but the last)
MAX_PARTS = 10_000  # S3's largest part count
MANIFEST_NAME = "archive_manifest.json"
MANIFEST_FORMAT = "tradelab-archive/1"

ENV_BUCKET = "TRADELAB_S3_BUCKET"
ENV_PREFIX = "TRADELAB_S3_PREFIX"
ENV_ENDPOINT = "TRADELAB_S3_ENDPOINT_URL"

_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_PREFIX_PART = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]*$")


@dataclass(frozen=True)
class ArchiveSpec:
    """The static description of an archive location and how files travel there."""

    bucket: str
    prefix: str = ""  # normalised: "" or "a/b/" (always ends with "/")
    endpoint_url: str | None = None
    region: str | None = None
    multipart_threshold: int = 64 * MiB
    part_size: int = 64 * MiB

    @property
    def runs_root(self) -> str:
        return f"{self.prefix}runs/"

    def run_prefix(self, run_id: str) -> str:
        return f"{self.runs_root}{run_id}/"

    def file_key(self, run_id: str, rel_path: str) -> str:
        return f"{self.run_prefix(run_id)}{rel_path}"

    def manifest_key(self, run_id: str) -> str:
        return self.file_key(run_id, MANIFEST_NAME)

    def pod_log_key(self, pod: str) -> str:
        return f"{self.prefix}pods/{pod}/pod.log"

    def url(self, key: str = "") -> str:
        return f"s3://{self.bucket}/{key}"

    def where(self) -> str:
        """The endpoint in words, for error messages."""
        return self.endpoint_url or "AWS S3"

    def part_size_for(self, size: int) -> int | None:
        """The part size a file of ``size`` bytes is uploaded with, or None for a single PUT."""
        if size <= self.multipart_threshold:
            return None
        part = max(self.part_size, MIN_PART_SIZE, math.ceil(size / MAX_PARTS))
        return part


def normalise_prefix(prefix: str | None) -> str:
    parts = [p for p in (prefix or "").strip().split("/") if p]
    for part in parts:
        if not _PREFIX_PART.match(part) or ".." in part:
            raise UserError(
                f"invalid S3 prefix {prefix!r}: use '/'-separated names of letters, digits, '.', '_', '=' "
                "or '-' (e.g. tradelab or team/tradelab)"
            )
    return "".join(f"{p}/" for p in parts)


def check_run_id(run_id: str) -> str:
    """A run id is the run folder's path under the outputs root: 1-4 plain names joined by '/'."""
    parts = run_id.split("/") if isinstance(run_id, str) else []
    valid = 1 <= len(parts) <= 4
    for part in parts:
        try:
            check_id(part)
        except UserError:
            valid = False
    if not valid:
        raise UserError(
            f"invalid run id {run_id!r}: use the run folder's path under the outputs root, e.g. "
            "20261126T120000Z_demo or multirun/20261126T120000Z_sweep/3"
        )
    return run_id


CONFIG_KEYS = ("bucket", "prefix", "endpoint_url", "multipart_threshold_mib", "part_size_mib")


def file_defaults(path: str | os.PathLike | None = None) -> dict[str, Any]:
    """The archive settings of ``conf/archive.yaml`` (or ``path``), the lowest-precedence layer."""
    import yaml

    path = Path(path) if path is not None else conf_dir() / "archive.yaml"
    if not path.is_file():
        return {}
    try:
        loaded = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as err:
        raise UserError(f"archive config {path} is not valid YAML ({err.__class__.__name__})") from None
    if not isinstance(loaded, dict) or set(loaded) - set(CONFIG_KEYS):
        unknown = sorted(set(loaded) - set(CONFIG_KEYS)) if isinstance(loaded, dict) else loaded
        raise UserError(f"archive config {path}: unknown keys {unknown}; valid: {', '.join(CONFIG_KEYS)}")
    return {k: v for k, v in loaded.items() if v is not None}


def spec_from(
    bucket: str | None = None,
    prefix: str | None = None,
    endpoint_url: str | None = None,
    region: str | None = None,
    multipart_threshold_mib: float | None = None,
    part_size_mib: float | None = None,
    env: dict[str, str] | None = None,
    config: dict[str, Any] | None = None,
) -> ArchiveSpec:
    """Flags win over ``TRADELAB_S3_*`` environment variables, which win over ``conf/archive.yaml``
    (``config``, read when not given); the bucket is required."""
    env = os.environ if env is None else env
    config = file_defaults() if config is None else config
    bucket = bucket or env.get(ENV_BUCKET) or str(config.get("bucket") or "")
    if not bucket:
        raise UserError(
            f"no S3 bucket given: pass --bucket or set {ENV_BUCKET} (e.g. {ENV_BUCKET}=my-lab-runs)"
        )
    if not _BUCKET.match(bucket) or ".." in bucket:
        raise UserError(
            f"invalid S3 bucket name {bucket!r}: use 3-63 lower-case letters, digits, '.' or '-', "
            "starting and ending with a letter or digit"
        )
    if prefix is None:
        prefix = env.get(ENV_PREFIX, str(config.get("prefix") or ""))
    prefix = normalise_prefix(prefix)
    endpoint_url = endpoint_url or env.get(ENV_ENDPOINT) or config.get("endpoint_url") or None
    if endpoint_url and not re.match(r"^https?://[^\s/]+", endpoint_url):
        raise UserError(
            f"invalid S3 endpoint URL {endpoint_url!r}: use http(s)://host[:port], e.g. http://127.0.0.1:9000"
        )
    region = region or env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION") or None
    threshold = _mib(multipart_threshold_mib, config.get("multipart_threshold_mib", 64),
                     "--multipart-threshold-mib")
    part = _mib(part_size_mib, config.get("part_size_mib", 64), "--part-size-mib")
    if part < MIN_PART_SIZE:
        raise UserError(f"--part-size-mib must be at least 5 (S3's smallest part), got {part / MiB:g}")
    return ArchiveSpec(bucket, prefix, endpoint_url, region, threshold, part)


def _mib(value: float | None, default: float, flag: str) -> int:
    value = default if value is None else value
    if not value > 0:
        raise UserError(f"{flag} must be a positive number of MiB, got {value}")
    return int(value * MiB)
