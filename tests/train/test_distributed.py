"""Several processes joined by jax.distributed on 127.0.0.1 (training/devices.py).

Two real processes join through JAX's coordination service (CPU), each trains its share of a 4-point
sweep, and the result matches one process training all four; a peer killed mid-run makes the other exit
with one sentence within ``run.distributed_timeout_s`` instead of hanging.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tradelab_jax.errors import UserError
from tradelab_jax.training.devices import distributed_settings, share
from tradelab_jax.training.runner import TIMING_FIELDS

from .helpers import TINY_GYMNAX

SEEDS = [0, 1, 2, 3]
ARGS = [*TINY_GYMNAX, "run.point_block=2", "run.loggers=[]"]

# One process of a distributed sweep: join, train this process's share of SEEDS as its own packed sweep
# (its own run directories: each written by exactly this process), meet the peers when done.
DRIVER = """
import json, sys, time
from tradelab_jax.errors import UserError
from tradelab_jax.training import devices
port, pid, timeout, out, hang = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), sys.argv[4], sys.argv[5]
seeds, args = json.loads(sys.argv[6]), sys.argv[7:]
run = {"coordinator": f"127.0.0.1:{port}", "num_processes": 2, "process_id": pid,
       "distributed_timeout_s": timeout}
try:
    devices.join(devices.distributed_settings(run))
    mine = [seeds[i] for i in devices.share(len(seeds), 2, pid)]
    devices.barrier("start", timeout)
    print("joined", flush=True)
    if hang == str(pid):
        time.sleep(3600)  # the test kills this one
    from tradelab_jax.cli import main
    seed_list = ",".join(map(str, mine))
    assert main(["train", *args, f"sweep.seed=[{seed_list}]", f"run.dir={out}/p{pid}"]) == 0
    devices.barrier("done", timeout)
    print("done", flush=True)
except UserError as err:
    print(f"error: {err}", file=sys.stderr, flush=True)
    devices.exit_without_peers(2)
devices.exit_without_peers(0)
"""


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _start(pid: int, port: int, timeout: int, out: Path, hang: str = "-") -> subprocess.Popen:
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "XLA_FLAGS": ""}
    return subprocess.Popen([sys.executable, "-c", DRIVER, str(port), str(pid), str(timeout), str(out), hang,
                             json.dumps(SEEDS), *ARGS], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def _by_seed(root: Path) -> dict[int, dict]:
    out = {}
    for status in root.rglob("status.json"):
        d = status.parent
        seed = json.loads((d / "eval_summary.json").read_text())["run"]["seed"]
        metrics = [{k: v for k, v in json.loads(line).items() if k not in (*TIMING_FIELDS, "points")}
                   for line in (d / "metrics.jsonl").read_text().splitlines()]
        summary = json.loads((d / "eval_summary.json").read_text())
        summary.pop("run")
        out[seed] = {"metrics": metrics, "eval": summary, "status": json.loads(status.read_text())["status"],
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


def test_two_processes_train_their_shares_and_match_one_process(tmp_path):
    port = _port()
    procs = [_start(pid, port, 60, tmp_path / "two") for pid in (0, 1)]
    outs = [p.communicate(timeout=600) for p in procs]
    for p, (out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err[-3000:]
        assert "done" in out
    one = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "train", *ARGS, "sweep.seed=[0,1,2,3]",
                          f"run.dir={tmp_path / 'one'}"], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "XLA_FLAGS": ""})
    assert one.returncode == 0, one.stderr[-3000:]
    two, single = _by_seed(tmp_path / "two"), _by_seed(tmp_path / "one")
    assert sorted(two) == SEEDS and sorted(single) == SEEDS
    assert {s: v["status"] for s, v in two.items()} == dict.fromkeys(SEEDS, "done")
    # process 0 wrote the run directories of seeds 0, 1 and process 1 those of 2, 3; none by both
    assert sorted(_by_seed(tmp_path / "two" / "p0")) == [0, 1]
    assert sorted(_by_seed(tmp_path / "two" / "p1")) == [2, 3]
    assert two == single


def test_a_killed_peer_fails_the_other_in_one_sentence_within_the_timeout(tmp_path):
    port, timeout = _port(), 10
    survivor = _start(0, port, timeout, tmp_path / "run", hang="1")
    peer = _start(1, port, timeout, tmp_path / "run", hang="1")
    deadline = time.monotonic() + 300
    line = ""
    while "joined" not in line and time.monotonic() < deadline:
        line = peer.stdout.readline()
        assert line or peer.poll() is None, peer.communicate()
    peer.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    _, err = survivor.communicate(timeout=300)
    took = time.monotonic() - killed
    peer.communicate()
    assert survivor.returncode == 2, err[-3000:]
    errors = [e for e in err.splitlines() if e.startswith("error:")]
    assert errors == ["error: a peer process did not reach 'done' within 10 s (run.distributed_timeout_s): "
                      "it died, hangs or is unreachable; see its log"], err[-3000:]
    assert "Traceback" not in err and "Check failure" not in err
    # its own share trains first (seconds), then at most the timeout at the barrier, plus slack for exit
    assert took < 120, took
