"""The golden results (tests/golden/record.py) are reproduced bit for bit on a machine kind they were
recorded on, and to float rounding (the first chunk) on any other.

Eval summaries and metrics are compared as exact JSON values (every float to the last bit, as JSON writes
them) and the final checkpoints by sha256 of their bytes. A mismatch names the case, the run directory and
the first differing field. If a change is meant to alter results, regenerate on purpose with
``.venv/bin/python tests/golden/record.py --regenerate`` and say why in the commit.
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import record

MACHINES = record.load()
HERE_FP = record.fingerprint()
SAME_MACHINE = [m for m in MACHINES if m["fingerprint"] == HERE_FP]


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


def close_difference(want: dict, got: dict, where: str) -> str | None:
    """The first numeric field of ``got`` that is not within the cross-machine tolerance of ``want``."""
    if set(want) != set(got):
        return f"{where}: fields {sorted(set(want) ^ set(got))} in only one"
    for key, w in want.items():
        g = got[key]
        if isinstance(w, (int, float)) and not isinstance(w, bool):
            if abs(g - w) > record.FIRST_CHUNK_ATOL + record.FIRST_CHUNK_RTOL * abs(w):
                return f"{where}.{key}: {w!r} != {g!r}"
        elif g != w:
            return f"{where}.{key}: {w!r} != {g!r}"
    return None


def test_close_difference_allows_rounding_not_a_change():
    assert close_difference({"loss": 26.006982, "update": 16}, {"loss": 26.006984, "update": 16}, "") is None
    assert close_difference({"loss": 26.0}, {"loss": 26.5}, "m") == "m.loss: 26.0 != 26.5"
    assert close_difference({"update": 16}, {"update": 17}, "m") == "m.update: 16 != 17"


@pytest.mark.parametrize("case", list(record.CASES))
def test_golden_case_is_bit_identical(case, tmp_path):
    got = record.run_case(case, tmp_path / case)
    if SAME_MACHINE:  # a record of this machine kind: every bit
        want = SAME_MACHINE[0]["cases"][case]
        assert [r["dir"] for r in got] == [r["dir"] for r in want]
        for g, w in zip(got, want, strict=True):
            diff = first_difference(w, g, f"{case}/{w['dir']}")
            assert diff is None, f"golden result changed at {diff} (regenerate only on purpose: record.py)"
        return
    # Another machine kind: XLA:CPU rounds differently from the first update on; the first chunk's metrics
    # agree to rounding with every record (a change of semantics moves them far more); the layout is equal.
    print(f"no golden record for this machine ({HERE_FP['cpu']}, {HERE_FP['isa']}): comparing the first "
          f"chunk to rounding with {len(MACHINES)} record(s); add one with record.py --add-machine",
          file=sys.stderr)
    for machine in MACHINES:
        want = machine["cases"][case]
        assert [r["dir"] for r in got] == [r["dir"] for r in want]
        for g, w in zip(got, want, strict=True):
            assert [m["env_steps"] for m in g["metrics"]] == [m["env_steps"] for m in w["metrics"]]
            assert g["checkpoint"]["file"] == w["checkpoint"]["file"]
            assert g["checkpoint"]["bytes"] == w["checkpoint"]["bytes"]
            diff = close_difference(w["metrics"][0], g["metrics"][0], f"{case}/{w['dir']}.metrics[0]")
            assert diff is None, f"golden result changed beyond float rounding at {diff}"
