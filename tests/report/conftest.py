"""The report tests use the stats tests' real tiny packed sweep."""

from tests.stats.conftest import tiny_sweep  # noqa: F401 - a fixture
