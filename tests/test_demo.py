"""`tradelab demo`: the README's first command, in its quick form, and its check of the demo's dataset."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tradelab_jax import cli, demo

REPO_ROOT = Path(__file__).resolve().parent.parent
EPISODE_FILES = ("telemetry.parquet", "summary.json", "equity.png")
DEMO_DATASET = "binance_btcusdt_1m"  # conf/experiment/demo.yaml's data.id


def _episode_dirs(outputs: Path) -> list[Path]:
    return sorted(outputs.glob("*_demo-quick")) if outputs.is_dir() else []


@pytest.fixture
def outputs(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "outputs"
    monkeypatch.setenv("TRADELAB_OUTPUTS", str(path))
    return path


@pytest.fixture
def lake_copy(tmp_path) -> Path:
    """A writable copy of the shipped lake, to break datasets in."""
    root = tmp_path / "lake"
    shutil.copytree(REPO_ROOT / "data", root)
    return root


def _break(lake: Path, dataset_id: str) -> None:
    """Change the bytes of the dataset's first file: its checksum no longer matches the manifest."""
    manifest = json.loads((lake / "manifests" / f"{dataset_id}.json").read_text())
    path = lake / manifest["files"][0]["path"]
    path.write_bytes(path.read_bytes() + b"\0")


def test_demo_dataset_is_the_demo_experiments():
    experiment = yaml.safe_load((REPO_ROOT / "conf" / "experiment" / "demo.yaml").read_text())
    assert experiment["data"]["id"] == demo.DATASET == DEMO_DATASET


def test_quick_demo_runs_and_says_where_its_episode_went(tmp_path, scaled):
    """The README's `tradelab demo --quick`, as a user runs it (a fresh process, no --out)."""
    outputs = tmp_path / "outputs"
    env = {k: v for k, v in os.environ.items() if k != "TRADELAB_LAKE"} | {"TRADELAB_OUTPUTS": str(outputs)}
    proc = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "demo", "--quick"], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=scaled(600))
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and "required" not in proc.stderr
    [out_dir] = _episode_dirs(outputs)
    for name in EPISODE_FILES:
        assert (out_dir / name).is_file(), name
    assert f"the demo's episode is in {out_dir}" in proc.stdout
    assert "random on binance_btcusdt_1m/test" in proc.stdout
    summary = json.loads((out_dir / "summary.json").read_text())
    assert summary["policy"] == "random" and summary["split"] == "test"


def test_a_broken_unrelated_dataset_does_not_stop_the_demo(outputs, lake_copy, capsys):
    _break(lake_copy, "binance_btcusdt_1m_2025-10")
    assert cli.main(["demo", "--quick", "--lake", str(lake_copy)]) == 0
    printed = capsys.readouterr().out
    assert "binance_btcusdt_1m_2025-10" not in printed and "1 dataset(s) checked, 0 with errors" in printed
    assert len(_episode_dirs(outputs)) == 1


def test_a_broken_demo_dataset_stops_the_demo_with_one_sentence(outputs, lake_copy, capsys):
    _break(lake_copy, DEMO_DATASET)
    assert cli.main(["demo", "--quick", "--lake", str(lake_copy)]) == 3
    captured = capsys.readouterr()
    [line] = captured.err.splitlines()
    assert line.startswith(f"error: dataset {DEMO_DATASET}, which the demo trains on, fails validation")
    assert "so the demo stops here" in line
    assert f"run `tradelab data validate {DEMO_DATASET} --lake {lake_copy}`" in line
    assert "random on" not in captured.out and _episode_dirs(outputs) == []


def test_the_demo_trains_four_seeds_with_the_experiments_budget_in_all():
    experiment = yaml.safe_load((REPO_ROOT / "conf" / "experiment" / "demo.yaml").read_text())
    assert experiment["agent"]["total_timesteps"] == demo.DEMO_TIMESTEPS
    over = dict(o.split("=", 1) for o in demo.train_overrides(None, "/tmp/x"))
    seeds = over["sweep.seed"].strip("[]").split(",")
    assert len(seeds) == len(demo.SEEDS) >= 3
    assert int(over["agent.total_timesteps"]) * len(seeds) == experiment["agent"]["total_timesteps"]
    assert over["experiment"] == "demo" and over["run.dir"] == "/tmp/x"
    mine = dict(o.split("=", 1) for o in demo.train_overrides("L", "/d", ["agent.total_timesteps=128"]))
    assert mine["agent.total_timesteps"] == "128" and mine["data.lake"] == "L"


def test_the_demo_prints_the_verdict_over_its_seeds_once(tmp_path, scaled):
    """`tradelab demo` as a user runs it, on a tiny budget: training ends with stats.json's verdict line, and
    the demo adds only how long it took (it printed the verdict a second time)."""
    outputs = tmp_path / "outputs"
    env = {k: v for k, v in os.environ.items() if k != "TRADELAB_LAKE"} | {"TRADELAB_OUTPUTS": str(outputs)}
    tiny = ["data.id=binance_btcusdt_1m_2025-10", "env.episode_length=8", "agent.num_envs=2",
            "agent.num_steps=16", "agent.total_timesteps=128", "agent.num_minibatches=1",
            "agent.update_epochs=1", "network.hidden_sizes=[8]", "run.chunk_updates=2", "run.progress=false"]
    proc = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "demo", *tiny], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=scaled(600))
    assert proc.returncode == 0, proc.stderr[-3000:]
    [run_dir] = sorted((outputs / "multirun").glob("*_demo"))
    stats = json.loads((run_dir / "stats.json").read_text())
    assert stats["points"] == len(demo.SEEDS) and stats["configs"][0]["seeds"] == len(demo.SEEDS)
    lines = proc.stdout.strip().splitlines()
    [verdict] = [ln for ln in lines if ln.startswith("verdict")]
    assert verdict == f"verdict: {stats['verdict']}" and proc.stdout.count(stats["verdict"]) == 1
    assert f"({len(demo.SEEDS)} seeds)" in verdict and "95 % interval" in verdict
    assert "trades, exposure" in verdict
    assert f"tradelab report {run_dir}" in proc.stdout
    assert lines[-1].startswith("the demo took ") and lines[-1].endswith(f"tradelab stats {run_dir}")
    assert lines.index(verdict) >= len(lines) - 3  # the verdict, where its files are, how long it took
