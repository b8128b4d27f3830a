"""run.devices: the device count a packed sweep's points are sharded over (training/devices.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from tradelab_jax.errors import UserError
from tradelab_jax.training.devices import PointBlocks, block_size, mesh_size, requested_devices
from tradelab_jax.training.runner import TIMING_FIELDS

from .helpers import TINY_GYMNAX


@pytest.mark.parametrize(("value", "available", "expected"),
                         [("all", 4, 4), (None, 2, 2), ("1", 4, 1), (3, 4, 3), ("4", 4, 4)])
def test_requested_devices(value, available, expected):
    assert requested_devices(value, available) == expected


@pytest.mark.parametrize(("value", "needle"), [("0", "invalid run.devices='0'"), ("two", "invalid"),
                                               (True, "invalid"), ("1.5", "invalid"),
                                               ("8", "sees 4 local device(s)")])
def test_bad_device_counts_are_one_sentence(value, needle):
    with pytest.raises(UserError) as err:
        requested_devices(value, 4)
    assert needle in str(err.value) and "valid: 'all' or a whole number" in str(err.value)


@pytest.mark.parametrize(("points", "requested", "expected"),
                         [(8, 4, 4), (8, 3, 2), (6, 4, 3), (7, 4, 1), (1, 8, 1), (3, 8, 3), (16, 8, 8),
                          (12, 8, 6)])
def test_the_mesh_is_the_largest_count_dividing_the_points(points, requested, expected):
    assert mesh_size(points, requested) == expected


def test_point_block_must_divide_the_points():
    assert block_size(8, None) is None and block_size(8, 2) == 2
    for bad in (3, 0, True, "2"):
        with pytest.raises(UserError, match=r"invalid run\.point_block"):
            block_size(8, bad)


@pytest.mark.parametrize(("points", "block", "devices", "owners"),
                         [(8, 2, 4, [0, 1, 2, 3]), (8, 2, 2, [0, 0, 1, 1]), (8, None, 4, [0, 1, 2, 3]),
                          (8, 1, 2, [0, 0, 0, 0, 1, 1, 1, 1]), (6, 3, 1, [0, 0])])
def test_blocks_are_contiguous_and_spread_evenly(points, block, devices, owners):
    mesh = SimpleNamespace(devices=SimpleNamespace(flat=list(range(devices))))  # all PointBlocks reads
    blocks = PointBlocks(mesh, points, block)
    assert blocks.owner == owners and blocks.size * blocks.count == points


# Trains the same 8-point sweep on 1, 2 and 4 of 4 host CPU devices, one process (the compiled programs are
# cached per device set, so nothing is shared between the three).
DRIVER = """
import sys
from pathlib import Path
from hydra import compose, initialize_config_dir
from tradelab_jax import paths
from tradelab_jax.cli import main
from tradelab_jax.training import compose as tl_compose, session
out, args = sys.argv[1], sys.argv[2:]
for n in (1, 2, 4):
    assert main(["train", *args, f"run.devices={n}", f"run.dir={out}/d{n}"]) == 0
# Cancelled after 4 of 8 updates on 4 devices, resumed on 1: a resume may change the device count.
tl_compose.register()
with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
    plain = tl_compose.to_plain(compose("config", overrides=[*args, "run.devices=4", f"run.dir={out}/cut"]))
cut = Path(out) / "cut"
from tradelab_jax.training import runner
sizes, split_points = [], runner.split_points
runner.split_points = lambda *a, **k: (b := split_points(*a, **k), sizes.append(len(b.devices)))[0]
assert session.train_config(plain, cut, should_stop=lambda update: update >= 4)["status"] == "cancelled"
# Through the session: the CLI's resume keeps the saved run.devices (train.py's RESUME_RUNTIME_KEYS).
resumed = session.resume_dir(cut, runtime={"devices": "1", "progress": False})
assert resumed["status"] == "done" and sizes == [4, 1], sizes
"""


def _fingerprint(sweep: Path) -> dict[str, Any]:
    """Per point: metrics.jsonl without timings, eval_summary.json without its run info, checkpoint bytes."""
    out = {}
    for point in sorted(p for p in sweep.iterdir() if (p / "status.json").exists()):
        metrics = [{k: v for k, v in json.loads(line).items() if k not in TIMING_FIELDS}
                   for line in (point / "metrics.jsonl").read_text().splitlines()]
        summary = json.loads((point / "eval_summary.json").read_text())
        run = summary.pop("run")
        checkpoints = {p.name: p.read_bytes() for p in sorted((point / "checkpoints").glob("*.msgpack"))}
        out[point.name] = {"metrics": metrics, "eval": summary, "checkpoints": checkpoints,
                           "points": run["points"]}
    return out


# The trading env with a swept env knob (its params are split over the blocks with the plan's axes).
TINY_TRADING = [
    "data.id=binance_btcusdt_1m_2025-10", "agent.num_envs=2", "agent.num_steps=16",
    "agent.total_timesteps=256",
    "agent.update_epochs=1", "agent.num_minibatches=2", "network.hidden_sizes=[8]", "env.episode_length=32",
    "run.chunk_updates=2", "run.progress=false", "run.print_summary=false", "run.eval_splits=[test]",
    "sweep.env.risk_pct=[0.005,0.02]",
]
# The trading env only (CI time): gymnax on several devices runs in the env-split test below and through
# the same PointBlocks; the trading sweep adds the swept env params split with the plan's axes.
CASES = {
    "trading": pytest.param(TINY_TRADING, marks=pytest.mark.slow),
}


@pytest.mark.parametrize("config", list(CASES.values()), ids=list(CASES))
def test_one_two_and_four_devices_give_identical_bytes_and_resume_across_counts(config, tmp_path):
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4"}
    args = [*config, "sweep.seed=[0,1,2,3]", "run.point_block=2", "run.loggers=[]"]
    proc = subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path), *args], env=env,
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    one, two, four, resumed = (_fingerprint(tmp_path / d) for d in ("d1", "d2", "d4", "cut"))
    assert len(one) == 8 and all(p["checkpoints"] and p["metrics"] for p in one.values())
    # the points really differ from each other (a sweep that trained one point 8 times would pass below)
    assert len({p["checkpoints"]["ckpt_000000008.msgpack"] for p in one.values()}) == 8
    assert two == one
    assert four == one
    assert resumed == one


def test_bench_devices_refuses_what_it_cannot_run_in_one_sentence():
    import jax

    from tradelab_jax.bench.scaling import measure_devices
    from tradelab_jax.bench.train import QUICK

    # 3 points over 2 devices would split the 8 envs instead; over 5 devices neither divides
    with pytest.raises(UserError, match=r"--points 3 \(and 8 envs\) cannot be split evenly over \[5\] "):
        measure_devices(None, None, QUICK.bench[0], points=3, devices=(1, 5), min_time_s=0, chunk_env_steps=1)
    too_many = len(jax.local_devices()) + 1
    with pytest.raises(UserError, match=rf"--devices {too_many} but this process sees"):
        measure_devices(None, None, QUICK.bench[0], points=too_many, devices=(too_many,), min_time_s=0,
                        chunk_env_steps=1)


# One point on 4 host devices: its environments are split over them (EnvSplit, XLA's SPMD partitioner);
# the same math as one device, summed in another order, so close but not promised bit-identical.
ENV_DRIVER = """
import json, sys
from pathlib import Path
from tradelab_jax.cli import main
out, args = sys.argv[1], sys.argv[2:]
for n in (1, 4):
    assert main(["train", *args, f"run.devices={n}", f"run.dir={out}/d{n}"]) == 0
"""


def test_one_point_on_four_devices_splits_its_environments(tmp_path):
    args = [*TINY_GYMNAX, "agent.num_envs=4", "run.loggers=[]"]
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=4", "JAX_PLATFORMS": "cpu"}
    done = subprocess.run([sys.executable, "-c", ENV_DRIVER, str(tmp_path), *args], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    split = {n: json.loads((tmp_path / f"d{n}" / "status.json").read_text())["split"] for n in (1, 4)}
    assert split == {1: "points over 1 device(s)", 4: "envs over 4 device(s)"}
    lines = {n: (tmp_path / f"d{n}" / "metrics.jsonl").read_text().splitlines() for n in (1, 4)}
    metrics = {n: [json.loads(line) for line in lines[n]] for n in (1, 4)}
    assert len(metrics[1]) == len(metrics[4]) > 1
    for one, four in zip(metrics[1], metrics[4], strict=True):
        for key in ("loss", "value_loss", "entropy", "reward_mean"):
            assert four[key] == pytest.approx(one[key], rel=1e-4, abs=1e-6), (key, one, four)


def test_the_mesh_takes_the_platform_of_a_default_device_in_effect():
    """``tradelab parity`` re-runs a GPU run inside ``jax.default_device(cpu)``: the mesh must be made of
    that platform's devices, not the default backend's (on a GPU machine, the GPUs). On a CPU-only machine
    both are the CPU; the GPU check script runs the parity re-run for real."""
    import jax

    from tradelab_jax.training.devices import local_devices, split_points

    assert local_devices() == jax.local_devices()
    for default in (jax.devices("cpu")[0], "cpu"):
        with jax.default_device(default):
            assert local_devices() == jax.local_devices(backend="cpu")
            assert {d.platform for d in split_points(2, "all", None, 2).devices} == {"cpu"}
