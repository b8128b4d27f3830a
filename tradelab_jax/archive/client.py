"""The boto3 S3 client and the translation of S3 failures into one-sentence user errors.

Credentials come only from boto3's standard chain; this module never reads, logs or stores them.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from tradelab_jax.archive.config import ArchiveSpec
from tradelab_jax.errors import UserError

_AUTH_CODES = {
    "AccessDenied",
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "TokenRefreshRequired",
    "403",
}

CREDENTIALS_HELP = (
    "set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (plus AWS_SESSION_TOKEN for temporary keys), "
    "or AWS_PROFILE naming a profile in ~/.aws/credentials, or run where an instance role is attached"
)


def make_client(spec: ArchiveSpec) -> Any:
    """An S3 client for ``spec`` (endpoint override for MinIO/moto; path-style addressing there)."""
    import boto3
    from botocore.config import Config

    config = Config(
        connect_timeout=5,
        read_timeout=60,
        retries={"max_attempts": 3, "mode": "standard"},
        user_agent_extra="tradelab_jax-archive",
        s3={"addressing_style": "path"} if spec.endpoint_url else None,
    )
    # A fresh session reads the credential chain now, not whatever boto3's default session cached.
    session = boto3.session.Session()
    return session.client("s3", endpoint_url=spec.endpoint_url, region_name=spec.region, config=config)


def error_code(err: Exception) -> str:
    response = getattr(err, "response", None) or {}
    return str(response.get("Error", {}).get("Code", ""))


def is_missing(err: Exception) -> bool:
    return error_code(err) in {"404", "NoSuchKey", "NotFound", "NoSuchUpload"}


@contextlib.contextmanager
def s3_errors(spec: ArchiveSpec) -> Iterator[None]:
    """Turn credential, network and bucket failures into :class:`UserError`; let bugs through."""
    from botocore import exceptions as bx

    try:
        yield
    except (bx.NoCredentialsError, bx.PartialCredentialsError, bx.ProfileNotFound) as err:
        raise UserError(f"no usable AWS credentials ({type(err).__name__}): {CREDENTIALS_HELP}") from None
    except (bx.EndpointConnectionError, bx.ConnectTimeoutError, bx.ReadTimeoutError) as err:
        raise UserError(
            f"cannot reach the S3 endpoint {spec.where()} ({type(err).__name__}): check --endpoint-url / "
            "TRADELAB_S3_ENDPOINT_URL and the network"
        ) from None
    except bx.ClientError as err:
        code = error_code(err)
        if code == "NoSuchBucket":
            raise UserError(
                f"bucket {spec.bucket!r} does not exist at {spec.where()}: create it, or pass --bucket / set "
                "TRADELAB_S3_BUCKET to an existing bucket"
            ) from None
        if code in _AUTH_CODES:
            raise UserError(
                f"S3 refused the request to bucket {spec.bucket!r} ({code}): check the credentials "
                f"({CREDENTIALS_HELP}) and that they may read and write this bucket"
            ) from None
        raise
