"""Fixtures for the retention tests: real bars (tests/data helpers) and the archive tests' moto S3 server."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

TESTS = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(TESTS / "data"))

# The archive tests' fixtures (moto S3 on 127.0.0.1, fake credentials, a bucket per test), reused as they are.
_spec = importlib.util.spec_from_file_location("archive_fixtures", TESTS / "archive" / "conftest.py")
_archive = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_archive)
moto_endpoint = _archive.moto_endpoint
aws_env = _archive.aws_env
s3 = _archive.s3
