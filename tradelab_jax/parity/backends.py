"""Which JAX backends this machine has, and starting a parity worker on one of them.

The parent process never initialises a GPU itself (it would pre-allocate most of its memory and starve
the workers); it asks a short probe process instead. Each worker gets its settings through environment
variables, because JAX reads them once at start-up.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tradelab_jax.errors import UserError

# The settings that make XLA:GPU runs repeatable (docs/parity.md): deterministic reductions and
# scatters instead of atomics, and float32 matmuls in full float32 instead of TF32 tensor cores.
DETERMINISTIC_XLA_FLAG = "--xla_gpu_deterministic_ops=true"
DETERMINISTIC_MATMUL_PRECISION = "highest"


@dataclass(frozen=True)
class WorkerSpec:
    """How one worker process runs: platform, precision and numerics settings."""

    platform: str = "cpu"  # cpu | gpu
    x64: bool = False
    deterministic: bool = False  # DETERMINISTIC_XLA_FLAG + DETERMINISTIC_MATMUL_PRECISION

    @property
    def label(self) -> str:
        parts = [self.platform, "float64" if self.x64 else "float32"]
        if self.deterministic:
            parts.append("deterministic")
        return "_".join(parts)

    @property
    def title(self) -> str:
        return self.label.replace("_", " ")

    def environ(self, base: Mapping[str, str] | None = None) -> dict[str, str]:
        env = dict(os.environ if base is None else base)
        for key in ("JAX_ENABLE_X64", "JAX_DEFAULT_MATMUL_PRECISION", "JAX_PLATFORMS", "JAX_PLATFORM_NAME"):
            env.pop(key, None)
        flags = [f for f in env.get("XLA_FLAGS", "").split()
                 if not f.startswith("--xla_gpu_deterministic_ops")]
        if self.platform == "cpu":
            env["JAX_PLATFORMS"] = "cpu"  # never touch a GPU from a CPU worker
        if self.x64:
            env["JAX_ENABLE_X64"] = "1"
        if self.deterministic:
            flags.append(DETERMINISTIC_XLA_FLAG)
            env["JAX_DEFAULT_MATMUL_PRECISION"] = DETERMINISTIC_MATMUL_PRECISION
        if flags:
            env["XLA_FLAGS"] = " ".join(flags)
        else:
            env.pop("XLA_FLAGS", None)
        # Workers run one at a time; growing on demand leaves room for a probe or a second process.
        env.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")
        env.setdefault("PYTHONHASHSEED", "0")
        return env


_PROBE = (
    "import json, jax\n"
    "out = {}\n"
    "for name in ('cpu', 'gpu'):\n"
    "    try:\n"
    "        out[name] = [getattr(d, 'device_kind', d.platform) for d in jax.devices(name)]\n"
    "    except RuntimeError:\n"
    "        out[name] = []\n"
    "print(json.dumps(out))\n"
)


def probe_backends(timeout_s: float = 120.0) -> dict[str, list[str]]:
    """``{"cpu": [kinds...], "gpu": [kinds...]}`` as a fresh JAX process sees them."""
    env = WorkerSpec("gpu").environ()
    proc = subprocess.run([sys.executable, "-c", _PROBE], env=env, capture_output=True, text=True,
                          timeout=timeout_s, check=False)
    if proc.returncode != 0:
        raise RuntimeError(f"the backend probe failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def gpu_available() -> bool:
    return bool(probe_backends().get("gpu"))


def run_worker(spec: WorkerSpec, out: Path, args: Sequence[str] = (), *, timeout_s: float = 1800.0,
               log: Path | None = None) -> dict:
    """Run ``python -m tradelab_jax.parity.worker --out OUT ARGS`` under ``spec``; returns its worker.json."""
    out.mkdir(parents=True, exist_ok=True)
    cmd = [sys.executable, "-m", "tradelab_jax.parity.worker", "--out", str(out), "--platform", spec.platform,
           *args]
    log = log or out / "worker.log"
    with open(log, "w", encoding="utf-8") as f:
        proc = subprocess.run(cmd, env=spec.environ(), stdout=f, stderr=subprocess.STDOUT, timeout=timeout_s,
                              check=False)
    if proc.returncode != 0:
        tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
        errors = [line for line in tail.splitlines() if line.startswith("error: ")]
        if errors:
            raise UserError(errors[-1].removeprefix("error: "))
        raise RuntimeError(f"parity worker {spec.label} failed (exit {proc.returncode}); log {log}:\n{tail}")
    return json.loads((out / "worker.json").read_text(encoding="utf-8"))
