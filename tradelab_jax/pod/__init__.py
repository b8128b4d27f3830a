"""Training on rented GPU pods (RunPod): ``tradelab pod launch|status|logs|stop`` (see docs/pods.md)."""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from tradelab_jax.pod.cli import main as _main

    return _main(argv)


__all__ = ["main"]
