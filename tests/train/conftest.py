"""Fixtures for the training tests."""

from __future__ import annotations

from pathlib import Path

import pytest


@pytest.fixture
def outputs(tmp_path: Path) -> Path:
    return tmp_path / "outputs"
