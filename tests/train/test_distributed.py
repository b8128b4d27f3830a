"""Several processes joined by jax.distributed on 127.0.0.1: ``tradelab train`` with run.coordinator.

Two real ``tradelab train`` processes join through JAX's coordination service (CPU), agree on one sweep
directory, each trains its share of a 4-point sweep into it, and the result matches one process training
all four; a peer killed mid-run makes the other exit with one sentence within
``run.distributed_timeout_s`` instead of hanging.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tradelab_jax import runs
from tradelab_jax.errors import UserError
from tradelab_jax.training.devices import distributed_settings, share
from tradelab_jax.training.runner import TIMING_FIELDS

from .helpers import TINY_GYMNAX, only_child

# The trading env, 4 points: env.risk_pct is the outer axis, so each process's share holds one risk level
# (the knob must stay traced, as in the whole sweep's program) and agent.lr varies inside it.
ARGS = [
    "data.id=binance_btcusdt_1m_2025-10", "agent.num_envs=2", "agent.num_steps=16",
    "agent.total_timesteps=256",
    "agent.update_epochs=1", "agent.num_minibatches=2", "network.hidden_sizes=[8]", "env.episode_length=32",
    "run.chunk_updates=2", "run.progress=false", "run.eval_splits=[test]", "run.loggers=[]",
    "sweep.env.risk_pct=[0.005,0.02]", "sweep.agent.lr=[0.001,0.0003]", "run.point_block=1",
]
ENV = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(args: list[str], **kw) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "tradelab_jax.cli", "train", *ARGS, *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, **kw)


def _process(pid: int, port: int, timeout: int, outputs: Path) -> subprocess.Popen:
    """One process of a two-process ``tradelab train``: no run.dir, so the processes must agree on the
    timestamped sweep directory themselves."""
    return _train([f"run.coordinator=127.0.0.1:{port}", "run.num_processes=2", f"run.process_id={pid}",
                   f"run.distributed_timeout_s={timeout}", f"run.outputs={outputs}"])


def _points(root: Path) -> dict[str, dict]:
    """Per point directory: metrics (no timings), evaluation (no run info), status and checkpoint bytes."""
    out = {}
    for d in runs.point_dirs(root):
        summary = json.loads((d / "eval_summary.json").read_text())
        summary.pop("run")
        metrics = [{k: v for k, v in json.loads(line).items() if k not in (*TIMING_FIELDS, "points")}
                   for line in (d / "metrics.jsonl").read_text().splitlines()]
        out[d.name] = {"metrics": metrics, "eval": summary, "status": runs.read_status(d)["status"],
                       "checkpoints": {p.name: p.read_bytes() for p in (d / "checkpoints").glob("*.msgpack")}}
    return out


def test_settings_are_explicit_or_slurm_and_refused_in_one_sentence():
    assert distributed_settings({}, {}) is None
    got = distributed_settings({"coordinator": "10.0.0.1:1234", "num_processes": 2, "process_id": 1}, {})
    assert got == {"coordinator_address": "10.0.0.1:1234", "num_processes": 2, "process_id": 1,
                   "timeout_s": 120}
    slurm = distributed_settings({"distributed_timeout_s": 30}, {"SLURM_NTASKS": "4", "SLURM_PROCID": "3"})
    assert slurm == {"coordinator_address": None, "num_processes": None, "process_id": None, "timeout_s": 30}
    assert distributed_settings({}, {"SLURM_NTASKS": "1", "SLURM_PROCID": "0"}) is None
    for bad, needle in [({"coordinator": "h:1"}, "missing: run.num_processes, run.process_id"),
                        ({"coordinator": "h:1", "num_processes": 2, "process_id": 2}, "0 <= process_id"),
                        ({"coordinator": "h", "num_processes": 2, "process_id": 0}, "host:port"),
                        ({"distributed_timeout_s": 0}, "whole seconds")]:
        with pytest.raises(UserError, match=needle):
            distributed_settings(bad, {})


@pytest.mark.parametrize(("points", "processes", "shares"),
                         [(4, 2, [[0, 1], [2, 3]]), (5, 2, [[0, 1, 2], [3, 4]]), (2, 3, [[0], [1], []])])
def test_each_point_belongs_to_exactly_one_process(points, processes, shares):
    assert [list(share(points, processes, p)) for p in range(processes)] == shares


def test_two_processes_train_one_sweep_and_match_one_process(tmp_path):
    port = _port()
    procs = [_process(pid, port, 120, tmp_path / "two") for pid in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (_, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
    one = _train([f"run.dir={tmp_path / 'one'}", "run.print_summary=false"])
    _, err = one.communicate(timeout=600)
    assert one.returncode == 0, err[-3000:]
    sweep = only_child(tmp_path / "two" / "multirun")  # one directory, though the processes started apart
    two, single = _points(sweep), _points(tmp_path / "one")
    assert sorted(two) == ["0", "1", "2", "3"] and {v["status"] for v in two.values()} == {"done"}
    assert two == single  # metrics, evaluation and checkpoint bytes
    # each point directory was written by exactly one process (its status names it), the sweep's own
    # files by process 0, which also computed the statistics over all four points
    processes = [runs.read_status(sweep / n)["process"] for n in "0123"]
    assert processes == ["0 of 2", "0 of 2", "1 of 2", "1 of 2"]
    assert json.loads((sweep / runs.PACKED_FILE).read_text()) == json.loads(
        (tmp_path / "one" / runs.PACKED_FILE).read_text())
    assert (sweep / "stats.json").is_file() and (sweep / ".hydra" / "config.yaml").is_file()
    (out0, err0), (out1, err1) = outs
    assert "points 0-1 of 4: process 0 of 2" in err0 and "points 2-3 of 4: process 1 of 2" in err1
    assert "verdict:" in out0 and "verdict:" not in out1
    assert "sweep of 4 points" in out0 and "[3] env.risk_pct=0.02 agent.lr=0.0003" in out1


def test_a_killed_peer_fails_the_other_in_one_sentence_within_the_timeout(tmp_path):
    port, timeout = _port(), 10
    survivor = _process(0, port, timeout, tmp_path / "run")
    peer = _process(1, port, timeout, tmp_path / "run")
    deadline = time.monotonic() + 300
    line = ""
    while "training " not in line and time.monotonic() < deadline:  # joined, planned, compiling
        line = peer.stderr.readline()
        assert line or peer.poll() is None, peer.communicate()
    peer.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, err = survivor.communicate(timeout=300)
    took = time.monotonic() - killed
    peer.communicate()
    assert survivor.returncode == 2, err[-3000:]
    errors = [e for e in err.splitlines() if e.startswith("error:")]
    assert errors == ["error: a peer process did not reach 'finished' within 10 s "
                      "(run.distributed_timeout_s): "
                      "it died, hangs or is unreachable; see its log"], err[-3000:]
    assert "Traceback" not in err and "Check failure" not in err
    # its own share trains first (seconds), then at most the timeout at the barrier, plus slack for exit
    assert took < 120, took
    # the sweep says what happened: the survivor's points done, the dead process's interrupted (its pid is
    # gone), no statistics over a sweep with missing points
    sweep = only_child(tmp_path / "run" / "multirun")
    assert [runs.run_state(sweep / n) for n in "0123"] == ["done", "done", "interrupted", "interrupted"]
    assert not (sweep / "stats.json").exists()
    # the dead process stopped before its first checkpoint: a resume says so in one sentence
    again = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "train", f"run.resume={sweep}"],
                           env=ENV, capture_output=True, text=True, timeout=300)
    assert again.returncode == 2 and "point 2 has no checkpoint" in again.stderr, again.stderr[-2000:]


def test_a_sweep_with_some_points_done_resumes_only_the_others(tmp_path):
    """What a dead peer leaves (its points stopped with checkpoints, the others done) resumes in one
    process: the done points stay as they are, the others train on from their checkpoints and end with the
    bytes of an uninterrupted run."""
    from hydra import compose, initialize_config_dir

    from tradelab_jax import paths
    from tradelab_jax.training import compose as tl_compose
    from tradelab_jax.training import session

    tl_compose.register()
    with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
        plain = tl_compose.to_plain(compose("config", overrides=[
            *TINY_GYMNAX, "sweep.seed=[0,1]", "sweep.agent.lr=[0.001,0.0003]", "run.point_block=1",
            "run.loggers=[]"]))
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    assert session.train_config(plain, whole)["status"] == "done"
    assert session.train_config(plain, cut, should_stop=lambda update: update >= 4)["status"] == "cancelled"
    for n in "01":  # as if their process had finished them: the uninterrupted run's files
        shutil.rmtree(cut / n)
        shutil.copytree(whole / n, cut / n)
    before = {n: (cut / n / "eval_summary.json").read_bytes() for n in "01"}
    resumed = session.resume_dir(cut, runtime={"progress": False})
    assert resumed["status"] == "done" and resumed["dirs"] == [str(cut / "2"), str(cut / "3")]
    assert {n: (cut / n / "eval_summary.json").read_bytes() for n in "01"} == before
    assert _points(cut) == _points(whole)
    with pytest.raises(UserError, match="every point of the sweep is done"):
        session.resume_dir(cut)
