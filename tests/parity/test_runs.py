"""Training parity through run directories: a multirun through the local submitit launcher (two processes,
same seed), bit-identity across processes, `tradelab parity RUN_DIR` and its failure exit."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tradelab_jax import cli, runs
from tradelab_jax.parity import main as parity_main
from tradelab_jax.parity.workloads import TRAINING_OVERRIDES
from tradelab_jax.training.runner import TIMING_FIELDS

from .helpers import CONTRACT, read_report, rows_by_name

VOLATILE_RUN_KEYS = ("wall_s", "compile_s", "train_s", "steps_per_s", "steps_per_s_all_points")


@pytest.fixture(scope="module")
def multirun(tmp_path_factory, scaled):
    """`tradelab train -m hydra/launcher=local seed=0,0`: two jobs, each its own submitit subprocess."""
    outputs = tmp_path_factory.mktemp("outputs")
    overrides = [o for o in TRAINING_OVERRIDES if not o.startswith("seed=")]
    cmd = [sys.executable, "-m", "tradelab_jax.cli", "train", "-m", "hydra/launcher=local", *overrides,
           "seed=0,0", f"run.outputs={outputs}", "run.tag=parity"]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=scaled(600), check=False)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return outputs


def _learning(run_dir):
    return [{k: v for k, v in m.items() if k not in TIMING_FIELDS} for m in runs.read_metrics(run_dir)]


def _points(outputs):
    return sorted(runs.iter_runs(outputs), key=lambda p: p.name)


def test_local_launcher_multirun_writes_two_complete_run_dirs(multirun):
    points = _points(multirun)
    assert [p.name for p in points] == ["0", "1"]
    # Both job processes resolved the parent's multirun/<ts>_<tag>/ folder, not one each.
    assert len({p.parent for p in points}) == 1, points
    for d in points:
        assert d.parent.parent.name == runs.MULTIRUN_DIR and d.parent.name.endswith("_parity")
        for name in CONTRACT:
            assert (d / name).exists(), (d, name)
        status = runs.read_status(d)
        assert status["status"] == "done" and status["error"] is None and status["progress"] == 1.0
        assert runs.read_config(d)["seed"] == 0
        assert [m["update"] for m in runs.read_metrics(d)] == [1, 2, 3, 4]
        assert "test" in runs.read_eval_summary(d)["splits"]
    # submitit ran the jobs: its folder holds one log pair per job process.
    logs = sorted(p.name for p in multirun.rglob(".submitit/*/*_log.out"))
    assert len(logs) == 2, logs


def test_two_processes_with_the_same_seed_are_bit_identical(multirun):
    a, b = _points(multirun)
    (ca, ma), (cb, mb) = runs.latest_checkpoint(a), runs.latest_checkpoint(b)
    assert ma["update"] == mb["update"] == 4
    assert ca.read_bytes() == cb.read_bytes()
    assert json.dumps(_learning(a)) == json.dumps(_learning(b))
    sa, sb = runs.read_eval_summary(a), runs.read_eval_summary(b)
    for s in (sa, sb):
        for key in VOLATILE_RUN_KEYS:
            s["run"].pop(key)
    assert json.dumps(sa) == json.dumps(sb)


def test_parity_rerun_of_a_cpu_run_is_exact(multirun, tmp_path, capsys):
    run_dir = _points(multirun)[0]
    out = tmp_path / "check"
    assert parity_main([str(run_dir), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    doc = read_report(out)
    report = doc["reports"][0]
    assert doc["ok"] and report["profile"] == "exact" and report["mode"] == "run_dir"
    rows = rows_by_name(report)
    for name in ("training:loss per update", "training:final params", "eval:test.agent metrics",
                 "eval:test.agent counts", "eval:run.dataset_checksum"):
        assert rows[name]["ok"] and rows[name]["mismatches"] == 0, rows[name]
    assert rows["training:loss per update"]["n"] == 4
    assert runs.read_status(out / "local_cpu")["status"] == "done"
    assert not (run_dir / "parity_report.json").exists()  # the checked run is left untouched
    assert "PASS" in printed and "bit-identical" in printed


def test_parity_exits_non_zero_when_over_tolerance(multirun, tmp_path, capsys):
    a, b = _points(multirun)
    copy = tmp_path / "perturbed"
    shutil.copytree(b, copy)
    summary = runs.read_eval_summary(copy)
    summary["splits"]["test"]["agent"]["total_return"] += 1e-3
    runs.write_eval_summary(copy, summary)
    out = tmp_path / "check"
    assert parity_main([str(a), "--against", str(copy), "--out", str(out), "--json"]) == 1
    printed = json.loads(capsys.readouterr().out)
    assert printed["ok"] is False
    failed = [r["name"] for r in printed["reports"][0]["rows"] if not r["ok"]]
    assert failed == ["test.agent metrics"]
    # The same run against an unperturbed twin, with the looser cross-backend tolerances: within them.
    ok = ["--out", str(tmp_path / "ok"), "--profile", "backend"]
    assert parity_main([str(a), "--against", str(b), *ok]) == 0


def test_user_errors_are_one_sentence(tmp_path, capsys):
    not_a_run = tmp_path / "plain"
    not_a_run.mkdir()
    cases = [
        ([str(tmp_path / "missing")], "does not exist"),
        ([str(not_a_run)], "is not a run directory"),
        (["--against", str(not_a_run)], "needs a run directory"),
        (["--workloads", "features,magic"], "invalid --workloads"),
        (["--backends", "tpu"], "invalid --backends"),
        (["--bars", "10"], "too few"),
    ]
    for argv, message in cases:
        assert cli.main(["parity", *argv]) == 2, argv
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and message in err and "\n" not in err, (argv, err)


def test_parity_of_two_different_experiments_says_their_configs_differ(multirun, tmp_path, capsys):
    import yaml

    a, b = _points(multirun)
    other = tmp_path / "other_experiment"
    shutil.copytree(b, other)
    config = runs.read_config(other)
    config["agent"]["num_envs"] = 32
    config["run"]["tag"] = "renamed"  # where a run reports is not what it computes
    (other / runs.CONFIG_FILE).write_text(yaml.safe_dump(config), encoding="utf-8")
    out = tmp_path / "check"
    assert parity_main([str(a), "--against", str(other), "--out", str(out), "--json"]) == 1
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["reports"][0]["rows"]}
    row = rows["config (what is computed)"]
    assert not row["ok"]
    assert row["note"] == ("the configs differ, so the runs are different experiments: agent.num_envs: "
                           f"{runs.read_config(a)['agent']['num_envs']!r} vs 32")
    assert parity_main([str(a), "--against", str(b), "--out", str(tmp_path / "same"), "--json"]) == 0
    rows = {r["name"]: r for r in json.loads(capsys.readouterr().out)["reports"][0]["rows"]}
    assert rows["config (what is computed)"]["ok"]


def test_parity_never_writes_into_the_checked_run(multirun, capsys):
    run_dir = _points(multirun)[0]
    before = sorted(p.relative_to(run_dir) for p in run_dir.rglob("*"))
    for out in (run_dir, run_dir / "check"):
        assert cli.main(["parity", str(run_dir), "--out", str(out)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: --out") and "is inside the checked run directory" in err, err
    assert sorted(p.relative_to(run_dir) for p in run_dir.rglob("*")) == before


def test_relative_difference_of_an_all_zero_reference_is_the_absolute_one():
    import warnings

    from tradelab_jax.parity.compare import max_differences

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no overflow RuntimeWarning
        assert max_differences([3.0, 0.0], [0.0, 0.0]) == (3.0, 3.0)
    assert max_differences([1.1, 2.0], [1.0, 2.0])[1] == pytest.approx(0.1)
