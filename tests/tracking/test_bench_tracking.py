"""``tradelab bench tracking --quick``: each row's host-loop wait and the loggers' own busy time, read from
the points' tracking.json, against the row without loggers."""

from __future__ import annotations

import json

import pytest

from tradelab_jax.bench import tracking as bench


def test_quick_bench_reports_the_host_wait_and_the_loggers_busy_time(tmp_path, capsys):
    out = tmp_path / "bench.json"
    assert bench.main(["--quick", "--loggers", "none,tensorboard", "--json", str(out)]) == 0
    result = json.loads(out.read_text())
    none, tb = result["rows"]
    assert none["loggers"] == "none" and none["logging_s"] == none["busy_s"] == none["cpu_s"] == 0.0
    assert tb["loggers"] == "tensorboard" and tb["points"] == 2 and not tb["warnings"]
    # The loggers' own time is spent on their thread; the host only hands records over and flushes.
    assert 0.0 < tb["logging_s"] < tb["wall_s"] and tb["busy_s"] >= tb["cpu_s"] > 0.0
    # cost is computed before logging_s and wall_s are rounded for the table
    assert tb["cost"] == pytest.approx(tb["logging_s"] / tb["wall_s"], rel=0.02, abs=1e-4)
    assert tb["process_s"] > tb["wall_s"]
    assert tb["wall_vs_none_s"] == round(tb["wall_s"] - none["wall_s"], 3)
    table = capsys.readouterr().out
    assert all(col in table for col in ("logging s", "busy s", "cpu s", "target logging_s / wall_s < 2%"))
