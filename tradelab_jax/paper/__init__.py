"""``tradelab paper``: a trained policy paper-trading live candles through the backtest's own env step.

:mod:`~tradelab_jax.paper.session` (the account, bar by bar, on JAX), :mod:`~tradelab_jax.paper.files`
(the session directory and reading it back, no JAX), :mod:`~tradelab_jax.paper.cli` (the command: the
streamer of ``tradelab data stream`` feeding a session in one process). No order is ever sent.
"""

from __future__ import annotations


def main(argv: list[str]) -> int:
    from tradelab_jax.paper.cli import main as cli_main

    return cli_main(argv)
