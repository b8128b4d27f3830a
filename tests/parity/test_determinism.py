"""The deterministic-settings harness: worker environments and the cost table (no worker runs here)."""

from __future__ import annotations

from tradelab_jax.parity.backends import DETERMINISTIC_XLA_FLAG, WorkerSpec
from tradelab_jax.parity.determinism import markdown_table
from tradelab_jax.parity.workloads import training_argv


def test_worker_environments_carry_the_settings():
    base = {"XLA_FLAGS": "--xla_gpu_deterministic_ops=false --xla_dump_to=/tmp/d", "JAX_ENABLE_X64": "1",
            "PATH": "/bin"}
    gpu = WorkerSpec("gpu", deterministic=True).environ(base)
    assert gpu["XLA_FLAGS"].split() == ["--xla_dump_to=/tmp/d", DETERMINISTIC_XLA_FLAG]
    assert gpu["JAX_DEFAULT_MATMUL_PRECISION"] == "highest" and "JAX_PLATFORMS" not in gpu
    assert "JAX_ENABLE_X64" not in gpu and gpu["PATH"] == "/bin"
    cpu64 = WorkerSpec("cpu", x64=True).environ(base)
    assert cpu64["JAX_PLATFORMS"] == "cpu" and cpu64["JAX_ENABLE_X64"] == "1"
    assert cpu64["XLA_FLAGS"] == "--xla_dump_to=/tmp/d" and "JAX_DEFAULT_MATMUL_PRECISION" not in cpu64
    assert WorkerSpec("gpu", deterministic=True).label == "gpu_float32_deterministic"


def test_training_overrides_replace_by_key(tmp_path):
    argv = training_argv(tmp_path / "r", ["agent.num_envs=64", "run.eval=false"])
    assert "agent.num_envs=64" in argv and "agent.num_envs=4" not in argv
    assert argv[-1] == f"run.dir={tmp_path / 'r'}" and "run.eval=false" in argv


def test_cost_table_shows_throughput_cost_and_repeatability():
    same = {"params": True, "losses": True, "rollouts": True}
    report = {"settings": [
        {"setting": "default", "device": "gpu:NVIDIA H100", "train_steps_per_s": 1_000_000.0,
         "train_cost_pct": 0.0, "rollout_steps_per_s": 50_000.0, "rollout_cost_pct": 0.0, "compile_s": 12.3,
         "repeat_bit_identical": {**same, "params": False}},
        {"setting": "deterministic", "device": "gpu:NVIDIA H100", "train_steps_per_s": 800_000.0,
         "train_cost_pct": 25.0, "rollout_steps_per_s": 50_000.0, "rollout_cost_pct": 0.0, "compile_s": 12.9,
         "repeat_bit_identical": same},
    ]}
    lines = markdown_table(report).splitlines()
    assert lines[0].startswith("| setting |") and len(lines) == 4
    assert "| default | gpu:NVIDIA H100 | 1,000,000 | 0.0% |" in lines[2] and "NO / yes / yes" in lines[2]
    assert "| 25.0% |" in lines[3] and "yes / yes / yes" in lines[3]
