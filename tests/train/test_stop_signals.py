"""Every way a run can be stopped ends in a final state (issue 11, item 1).

SIGTERM (timeout, SLURM, docker, pods), SIGHUP (a closed terminal) and SIGINT (Ctrl-C) are sent to a real
``tradelab train`` process in each phase: compiling, training, evaluating, writing telemetry and plots. Each
run ends ``cancelled`` with no pid and the ``run.resume=`` command, never a phantom ``running``. The driver
holds the process in the phase by wrapping that phase's own function (it writes a flag file, then waits
until the test has sent the signal), so the signal lands in the phase for sure, whatever the machine's load.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from tradelab_jax import runs

from .helpers import TINY_GYMNAX

TINY_TRADING = [
    "data.id=binance_btcusdt_1m_2025-10", "agent.num_envs=2", "agent.num_steps=16",
    "agent.total_timesteps=128", "agent.update_epochs=1", "agent.num_minibatches=2",
    "network.hidden_sizes=[8]", "env.episode_length=32", "run.chunk_updates=2", "run.progress=false",
    "run.print_summary=false", "run.eval_splits=[test]",
]
# phase -> (module, function the phase runs, seconds the wrapper waits at most for the test's signal: it goes
# on once the signal was sent, where the signal is deferred to the next chunk boundary, or is interrupted)
PHASES = {
    "starting": ("tradelab_jax.training.runner", "train_points", 600),  # the run written queued, no bar yet
    "compiling": ("tradelab_jax.training.runner", "_compile_chunks", 600),
    "training": ("tradelab_jax.training.runner", "_record_chunk", 600),
    "evaluating": ("tradelab_jax.training.evaluate", "evaluate_points", 600),
    "writing": ("tradelab_jax.training.evaluate", "write_telemetry", 600),
}
DRIVER = """
import importlib, os, sys, time
module, name, wait = sys.argv[1], sys.argv[2], float(sys.argv[3])
mod = importlib.import_module(module)
original = getattr(mod, name)
def held(*args, **kwargs):
    flag = os.environ["PHASE_FLAG"]
    if not os.path.exists(flag):
        open(flag, "w").close()
        end = time.monotonic() + wait
        while time.monotonic() < end and not os.path.exists(flag + ".sent"):
            time.sleep(0.05)
    return original(*args, **kwargs)
setattr(mod, name, held)
from tradelab_jax.cli import main
sys.exit(main(["train", *sys.argv[4:]]))
"""


def _stop_in(phase: str, signum: int, tmp_path: Path, config: list[str], wait_for, scaled):
    run_dir, flag = tmp_path / "run", tmp_path / "in_phase"
    module, name, wait = PHASES[phase]
    argv = [sys.executable, "-c", DRIVER, module, name, str(wait), *config, f"run.dir={run_dir}"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PHASE_FLAG": str(flag)})

    def in_phase() -> bool:
        assert proc.poll() is None, proc.communicate()
        return flag.exists()

    # generous: it protects the suite from a trainer that never starts (scaled for a busy machine)
    wait_for(in_phase, f"the trainer to reach {phase}", 600)
    proc.send_signal(signum)
    Path(f"{flag}.sent").touch()  # the signal is on its way: the held phase may go on
    out, err = proc.communicate(timeout=scaled(600))
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err), run_dir


@pytest.mark.parametrize(("phase", "signum", "config"), [
    ("compiling", signal.SIGTERM, TINY_GYMNAX),
    ("training", signal.SIGTERM, TINY_GYMNAX),
    ("evaluating", signal.SIGTERM, TINY_TRADING),
    ("writing", signal.SIGTERM, TINY_TRADING),
    ("evaluating", signal.SIGHUP, TINY_TRADING),
    ("training", signal.SIGINT, TINY_GYMNAX),
], ids=["sigterm-compiling", "sigterm-training", "sigterm-evaluating", "sigterm-writing",
        "sighup-evaluating", "sigint-training"])
def test_a_stop_signal_in_any_phase_ends_cancelled_with_the_resume_command(phase, signum, config, tmp_path,
                                                                           wait_for, scaled):
    done, run_dir = _stop_in(phase, signum, tmp_path, config, wait_for, scaled)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    status = runs.read_status(run_dir)
    assert status["status"] == "cancelled" and status["pid"] is None, status
    assert f"run.resume={run_dir}" in done.stderr
    if phase in ("compiling", "training"):  # deferred: stops at the next chunk boundary, with a checkpoint
        assert "cancelled after update 2; the last checkpoint is kept" in done.stderr
    else:
        assert status["error"] == f"stopped by {signal.Signals(signum).name}"
    runs.resumable(run_dir)  # raises NotResumable if the stopped run could not be continued


def test_a_run_stopped_while_evaluating_resumes_to_done(tmp_path, wait_for, scaled):
    """After training ended, a stop in evaluation keeps the final checkpoint: the resume only evaluates."""
    _, run_dir = _stop_in("evaluating", signal.SIGTERM, tmp_path, TINY_TRADING, wait_for, scaled)
    resumed = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "train", f"run.resume={run_dir}"],
                             capture_output=True, text=True, timeout=scaled(600))
    assert resumed.returncode == 0, resumed.stderr
    assert runs.read_status(run_dir)["status"] == "done"
    assert json.loads((run_dir / runs.EVAL_FILE).read_text())["run"]["env_steps"] > 0


def test_a_trainer_killed_while_starting_leaves_its_run_interrupted_not_queued(tmp_path, wait_for, scaled):
    """SIGKILL (no handler runs) after the trainer wrote its run ``queued`` and before it marked it running
    (it loads the data and compiles meanwhile): the status names the dead pid, so the run reads
    interrupted, not queued for ever."""
    done, run_dir = _stop_in("starting", signal.SIGKILL, tmp_path, TINY_GYMNAX, wait_for, scaled)
    assert done.returncode == -signal.SIGKILL
    status = runs.read_status(run_dir)
    assert status["status"] == "queued" and isinstance(status["pid"], int)
    assert not runs.pid_alive(status["pid"]) and status["host"] == runs.host()
    assert runs.run_state(run_dir) == "interrupted"
