"""Run-directory helpers (no JAX): status lifecycle, checkpoints, metrics, discovery."""

from __future__ import annotations

import json

import pytest

from tradelab_jax import runs


def test_status_merges_and_validates(tmp_path):
    runs.queue_run(tmp_path)
    assert runs.read_status(tmp_path)["status"] == "queued"
    runs.write_status(tmp_path, status="running", pid=123, progress=0.5)
    st = runs.read_status(tmp_path)
    assert st["status"] == "running" and st["pid"] == 123 and st["progress"] == 0.5 and "queued_at" in st
    with pytest.raises(ValueError):
        runs.write_status(tmp_path, status="exploded")


def test_checkpoints_rotate_and_latest_points_to_a_complete_file(tmp_path):
    for update in (10, 20, 30):
        runs.write_checkpoint(tmp_path, update, bytes([update]), {"env_steps": update * 4}, keep=2)
    path, meta = runs.latest_checkpoint(tmp_path)
    assert path.name == "ckpt_000000030.msgpack" and path.read_bytes() == bytes([30])
    assert meta["update"] == 30 and meta["env_steps"] == 120
    names = sorted(p.name for p in (tmp_path / "checkpoints").iterdir())
    assert names == ["ckpt_000000020.msgpack", "ckpt_000000030.msgpack", "latest.json"]


def test_metrics_truncate_drops_lines_after_the_checkpoint(tmp_path):
    for u in (2, 4, 6):
        runs.append_metrics(tmp_path, {"update": u})
    with open(tmp_path / runs.METRICS_FILE, "a") as f:
        f.write('{"update": 8, "trunc')  # a torn last line is skipped by readers
    assert [m["update"] for m in runs.read_metrics(tmp_path)] == [2, 4, 6]
    runs.truncate_metrics(tmp_path, 4)
    lines = (tmp_path / runs.METRICS_FILE).read_text().splitlines()
    assert [json.loads(x)["update"] for x in lines] == [2, 4]


def test_iter_runs_finds_single_and_multirun_dirs(tmp_path):
    single = runs.new_run_dir(tmp_path, "a", timestamp="20250101T000000Z")
    multi = runs.new_run_dir(tmp_path, "b", multirun=True, timestamp="20250102T000000Z")
    nested = runs.new_run_dir(tmp_path, "c", multirun=True, timestamp="20250103T000000Z")
    for d in (single, multi / "0", multi / "1", nested / "0" / "0", nested / "0" / "1"):
        runs.queue_run(d)
    found = list(runs.iter_runs(tmp_path))
    assert set(found) == {single, multi / "0", multi / "1", nested / "0" / "0", nested / "0" / "1"}
    assert found[0].is_relative_to(nested) and found[-1] == single  # newest first
    assert single.name == "20250101T000000Z_a"
    assert runs.point_dirs(multi) == [multi / "0", multi / "1"]
    runs.request_cancel(single)
    assert runs.cancel_requested(single)
