"""`tradelab runs prune`: selection, dry run, active and locked runs refused, archive proof, kills midway."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from datalake_helpers import snapshot

from tradelab_jax import runs

REPO = Path(__file__).resolve().parents[2]
DAY = 86_400


def make_run(
    outputs: Path, rel: str, status: str, *, age_days: float, tag: str | None = None, pid: int | None = None
) -> Path:
    """A run directory with status, config, metrics and a verified checkpoint, ended ``age_days`` ago."""
    run = outputs / rel
    run.mkdir(parents=True)
    ended = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() - age_days * DAY))
    runs.write_config(run, {"run": {"tag": tag or rel.rsplit("_", 1)[-1]}, "seed": 0})
    runs.write_status(run, status=status, pid=pid, started_at=ended, ended_at=ended)
    # write_status stamps updated_at with now; the age is the recorded end
    st = json.loads((run / runs.STATUS_FILE).read_text())
    st["updated_at"] = ended
    (run / runs.STATUS_FILE).write_text(json.dumps(st))
    runs.append_metrics(run, {"update": 1, "loss": 0.5})
    runs.write_checkpoint(run, 1, os.urandom(2048), {"env_steps": 64})
    return run


@pytest.fixture
def outputs(tmp_path) -> Path:
    out = tmp_path / "outputs"
    make_run(out, "20250101T000000Z_old-done", "done", age_days=90)
    make_run(out, "20250102T000000Z_old-failed", "failed", age_days=80)
    make_run(out, "20250103T000000Z_baseline", "failed", age_days=80, tag="baseline")
    make_run(out, "20250104T000000Z_recent-cancelled", "cancelled", age_days=2)
    make_run(out, "20250105T000000Z_running", "running", age_days=60, pid=os.getpid())  # live pid
    make_run(out, "20250106T000000Z_queued", "queued", age_days=60)  # a launcher's, no pid yet
    sweep = out / "multirun" / "20250107T000000Z_sweep"
    for n in range(2):
        make_run(sweep, str(n), "done", age_days=70)
    (sweep / runs.PACKED_FILE).write_text(json.dumps({"points": 2}))
    paper = make_run(out, "paper/20250108T000000Z_btc", "cancelled", age_days=75)  # an old paper account
    st = json.loads((paper / runs.STATUS_FILE).read_text())
    (paper / runs.STATUS_FILE).write_text(json.dumps({**st, "kind": "paper"}))
    return out


def prune(outputs: Path, *args: str, env: dict | None = None) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "runs", "prune", "--outputs",
                           str(outputs), *args], cwd=REPO, capture_output=True, text=True, timeout=120,
                          env=env)  # fmt: skip
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def remaining(outputs: Path) -> set[str]:
    return {p.relative_to(outputs).as_posix() for p in runs.find_runs(outputs)}


def test_dry_run_then_yes_removes_exactly_the_selection(outputs):
    before = snapshot(outputs)
    args = ("--older-than", "30d", "--status", "done,failed,cancelled", "--keep-tag", "baseline")
    rc, out, _ = prune(outputs, *args)
    assert rc == 0 and "dry run" in out
    assert snapshot(outputs) == before
    would = {line.split()[2] for line in out.splitlines() if line.startswith("would remove")}
    assert would == {
        "20250101T000000Z_old-done",
        "20250102T000000Z_old-failed",
        "multirun/20250107T000000Z_sweep",
    }
    assert "20250105T000000Z_running: running (never pruned)" in out
    gone = {"20250101T000000Z_old-done", "20250102T000000Z_old-failed", "multirun/20250107T000000Z_sweep"}
    sizes_gone = sum(p.stat().st_size for g in gone for p in (outputs / g).rglob("*") if p.is_file())
    rc, out, err = prune(outputs, *args, "--yes")
    assert rc == 0, err
    after = snapshot(outputs)
    gone = {"20250101T000000Z_old-done", "20250102T000000Z_old-failed", "multirun/20250107T000000Z_sweep"}
    for path, digest in before.items():  # every file outside the selection is byte-identical
        if not any(path.startswith(g + "/") for g in gone):
            assert after.get(path) == digest, path
    assert all(any(p.startswith(g + "/") for g in gone) for p in set(before) - set(after))
    assert set(after) <= set(before)
    assert remaining(outputs) == {"20250103T000000Z_baseline", "20250104T000000Z_recent-cancelled",
                                  "20250105T000000Z_running", "20250106T000000Z_queued",
                                  "paper/20250108T000000Z_btc"}  # fmt: skip  (paper sessions: never)
    freed = int(out.split(" bytes freed")[0].rsplit(", ", 1)[1].replace(",", ""))
    assert freed == sizes_gone > 0


def test_keep_last_and_preset(outputs):
    rc, out, _ = prune(outputs, "--status", "done,failed,cancelled", "--keep-last", "3")
    would = {line.split()[2] for line in out.splitlines() if line.startswith("would remove")}
    # newest first: sweep (20250107), queued, running are the 3 newest units; the rest may go
    assert would == {"20250104T000000Z_recent-cancelled", "20250103T000000Z_baseline",
                     "20250102T000000Z_old-failed", "20250101T000000Z_old-done"}  # fmt: skip
    rc, out, _ = prune(outputs, "--config", "default")  # failed/cancelled/interrupted, 30d, keep 10
    assert rc == 0 and "would remove" not in out  # only 7 units: all among the 10 newest


def test_a_running_or_locked_run_is_refused(outputs, capsys):
    from tradelab_jax.cli import main

    rc, _, err = prune(outputs, "--status", "running")
    assert rc == 2 and "never pruned" in err
    # a run recorded as failed whose directory a trainer still holds (run.resume started it just now)
    held = outputs / "20250102T000000Z_old-failed"
    with runs.run_lock(held):
        assert main(["runs", "prune", "--outputs", str(outputs), "--status", "failed", "--yes"]) == 0
        captured = capsys.readouterr()
    assert "not pruned" in captured.err and "being trained by another process" in captured.err
    assert held.is_dir() and runs.read_status(held)["status"] == "failed"
    assert "20250103T000000Z_baseline" not in remaining(outputs)  # the other failed run went
    assert "20250105T000000Z_running" in remaining(outputs)


def test_a_prune_killed_midway_leaves_runs_that_load(outputs, tmp_path, wait_for):
    marker = tmp_path / "held"
    env = {**os.environ, "TRADELAB_TEST_LAKE_HOLD": f"prune-after-rename:{marker}"}
    proc = subprocess.Popen([sys.executable, "-m", "tradelab_jax.cli", "runs", "prune", "--outputs",
                             str(outputs), "--status", "done,failed", "--yes"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_for(marker.exists, "prune to take its first run aside", 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    left = runs.find_runs(outputs)
    assert len(left) == 9 - 1 or len(left) == 9 - 2  # one unit taken aside (a run, or the 2-point sweep)
    for run in left:  # every run still there loads whole
        assert runs.read_status(run)["status"]
        assert runs.read_config(run)["run"]["tag"]
        assert runs.read_checkpoint(run) is not None
        assert runs.read_metrics(run) == [{"update": 1, "loss": 0.5}]
    leftovers = [p for p in outputs.rglob(".*.pruning")]
    assert len(leftovers) == 1
    rc, out, err = prune(outputs, "--status", "done,failed", "--yes")
    assert rc == 0, err
    assert "left by an interrupted prune" in out
    assert not list(outputs.rglob(".*.pruning"))
    assert remaining(outputs) == {"20250104T000000Z_recent-cancelled", "20250105T000000Z_running",
                                  "20250106T000000Z_queued", "paper/20250108T000000Z_btc"}  # fmt: skip


def test_require_archived_prunes_only_what_s3_holds_as_it_is(outputs, s3, capsys):
    from tradelab_jax.archive.ops import push_run
    from tradelab_jax.cli import main

    spec, client = s3
    done = outputs / "20250101T000000Z_old-done"
    failed = outputs / "20250102T000000Z_old-failed"
    push_run(client, spec, done, "20250101T000000Z_old-done")
    push_run(client, spec, failed, "20250102T000000Z_old-failed")
    runs.append_metrics(failed, {"update": 2, "loss": 0.4})  # changed since it was pushed
    argv = ["runs", "prune", "--outputs", str(outputs), "--status", "done,failed", "--require-archived"]
    assert main([*argv, "--yes"]) == 0
    out = capsys.readouterr().out
    assert "20250102T000000Z_old-failed: 20250102T000000Z_old-failed has 1 file(s) not archived" in out
    assert re.search(
        r"multirun/20250107T000000Z_sweep: multirun/20250107T000000Z_sweep/\d is not archived", out
    )
    assert not done.exists() and failed.is_dir()
    assert "20250103T000000Z_baseline" in remaining(outputs)  # failed but never pushed


def test_runs_list_shows_a_starting_or_finishing_training_as_running(tmp_path, capsys):
    # A trainer writes its points queued when it starts and running once its first program is compiled;
    # meanwhile it holds the run's (or the packed sweep's) lock: that training is running, not queued.
    # A packed sweep whose points are marked done one by one is running until the last.
    from tradelab_jax.cli import main

    out = tmp_path / "outputs"
    single = make_run(out, "20250101T000000Z_single", "queued", age_days=0)
    sweep = out / "20250102T000000Z_sweep"
    for n in range(2):
        make_run(sweep, str(n), "queued", age_days=0)
    (sweep / runs.PACKED_FILE).write_text(json.dumps({"points": 2}))
    make_run(out, "20250103T000000Z_waiting", "queued", age_days=0)  # a launcher's: nothing holds it yet

    def states() -> dict[str, str]:
        assert main(["runs", "list", "--outputs", str(out)]) == 0
        rows = [line.split("  ") for line in capsys.readouterr().out.splitlines()]  # id (kind), state, age
        return {row[0].split()[0]: row[1] for row in rows}

    assert states() == {"20250101T000000Z_single": "queued", "20250102T000000Z_sweep": "queued",
                        "20250103T000000Z_waiting": "queued"}  # fmt: skip
    with runs.run_lock(single), runs.run_lock(sweep):
        assert states() == {"20250101T000000Z_single": "running", "20250102T000000Z_sweep": "running",
                            "20250103T000000Z_waiting": "queued"}  # fmt: skip
        rc, stdout, _ = prune(out, "--status", "done")
        assert rc == 0 and "20250102T000000Z_sweep: running (never pruned)" in stdout
    runs.write_status(sweep / "0", status="done")
    runs.write_status(sweep / "1", status="running", pid=os.getpid())
    assert states()["20250102T000000Z_sweep"] == "running"
    runs.write_status(sweep / "1", status="failed")
    assert states()["20250102T000000Z_sweep"] == "mixed"
