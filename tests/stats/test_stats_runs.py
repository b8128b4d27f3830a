"""stats.json from real tiny runs: written by the trainer after a packed sweep, recomputed by `tradelab stats`
for the sweep and for one of its points (a run directory), strict JSON, numbers read back against each
point's own eval_summary.json."""

from __future__ import annotations

import json
import math
import shutil
import subprocess
import sys

import numpy as np
import pytest

from tradelab_jax import cli, runs
from tradelab_jax.stats import compute

from .conftest import REPO_ROOT

BARS_PER_YEAR = 525_600  # 1m bars: eval_summary's annualisation


def _strict(path):
    return json.loads(path.read_text(), parse_constant=lambda c: pytest.fail(f"{path} holds {c}"))


def _tradelab(*args):
    return subprocess.run([sys.executable, "-m", "tradelab_jax.cli", *args], cwd=REPO_ROOT,
                          capture_output=True, text=True, timeout=120)


def test_the_trainer_writes_stats_json_for_a_packed_sweep(tiny_sweep):
    s = _strict(tiny_sweep / compute.STATS_FILE)
    assert s["kind"] == "sweep" and s["configurations"] == 2 and s["points"] == 4
    packed = json.loads((tiny_sweep / runs.PACKED_FILE).read_text())
    for c in s["configs"]:
        assert c["seeds"] == 2 and c["folds"] == 0
        sharpes = []
        for p in c["points"]:
            [rec] = [q for q in packed["points"] if str(q["dir"]) == p["dir"]]
            assert {"env.risk_pct": rec["env.risk_pct"]} == c["config"]
            summary = runs.read_eval_summary(tiny_sweep / p["dir"])
            sharpes.append(summary["splits"]["test"]["agent"]["sharpe"])
        got = c["policies"]["agent"]["sharpe"]
        assert sorted(got["values"]) == pytest.approx(sorted(sharpes))
        assert got["mean"] == pytest.approx(np.mean(sharpes))
        assert got["median"] == pytest.approx(np.median(sharpes))
        lo, hi = got["iqm_ci95"]
        assert min(sharpes) <= lo <= got["iqm"] <= hi <= max(sharpes)
    best = max(s["configs"], key=lambda c: c["policies"]["agent"]["sharpe"]["mean"])
    assert s["best"]["name"] == best["name"]
    d = s["deflated_sharpe"]
    assert d["trials"] == 2 and d["bars"] > 1000
    assert d["variance"] == pytest.approx(np.var([c["sharpe_per_bar"] for c in s["configs"]], ddof=1))
    assert (d["value"] is None) == (d["reason"] is not None)
    assert s["pbo"]["configurations"] == 2 and s["pbo"]["combinations"] == math.comb(8, 4)
    assert 0.0 <= s["pbo"]["value"] <= 1.0
    assert s["bootstrap"]["resamples"] > 0 and "rng_seed" in s["bootstrap"]
    assert s["verdict"].startswith("best of 2 configurations (2 seeds): agent Sharpe ")
    assert "95 % interval" in s["verdict"] and "PBO" in s["verdict"]


def test_tradelab_stats_recomputes_a_sweep_trained_without_it(tiny_sweep, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(tiny_sweep, old)
    written = _strict(old / compute.STATS_FILE)
    (old / compute.STATS_FILE).unlink()  # as a sweep trained before stats.json existed
    proc = _tradelab("stats", str(old))
    assert proc.returncode == 0, proc.stderr
    again = _strict(old / compute.STATS_FILE)
    assert again == written  # nothing in it names the folder: a copied or archived sweep reads the same
    lines = proc.stdout.splitlines()
    assert again["verdict"] in lines and f"wrote {old}/stats.json" in lines
    assert sum(line.startswith("env.risk_pct=") and "95 % interval" in line for line in lines) == 2


def test_tradelab_stats_on_one_point_is_a_run_and_rebuilds_its_sharpe_from_telemetry(tiny_sweep, capsys):
    point = tiny_sweep / "0"
    assert cli.main(["stats", str(point), "--no-write"]) == 0
    printed = capsys.readouterr().out
    assert not (point / compute.STATS_FILE).exists()
    s = compute.compute(point)
    assert s["kind"] == "run" and s["configurations"] == 1
    # the per-bar returns rebuilt from telemetry.parquet give eval_summary's annualised Sharpe
    agent = runs.read_eval_summary(point)["splits"]["test"]["agent"]
    [c] = s["configs"]
    assert c["sharpe_per_bar"] * math.sqrt(BARS_PER_YEAR) == pytest.approx(agent["sharpe"], rel=1e-6)
    assert c["bars"] == agent["steps"]
    assert c["policies"]["agent"]["sharpe"]["iqm_ci95"] is None
    assert "2 seeds" in c["policies"]["agent"]["sharpe"]["reason"]
    assert s["pbo"]["value"] is None and "2 configurations" in s["pbo"]["reason"]
    d = s["deflated_sharpe"]
    assert d["trials"] == 1 and d["sr0"] == 0.0  # one configuration: the PSR against 0
    assert s["verdict"] in printed.splitlines() and "no interval: a single seed" in s["verdict"]
    assert f"{agent['trades']:,} trades" in s["verdict"]


def test_tradelab_stats_refuses_a_folder_without_runs(tmp_path, capsys):
    assert cli.main(["stats", str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and len(err.splitlines()) == 1 and "no run" in err
    assert cli.main(["stats", str(tmp_path / "missing")]) == 2


def test_a_hydra_multirun_gets_stats_json_over_its_jobs(tmp_path):
    from .conftest import TINY_TRADING

    outputs = tmp_path / "outputs"
    argv = [sys.executable, "-m", "tradelab_jax.cli", "train", "-m", "seed=0,1", *TINY_TRADING,
            f"run.outputs={outputs}"]
    proc = subprocess.run(argv, cwd=REPO_ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    [root] = (outputs / "multirun").iterdir()
    s = _strict(root / compute.STATS_FILE)
    assert s["kind"] == "multirun" and s["points"] == 2 and s["configurations"] == 1
    [c] = s["configs"]
    assert c["seeds"] == 2 and c["policies"]["agent"]["sharpe"]["iqm_ci95"] is not None
    for job in ("0", "1"):
        own = _strict(root / job / compute.STATS_FILE)
        assert own["kind"] == "run"
        [value] = own["configs"][0]["policies"]["agent"]["sharpe"]["values"]
        assert value in c["policies"]["agent"]["sharpe"]["values"]


def test_a_walk_forward_run_is_stratified_by_fold_and_joins_its_test_windows(tmp_path):
    from tradelab_jax import report

    from .conftest import train

    root = tmp_path / "cv"
    train(root, "cv=walk_forward", "cv.folds=3", "sweep.seed=[0,1]")
    s = _strict(root / compute.STATS_FILE)
    assert s["kind"] == "cv" and s["configurations"] == 1 and s["points"] == 6
    [c] = s["configs"]
    assert c["folds"] == 3 and c["seeds"] == 2
    assert s["verdict"].startswith("1 configuration (3 folds x 2 seeds): agent Sharpe ")
    packed = json.loads((root / runs.PACKED_FILE).read_text())
    steps: dict = {}
    for p in packed["points"]:
        row = runs.read_eval_summary(root / str(p["dir"]))["splits"]["test"]["agent"]
        steps.setdefault(p["fold"], []).append(row["steps"])
    # the out-of-sample series is every fold's test window once (seeds averaged), in fold order
    assert c["bars"] == sum(min(v) for v in steps.values())
    by_fold: dict = {}
    for p in c["points"]:
        by_fold.setdefault(p["fold"], []).append(p["seed"])
    assert by_fold == {0: [0, 1], 1: [0, 1], 2: [0, 1]}  # the strata the bootstrap resamples within
    assert c["policies"]["agent"]["sharpe"]["iqm_ci95"] is not None
    assert report.main([str(root)]) == 0 and (root / report.REPORT_FILE).is_file()


def test_a_multirun_names_its_configurations_by_the_dotted_keys_that_differ(tmp_path):
    # The jobs' nested config.yaml read flat (tracking.flat, the one flattening rule): only keys that vary
    # name a configuration; seed, cv.fold, run.* and *.seed do not.
    from tradelab_jax.stats import collect

    for job, lr, seed in (("0", 1e-3, 0), ("1", 3e-4, 1), ("2", 1e-3, 1)):
        d = tmp_path / job
        d.mkdir()
        runs.write_config(d, {"seed": seed, "agent": {"ppo": {"lr": lr}, "seed": seed, "gamma": 0.99},
                              "run": {"dir": str(d)}, "cv": {"fold": None}})
        runs.write_status(d, status="done")
    kind, points = collect.discover(tmp_path)
    assert kind == "multirun"
    assert [(p.seed, p.fold, p.config) for p in points] == [
        (0, None, {"agent.ppo.lr": 1e-3}), (1, None, {"agent.ppo.lr": 3e-4}),
        (1, None, {"agent.ppo.lr": 1e-3})]
