"""Configs refuse what nothing reads or nothing can hold (issue 12, item 7), before any directory exists;
a resume keeps the run's own settings unless the resume command names them (item 8)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tradelab_jax import runs, train
from tradelab_jax.errors import UserError

from .helpers import TINY_GYMNAX


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        # keys nothing reads, at every depth
        ("+agent.lrr=0.1", "unknown config key 'agent.lrr' (added with +?); valid keys there: name, "),
        ("+run.foo=1", "unknown config key 'run.foo'"),
        ("+network.depth=3", "unknown config key 'network.depth'"),
        ("+features.foo=1",
         "unknown config key 'features.foo' (added with +?); valid keys there: name, features"),
        ("+data.foo=1", "unknown config key 'data.foo'"),
        # an unknown option of an optional group would train with the defaults' flattering costs
        ("experiment=nope", "unknown experiment option 'nope'; valid options: cartpole, demo, spot_costs"),
        ("experiment=spot_cost", "unknown experiment option 'spot_cost'"),
        # integers beyond what their use can hold
        ("agent.total_timesteps=100000000000000000000000",
         "invalid agent.total_timesteps=100000000000000000000000"),
        ("env.episode_length=99999999999999999999", "expected a whole number of bars in [1, 2147483647]"),
        ("seed=99999999999999999999", "invalid seed=99999999999999999999: expected a whole number in [0, "),
        ("env.window=1000000000", "invalid env.window=1000000000"),
        # folders a run must not be written into
        ("run.outputs=/dev/null", "run.outputs='/dev/null' is not a folder (/dev/null is a file or device)"),
        ("run.dir=/dev/null", "run.dir='/dev/null' is not a folder"),
        ("run.dir=/", "run.dir='/' is a system folder (/); give a folder of your own"),
        ("hydra.run.dir=/", "hydra.run.dir='/' is a system folder"),
        ("run.outputs=/etc", "run.outputs='/etc' is a system folder"),
    ],
)
def test_the_config_corpus_is_refused_in_one_sentence_before_any_directory(override, expected, outputs):
    names_a_folder = override.startswith(("run.outputs", "run.dir", "hydra.run.dir"))
    extra = [] if names_a_folder else [f"run.outputs={outputs}"]
    with pytest.raises(UserError) as info:
        train.main([override, *extra])
    assert expected in str(info.value)
    assert "\n" not in str(info.value)
    assert not outputs.exists()


def test_a_run_dir_holding_other_files_is_refused(tmp_path):
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "notes.txt").write_text("mine\n")
    with pytest.raises(UserError, match="is a folder that already holds other files; a run directory must "
                                        "be new or empty"):
        train.main([f"run.dir={busy}"])
    assert sorted(p.name for p in busy.iterdir()) == ["notes.txt"]


def test_the_cli_prints_one_line_for_a_device_outputs(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "train", "run.outputs=/dev/null"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == ["error: run.outputs='/dev/null' is not a folder (/dev/null is a file or device); give a "
                     "folder path"], proc.stderr


def _cancelled_quiet_run(tmp_path):
    from tradelab_jax.training import session

    from .test_config_errors import _compose

    plain = _compose([*TINY_GYMNAX, "run.eval=false"])  # TINY_GYMNAX: progress and summary off too
    cut = tmp_path / "quiet"
    assert session.train_config(plain, cut, should_stop=lambda update: update >= 2)["status"] == "cancelled"
    return cut


def test_a_resume_keeps_the_runs_own_settings(tmp_path):
    cut = _cancelled_quiet_run(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "train", f"run.resume={cut}"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert runs.read_status(cut)["status"] == "done"
    summary = json.loads((cut / runs.EVAL_FILE).read_text())
    assert "mean_episode_return" not in summary  # run.eval=false kept: not evaluated
    assert "greedy mean episode return" not in proc.stdout and "run directory:" not in proc.stdout
    assert "step/s" not in proc.stderr and "%|" not in proc.stderr  # no progress bar
    assert runs.read_config(cut)["run"]["eval"] is False


def test_a_resume_applies_the_settings_it_names(tmp_path):
    cut = _cancelled_quiet_run(tmp_path)
    proc = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "train", f"run.resume={cut}",
                           "run.eval=true", "run.print_summary=true"],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "mean_episode_return" in json.loads((cut / runs.EVAL_FILE).read_text())
    assert "greedy mean episode return" in proc.stdout


def test_help_needs_no_jax():
    """``tradelab train --help`` answers from the configs alone: no value checks, no JAX import (it took
    8-11 s on a busy machine when it imported JAX)."""
    code = ("import sys, atexit\n"
            "atexit.register(lambda: print('jax imported:', 'jax' in sys.modules))\n"
            "from tradelab_jax.cli import main\n"
            "main(['train', '--help'])\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "== Config groups ==" in proc.stdout or "Powered by Hydra" in proc.stdout
    assert proc.stdout.strip().splitlines()[-1] == "jax imported: False"


def test_a_run_dir_with_queued_sweep_points_is_accepted(tmp_path):
    """The UI queues a packed sweep's point folders before it starts the trainer on the group folder."""
    from tradelab_jax.training import compose

    group = tmp_path / "multirun" / "x_ui"
    for n in range(2):
        runs.queue_run(group / str(n))
    (group / runs.CONSOLE_FILE).write_text("$ python -m tradelab_jax.train ...\n")  # the UI's job log
    compose.check_overrides([*TINY_GYMNAX, "sweep.seed=[0,1]", f"run.dir={group}"], multirun=False)
    (group / "notes.txt").write_text("mine\n")
    with pytest.raises(UserError, match="already holds other files"):
        compose.check_overrides([*TINY_GYMNAX, "sweep.seed=[0,1]", f"run.dir={group}"], multirun=False)
