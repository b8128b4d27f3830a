"""`tradelab data retain`: dry run, deletion limited to the selection, shipped datasets, kills midway."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from datalake_helpers import BTC_1M_OCT, put_dataset, read_arrays, slice_bars, snapshot

import tradelab_jax.data as data
from tradelab_jax.data.lake import Lake
from tradelab_jax.data.schema import parse_time
from tradelab_jax.data.validate import validate_dataset

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def oct_bars():
    return read_arrays(BTC_1M_OCT)


@pytest.fixture
def lake(tmp_path, oct_bars) -> Path:
    """Two datasets of real bars; 'trim' spans 2025-10-25 → 2025-11-03 (two month files)."""
    root = tmp_path / "lake"
    i = int(np.searchsorted(oct_bars["ts"], parse_time("2025-10-25")))
    put_dataset(root, "trim", slice_bars(oct_bars, i, i + 9 * 1440))
    put_dataset(root, "other", slice_bars(oct_bars, 0, 2000))
    return root


def run(*args: str) -> tuple[int, str, str]:
    proc = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "data", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)  # fmt: skip
    assert "Traceback" not in proc.stderr
    return proc.returncode, proc.stdout, proc.stderr


def test_dry_run_then_yes_changes_only_the_selection(lake, capsys):
    from tradelab_jax.cli import main

    before = snapshot(lake)
    cut = "2025-11-01T06:00Z"  # October goes whole, November is cut
    assert main(["data", "retain", "trim", "--before", cut, "--lake", str(lake)]) == 0
    out = capsys.readouterr().out
    assert "would remove" in out and "2025-10" in out and "dry run" in out
    assert snapshot(lake) == before
    old = Lake(lake).read_manifest("trim")
    assert main(["data", "retain", "trim", "--before", cut, "--lake", str(lake), "--yes"]) == 0
    out = capsys.readouterr().out
    freed = int(out.split(" bytes freed")[0].rsplit(", ", 1)[1].replace(",", ""))
    after = snapshot(lake)
    changed = {k for k in before.keys() | after.keys() if before.get(k) != after.get(k)}
    # only the trimmed dataset's manifest, provenance, October (gone) and November (rewritten) changed
    assert changed == {
        "manifests/trim.json", "provenance/trim.md",
        "lake/binance/BTC-USDT/1m/trim/2025-10.parquet", "lake/binance/BTC-USDT/1m/trim/2025-11.parquet",
    }  # fmt: skip
    new = Lake(lake).read_manifest("trim")
    assert freed == sum(f["bytes"] for f in old["files"]) - sum(f["bytes"] for f in new["files"]) > 0
    kept = data.load("trim", lake=lake).bars
    assert int(kept["ts"][0]) == parse_time(cut) and new["first_ts"] == parse_time(cut)
    assert (
        new["last_ts"] == old["last_ts"]
        and new["rows"] == old["rows"] - (parse_time(cut) - old["first_ts"]) // 60_000
    )
    assert validate_dataset(Lake(lake), "trim").ok and validate_dataset(Lake(lake), "other").ok
    assert "tradelab data retain" in new["provenance"]["text"]


def test_keep_window_and_refusals(lake, capsys, tmp_path):
    from tradelab_jax.cli import main

    before = snapshot(lake)
    # --keep is counted back from now: 9 days of 2025 bars are all older than 90 days -> refused whole
    assert main(["data", "retain", "trim", "--keep", "90d", "--lake", str(lake), "--yes"]) == 2
    assert "would remove all" in capsys.readouterr().err
    assert main(["data", "retain", "trim", "--keep", "ninety", "--lake", str(lake)]) == 2
    assert "invalid --keep" in capsys.readouterr().err
    assert main(["data", "retain", "trim", "--lake", str(lake)]) == 2
    assert "exactly one of --keep" in capsys.readouterr().err
    with Lake(lake).writer("trim"):  # a streamer or an ingest holds the dataset
        assert main(["data", "retain", "trim", "--before", "2025-10-28", "--lake", str(lake), "--yes"]) == 2
        assert "being written by" in capsys.readouterr().err
    assert snapshot(lake) == before


def test_shipped_datasets_are_never_touched(capsys):
    from tradelab_jax.cli import main

    repo_lake = REPO / "data"
    before = snapshot(repo_lake)
    for dataset_id in ("binance_btcusdt_1m", "binance_btcusdt_1m_2025-10"):
        assert main(["data", "retain", dataset_id, "--before", "2025-11-01", "--yes", "--lake",
                     str(repo_lake)]) == 2  # fmt: skip
        assert "shipped with the repo" in capsys.readouterr().err
    assert snapshot(repo_lake) == before


@pytest.mark.parametrize("stage", ["before-switch", "after-switch"])
def test_a_retain_killed_midway_leaves_a_lake_that_validates(lake, tmp_path, stage, wait_for):
    marker = tmp_path / "held"
    env = {**os.environ, "TRADELAB_TEST_LAKE_HOLD": f"{stage}:{marker}"}
    proc = subprocess.Popen([sys.executable, "-m", "tradelab_jax.cli", "data", "retain", "trim", "--before",
                             "2025-11-01T06:00Z", "--lake", str(lake), "--yes"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # fmt: skip
    try:
        wait_for(marker.exists, f"retain to reach {stage}", 60)
        proc.send_signal(signal.SIGKILL)
        proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
    report = validate_dataset(Lake(lake), "trim")
    assert report.ok, report.findings  # the old version or the new one, whole (stray files only warn)
    bars = data.load("trim", lake=lake).bars
    assert len(bars["ts"]) in (
        9 * 1440,
        9 * 1440 - (parse_time("2025-11-01T06:00Z") - parse_time("2025-10-25")) // 60_000,
    )
    # running it again finishes the job
    rc, _out, err = run("retain", "trim", "--before", "2025-11-01T06:00Z", "--lake", str(lake), "--yes")
    assert rc == 0, err
    assert validate_dataset(Lake(lake), "trim").ok
    assert data.load("trim", lake=lake).bars["ts"][0] == parse_time("2025-11-01T06:00Z")
    assert not any(p.name.startswith(".") for p in (lake / "lake/binance/BTC-USDT/1m/trim").iterdir())
