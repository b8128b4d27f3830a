"""Run directories archived in S3: ``tradelab archive push|pull|list`` (see docs/archive.md).

Importing this package is cheap; boto3 is loaded when a command talks to S3.
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from tradelab_jax.archive.cli import main as _main

    return _main(argv)


__all__ = ["main"]
