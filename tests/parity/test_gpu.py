"""The GPU against the CPU: runs where JAX sees a GPU (skipped, and only skipped, where it sees none)."""

from __future__ import annotations

import functools

import pytest

from tradelab_jax.parity import main as parity_main
from tradelab_jax.parity.backends import probe_backends

from .helpers import read_report, rows_by_name


@functools.cache
def _gpus() -> list[str]:
    return probe_backends().get("gpu", [])  # a separate process: this one never initialises the GPU


@pytest.mark.gpu
def test_gpu_matches_cpu_within_tolerance(tmp_path, capsys):
    if not _gpus():
        pytest.skip("no GPU: jax.devices('gpu') is empty here")
    out = tmp_path / "parity"
    code = parity_main(["--backends", "cpu,gpu", "--no-x64", "--out", str(out)])
    printed = capsys.readouterr().out
    print(printed)  # the measured differences, for docs/benchmarks.md
    doc = read_report(out)
    report = doc["reports"][0]
    assert report["profile"] == "backend" and report["meta"]["subject"]["platform"] == "gpu"
    assert "--xla_gpu_deterministic_ops=true" in report["meta"]["subject"]["xla_flags"]
    rows = rows_by_name(report)
    for name in ("filled", "stop_hit", "terminated", "sign(position)", "steps (episode end)"):
        assert rows[f"rollouts:{name}"]["mismatches"] == 0, rows[f"rollouts:{name}"]
    assert code == 0, printed
