"""One writer per dataset, an atomic `import --replace`, and a full disk in one sentence (issue 12, 3-5).

The writers run as real `tradelab data import` subprocesses: the lock is an OS lock between processes, and
kill -9 is only meaningful for a process of its own.
"""

from __future__ import annotations

import errno
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from tradelab_jax import data
from tradelab_jax import io as tio
from tradelab_jax.data.lake import Lake
from tradelab_jax.errors import BusyError

DATASET = "btc_w"
ARGS = ["--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1m", "--dataset-id", DATASET]


def write_csv(path: Path, bars: dict[str, np.ndarray]) -> Path:
    pd.DataFrame(bars).to_csv(path, index=False)
    return path


def inputs(tmp_path: Path, oct_bars, n: int = 2, rows: int = 3 * 1440) -> list[tuple[Path, np.ndarray]]:
    """``n`` CSV files of different bars (other days of October), each with its close prices."""
    out = []
    for k in range(n):
        part = {c: v[k * 1440: k * 1440 + rows] for c, v in oct_bars.items()}
        out.append((write_csv(tmp_path / f"in{k}.csv", part), part["close"]))
    return out


def start_import(path: Path, lake: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tradelab_jax.cli", "data", "import", str(path), *ARGS, "--lake", str(lake),
         *extra],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env={**os.environ, **(env or {})},
    )


def wait_for(path: Path, proc: subprocess.Popen, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.02)


def whole_closes(lake: Path) -> np.ndarray:
    """The dataset's close prices, read with every checksum and row count checked (DataError if broken)."""
    market = data.load(DATASET, lake=lake)
    assert len(market) == market.manifest["rows"] == sum(f["rows"] for f in market.manifest["files"])
    return market.bars["close"]


def no_leftovers(lake: Path) -> None:
    folder = next((lake / "lake").rglob(DATASET))
    assert sorted(p.name for p in folder.iterdir()) == sorted(
        Path(f["path"]).name for f in data.load(DATASET, lake=lake).manifest["files"])
    assert not list((lake / "locks").glob("*")) if (lake / "locks").exists() else True


# --------------------------------------------------------------------------------------------- one writer


def test_a_second_import_while_the_first_writes_is_refused_naming_it(tmp_path, oct_bars):
    (a, closes_a), (b, _) = inputs(tmp_path, oct_bars)
    lake, marker = tmp_path / "lake", tmp_path / "held"
    first = start_import(a, lake, env={"TRADELAB_TEST_LAKE_HOLD": f"before-switch:{marker}"})
    wait_for(marker, first)  # the first holds the lock with its new files written, its manifest not yet
    second = start_import(b, lake, "--replace")
    out, err = second.communicate(timeout=120)
    assert second.returncode == 2, (out, err)
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert f"is being written by pid {first.pid} on " in err and "data import" in err and " since 20" in err
    marker.unlink()
    assert first.wait(timeout=120) == 0, first.communicate()
    np.testing.assert_array_equal(whole_closes(lake), closes_a)
    no_leftovers(lake)


def test_concurrent_imports_end_in_one_whole_dataset_and_one_refusal(tmp_path, oct_bars):
    files = inputs(tmp_path, oct_bars)
    for trial in range(4):
        lake = tmp_path / f"lake{trial}"
        procs = [start_import(path, lake) for path, _ in files]
        results = [(p.wait(timeout=180), *p.communicate()) for p in procs]
        winners = [k for k, (rc, _, _) in enumerate(results) if rc == 0]
        assert len(winners) == 1, (trial, results)
        (rc, _, err), = [r for k, r in enumerate(results) if k not in winners]
        assert rc == 2 and err.count("\n") == 1, err
        # Refused by the lock (naming the holder, or "another process" in the instant before the holder has
        # written its record) or, if the winner had already finished, by its dataset.
        assert any(s in err for s in ("is being written by pid", "is being written by another process",
                                      "already exists")), err
        np.testing.assert_array_equal(whole_closes(lake), files[winners[0]][1])
        no_leftovers(lake)


def test_the_lock_of_a_killed_writer_is_recovered(tmp_path, oct_bars):
    (a, _), (b, closes_b) = inputs(tmp_path, oct_bars)
    lake, marker = tmp_path / "lake", tmp_path / "held"
    first = start_import(a, lake, env={"TRADELAB_TEST_LAKE_HOLD": f"before-switch:{marker}"})
    wait_for(marker, first)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=60)
    assert (lake / "locks" / f"{DATASET}.lock").exists()  # its record is left; its OS lock is not
    second = start_import(b, lake)
    assert second.wait(timeout=120) == 0, second.communicate()
    np.testing.assert_array_equal(whole_closes(lake), closes_b)
    no_leftovers(lake)


def test_lake_writer_refuses_a_second_holder_in_one_process(tmp_path):
    lake = Lake(tmp_path / "lake")
    # A second open file description is a second holder, as another process would be.
    with lake.writer(DATASET, command="tradelab data stream"), pytest.raises(BusyError) as caught, \
            lake.writer(DATASET):
        pass
    assert f"pid {os.getpid()}" in str(caught.value) and "(tradelab data stream)" in str(caught.value)
    assert not (tmp_path / "lake").exists()  # released: no lock file, no folder made for it


# --------------------------------------------------------------------------------------------- --replace


@pytest.mark.parametrize("stage", ["before-switch", "after-switch"])
def test_kill_9_during_replace_leaves_the_old_or_the_new_version_whole(tmp_path, oct_bars, stage):
    (a, closes_a), (b, closes_b) = inputs(tmp_path, oct_bars)
    lake, marker = tmp_path / "lake", tmp_path / "held"
    assert start_import(a, lake).wait(timeout=120) == 0
    proc = start_import(b, lake, "--replace", env={"TRADELAB_TEST_LAKE_HOLD": f"{stage}:{marker}"})
    wait_for(marker, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    expected = closes_a if stage == "before-switch" else closes_b
    np.testing.assert_array_equal(whole_closes(lake), expected)
    # The next writer cleans what the killed one left and writes a whole dataset.
    assert start_import(a, lake, "--replace").wait(timeout=120) == 0
    np.testing.assert_array_equal(whole_closes(lake), closes_a)
    no_leftovers(lake)


def test_kill_9_at_random_times_during_replace(tmp_path, oct_bars):
    (a, closes_a), (b, closes_b) = inputs(tmp_path, oct_bars, rows=10 * 1440)
    lake = tmp_path / "lake"
    assert start_import(a, lake).wait(timeout=120) == 0
    rng = random.Random(12)
    for _ in range(5):
        proc = start_import(b, lake, "--replace")
        time.sleep(rng.uniform(0.3, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
        closes = whole_closes(lake)
        assert np.array_equal(closes, closes_a) or np.array_equal(closes, closes_b)
        a, b, closes_a, closes_b = b, a, closes_b, closes_a  # replace back and forth


# --------------------------------------------------------------------------------------------- full disk


def test_a_full_disk_is_one_sentence_and_leaves_the_dataset_whole(tmp_path, oct_bars, run_data, monkeypatch):
    (a, closes_a), (b, _) = inputs(tmp_path, oct_bars)
    lake = tmp_path / "lake"
    assert run_data("import", str(a), *ARGS, "--lake", str(lake))[0] == 0

    def full(_fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(tio.os, "fsync", full)
    rc, _, err = run_data("import", str(b), *ARGS, "--lake", str(lake), "--replace")
    monkeypatch.undo()
    assert rc == 4 and err.startswith("error: the disk holding ") and err.count("\n") == 1, err
    assert ".parquet is full (filesystem " in err and "bytes free): writing it needed " in err, err
    np.testing.assert_array_equal(whole_closes(lake), closes_a)
    no_leftovers(lake)


def test_append_jsonl_on_a_full_disk_keeps_whole_lines(tmp_path, monkeypatch):
    dest = tmp_path / "metrics.jsonl"
    tio.append_jsonl(dest, {"update": 1})

    def full(_fd):
        raise OSError(errno.EDQUOT, os.strerror(errno.EDQUOT))

    monkeypatch.setattr(tio.os, "fsync", full)
    with pytest.raises(tio.DiskFullError, match=r"metrics\.jsonl is full .* needed 14 bytes"):
        tio.append_jsonl(dest, {"update": 2})
    assert dest.read_text() == '{"update": 1}\n'


@pytest.fixture
def tiny_disk(tmp_path):
    """A 1 MiB tmpfs (mounted only where the tests run as root)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root; the monkeypatched ENOSPC tests cover the code path")
    mount = tmp_path / "tiny"
    mount.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], check=False)


def test_replace_into_a_full_tmpfs(tmp_path, tiny_disk, btc_bars, oct_bars):
    small = {c: v[:1440] for c, v in oct_bars.items()}
    big = btc_bars  # 2.2 MB of month files: more than the disk holds
    a, b = write_csv(tmp_path / "small.csv", small), write_csv(tmp_path / "big.csv", big)
    lake = tiny_disk / "lake"
    assert start_import(a, lake).wait(timeout=120) == 0
    proc = start_import(b, lake, "--replace")
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 4, (out, err)
    assert err.startswith(f"error: the disk holding {lake}/") and err.count("\n") == 1, err
    assert f"(filesystem {tiny_disk}, " in err and "writing it needed " in err, err
    np.testing.assert_array_equal(whole_closes(lake), small["close"])
    no_leftovers(lake)
