"""Runs on the pod: copy the start-up log to ``s3://BUCKET/PREFIX/pods/<pod id>/pod.log``.

``python -m tradelab_jax.pod.logship LOG --every 30`` uploads the log whenever it grew, until killed;
``--once`` uploads it one last time. ``tradelab pod logs POD`` reads it back. RunPod's API has no call
that returns a container's output, so S3 is where the log can be read from outside the pod.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

from tradelab_jax.errors import UserError


def log_key_name() -> str:
    """The pod's id as RunPod sets it (``RUNPOD_POD_ID``), else the name the launcher gave it."""
    return os.environ.get("RUNPOD_POD_ID") or os.environ.get("TRADELAB_POD_NAME") or "unknown-pod"


def ship(client, spec, log: Path, key: str) -> None:
    client.put_object(
        Bucket=spec.bucket, Key=key, Body=log.read_bytes(), ContentType="text/plain; charset=utf-8"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tradelab_jax.pod.logship", description=__doc__)
    parser.add_argument("log", type=Path)
    parser.add_argument("--every", type=float, default=30.0, help="seconds between uploads")
    parser.add_argument("--once", action="store_true", help="upload once and exit")
    args = parser.parse_args(argv)
    from tradelab_jax.archive.client import make_client, s3_errors
    from tradelab_jax.archive.config import spec_from

    try:
        spec = spec_from()
        key = spec.pod_log_key(log_key_name())
        with s3_errors(spec):
            client = make_client(spec)
            last = None
            while True:
                if args.log.is_file():
                    stamp = args.log.stat().st_size, args.log.stat().st_mtime_ns
                    if stamp != last:
                        try:
                            ship(client, spec, args.log, key)
                            last = stamp
                        except Exception as err:  # a network blip must not stop later uploads
                            if args.once:
                                raise
                            print(f"logship: upload failed ({type(err).__name__}); retrying", file=sys.stderr)
                if args.once:
                    return 0
                time.sleep(args.every)
    except UserError as err:  # the pod keeps training even if its log cannot be shipped
        print(f"logship: {err}", file=sys.stderr)
        return err.exit_code


if __name__ == "__main__":
    sys.exit(main())
