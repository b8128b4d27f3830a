"""The comparison rules, on hand-made numbers (no JAX)."""

from __future__ import annotations

import numpy as np

from tradelab_jax.parity.compare import (
    Report,
    Tolerance,
    compare_arrays,
    compare_text,
    count_mismatches,
    format_table,
    max_differences,
)


def test_tolerance_is_atol_plus_rtol_times_reference():
    ref = np.array([100.0, 0.0, -2.0])
    tol = Tolerance(atol=0.01, rtol=1e-3)
    assert count_mismatches(ref + np.array([0.1, 0.01, -0.002]), ref, tol) == 0
    assert count_mismatches(ref + np.array([0.12, 0.0, 0.0]), ref, tol) == 1  # 0.12 > 0.01 + 0.1
    assert count_mismatches(ref + np.array([0.0, 0.02, 0.0]), ref, tol) == 1


def test_nan_and_inf_must_sit_in_the_same_places():
    tol = Tolerance(atol=1.0)
    assert count_mismatches([np.nan, 1.0], [np.nan, 1.5], tol) == 0
    assert count_mismatches([np.nan, 1.0], [0.0, 1.0], tol) == 1
    assert count_mismatches([np.inf], [1e300], tol) == 1
    assert count_mismatches([np.inf], [-np.inf], tol) == 1
    assert count_mismatches([np.inf], [np.inf], tol) == 0


def test_exact_means_equal_bits():
    a = np.array([0.0, 1.0, np.nan], np.float32)
    assert count_mismatches(a, a.copy(), Tolerance.bits()) == 0
    assert count_mismatches(np.array([-0.0], np.float32), np.array([0.0], np.float32), Tolerance.bits()) == 1
    nudged = np.nextafter(np.float32(1.0), np.float32(2.0))
    assert count_mismatches(np.array([nudged]), np.array([np.float32(1.0)]), Tolerance.bits()) == 1


def test_max_differences_relative_to_the_quantitys_own_scale():
    max_abs, max_rel = max_differences([101.0, 1e-12], [100.0, 0.0])
    assert max_abs == 1.0
    # 1e-12 against a zero reference divides by the floor 1e-6 * 100 = 1e-4, not by zero.
    assert np.isclose(max_rel, 0.01)
    assert max_differences([np.nan], [np.nan]) == (0.0, 0.0)


def test_discrete_rows_and_shape_mismatch():
    row = compare_arrays("rollouts", "filled", np.array([True, False]), np.array([True, True]), Tolerance())
    assert row.kind == "discrete" and row.mismatches == 1 and not row.ok
    row = compare_arrays("rollouts", "equity", np.zeros(3), np.zeros(4), Tolerance(rtol=1.0))
    assert not row.ok and "shapes differ" in row.note
    row = compare_arrays("features", "clv", [0.0], [1.0], Tolerance(), gated=False)
    assert row.ok and row.mismatches == 1 and row.tolerance == "report only"


def test_report_verdict_json_and_table():
    report = Report("run_dir", "a", "b", "exact")
    loss = compare_arrays("training", "loss per update", [1.0, 2.0], [1.0, 2.5], Tolerance(rtol=0.1))
    report.extend([compare_text("eval", "run.dataset_id", "x", "x"), loss])
    assert not report.ok and [r.name for r in report.failures] == ["loss per update"]
    doc = report.to_json()
    assert doc["ok"] is False and doc["failures"] == 1 and doc["quantities"] == 2
    assert doc["rows"][1]["max_abs"] == 0.5 and doc["rows"][1]["max_rel"] == 0.2
    table = format_table(doc)
    assert "loss per update" in table and "FAIL (1)" in table
    assert table.splitlines()[-1].startswith("FAIL: 1 of 2")


def test_metrics_without_a_common_update_compare_no_per_update_values(tmp_path):
    from tradelab_jax import runs
    from tradelab_jax.parity.checks import compare_metrics

    a, b = tmp_path / "a", tmp_path / "b"
    for d, updates in ((a, (2, 4)), (b, (3, 6, 9))):
        d.mkdir()
        for u in updates:
            runs.append_metrics(d, {"update": u, "loss": 0.5, "lr": 1e-3})
    rows = compare_metrics(a, b, "exact")
    assert [r.name for r in rows] == ["metrics lines (updates)"]
    assert not rows[0].ok and rows[0].note == "no update number in common, so no per-update value is compared"
