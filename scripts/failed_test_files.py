"""Print the test files that pytest's last run recorded as failed (space-separated), for one re-run."""

import json
import pathlib

cache = pathlib.Path(".pytest_cache/v/cache/lastfailed")
failed = json.loads(cache.read_text()) if cache.exists() else {}
print(" ".join(sorted({node.split("::")[0] for node in failed if node.startswith("tests/")})))
