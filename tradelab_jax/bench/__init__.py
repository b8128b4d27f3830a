"""``tradelab bench``: throughput of the environment (``env``) and of training (``train``).

Each subcommand lives in its own module with ``main(argv) -> int``: :mod:`tradelab_jax.bench.env` and
``tradelab_jax.bench.train``, :mod:`tradelab_jax.bench.tracking`.
"""

from __future__ import annotations

import importlib
import importlib.util

from tradelab_jax.errors import UserError

SUBCOMMANDS = {
    "env": ("tradelab_jax.bench.env", "environment steps/s: JAX (vmapped) vs the numpy env"),
    "train": ("tradelab_jax.bench.train", "training throughput: JAX PPO vs the SB3 baseline"),
    "tracking": ("tradelab_jax.bench.tracking", "what run.loggers (TensorBoard, MLflow, W&B) cost a run"),
    "folds": ("tradelab_jax.bench.folds", "F folds x S seeds as one program vs F*S separate processes"),
}


def _available(name: str) -> bool:
    return importlib.util.find_spec(SUBCOMMANDS[name][0]) is not None


def _usage() -> str:
    lines = ["usage: tradelab bench <subcommand> [options]", "", "subcommands:"]
    lines += [f"  {name:<8} {help_}" for name, (_, help_) in SUBCOMMANDS.items() if _available(name)]
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    argv = list(argv)
    if not argv or argv[0] in {"-h", "--help", "help"}:
        print(_usage())
        return 0
    name, rest = argv[0], argv[1:]
    if name not in SUBCOMMANDS or not _available(name):
        valid = ", ".join(n for n in SUBCOMMANDS if _available(n))
        raise UserError(f"unknown bench subcommand {name!r}; valid: {valid}")
    return int(importlib.import_module(SUBCOMMANDS[name][0]).main(rest) or 0)
