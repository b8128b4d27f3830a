"""A training whose outputs fill the disk stops in one line, is marked failed with it and resumes (issue 12,
item 5); a second trainer aimed at a run directory in use is refused, naming the first (item 3)."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from tests.train.helpers import TINY_GYMNAX
from tradelab_jax import runs
from tradelab_jax.errors import BusyError

PAGE = 4096
# [256] hidden units make a checkpoint of ~41 kB (11 pages): 26 free pages hold the start files and one
# checkpoint, not two.
SETTINGS = [*(s for s in TINY_GYMNAX if not s.startswith("network.")), "network.hidden_sizes=[256]",
            "run.eval=false"]


def train(*overrides: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "train", *overrides],
                          capture_output=True, text=True, timeout=600)


@pytest.fixture
def small_disk(tmp_path):
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (tests/data/test_data_writers.py fakes ENOSPC)")
    mount = tmp_path / "disk"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


@pytest.mark.slow
def test_a_training_that_fills_the_disk_fails_in_one_line_and_resumes(small_disk):
    st = os.statvfs(small_disk)
    filler = small_disk / "filler"
    filler.write_bytes(b"\0" * (st.f_bavail * st.f_frsize - 26 * PAGE))
    run_dir = small_disk / "run"
    done = train(*SETTINGS, f"run.dir={run_dir}")
    errors = [line for line in done.stderr.splitlines() if line.startswith("error:")]
    assert done.returncode == 4 and "Traceback" not in done.stderr, done.stderr
    assert len(errors) == 1, done.stderr
    assert errors[0].startswith(f"error: the disk holding {run_dir}/checkpoints/"), errors
    assert f"(filesystem {small_disk}, " in errors[0] and "writing it needed " in errors[0]
    status = runs.read_status(run_dir)
    assert status["status"] == "failed" and status["error"] == errors[0].removeprefix("error: ")
    assert not (run_dir / "error.txt").exists()  # a sentence, not a bug: no traceback file
    _, meta = runs.latest_checkpoint(run_dir)
    assert meta["update"] == 2  # the first chunk's checkpoint is whole
    filler.unlink()
    again = train(f"run.resume={run_dir}")
    assert again.returncode == 0, again.stderr
    assert runs.read_status(run_dir)["status"] == "done"
    assert runs.latest_checkpoint(run_dir)[1]["update"] == 8
    assert [m["update"] for m in runs.read_metrics(run_dir)] == [2, 4, 6, 8]  # one record per chunk of 2


def test_a_second_trainer_on_a_run_directory_in_use_is_refused(tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    runs.write_status(run_dir, status="running", pid=os.getpid(), started_at="2025-12-02T10:00:00Z")
    with runs.run_lock(run_dir), pytest.raises(BusyError) as caught, runs.run_lock(run_dir):
        pass
    assert str(caught.value).startswith(f"run directory {run_dir} is being trained by another process (pid "
                                        f"{os.getpid()}, status running since 2025-12-02T10:00:00Z)")
    with runs.run_lock(run_dir):  # released: the next trainer gets it
        pass
    assert sorted(p.name for p in run_dir.iterdir()) == [runs.STATUS_FILE]  # the lock adds no file
