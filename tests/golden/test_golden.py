"""The golden results (tests/golden/record.py) are reproduced bit for bit.

Eval summaries and metrics are compared as exact JSON values (every float to the last bit, as JSON writes
them) and the final checkpoints by sha256 of their bytes. A mismatch names the case, the run directory and
the first differing field. If a change is meant to alter results, regenerate on purpose with
``.venv/bin/python tests/golden/record.py --regenerate`` and say why in the commit.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record

GOLDEN = json.loads(record.GOLDEN_FILE.read_text())


def first_difference(a, b, where=""):
    """The path of the first value that differs between two JSON trees, or None."""
    if type(a) is not type(b):
        return f"{where}: {a!r} != {b!r}"
    if isinstance(a, dict):
        for key in sorted(set(a) | set(b)):
            if key not in a or key not in b:
                return f"{where}.{key}: present in only one"
            found = first_difference(a[key], b[key], f"{where}.{key}")
            if found:
                return found
        return None
    if isinstance(a, list):
        if len(a) != len(b):
            return f"{where}: {len(a)} items != {len(b)}"
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            found = first_difference(x, y, f"{where}[{i}]")
            if found:
                return found
        return None
    return None if a == b else f"{where}: {a!r} != {b!r}"


def test_first_difference_finds_a_changed_float():
    changed = first_difference({"a": [1.0, 2.0]}, {"a": [1.0, 2.0000000000000004]})
    assert changed == ".a[1]: 2.0 != 2.0000000000000004"
    assert first_difference({"a": 1}, {"a": 1}) is None


@pytest.mark.parametrize("case", list(record.CASES))
def test_golden_case_is_bit_identical(case, tmp_path):
    got = record.run_case(case, tmp_path / case)
    want = GOLDEN[case]
    assert [r["dir"] for r in got] == [r["dir"] for r in want]
    for g, w in zip(got, want, strict=True):
        diff = first_difference(w, g, f"{case}/{w['dir']}")
        assert diff is None, f"golden result changed at {diff} (regenerate only on purpose: see record.py)"
