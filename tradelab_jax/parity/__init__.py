"""``tradelab parity``: the same work on every JAX backend, or a run directory against a local re-run.

Per quantity it reports the max absolute and relative difference against a documented tolerance
(docs/parity.md): discrete telemetry (fills, stop hits, signs of positions, episode ends) must match
exactly, continuous values within tolerance; per-update losses, final parameters and eval_summary.json are
compared too. Writes ``parity_report.json`` and prints a table; exits 1 when anything is over tolerance.

Modules: :mod:`~tradelab_jax.parity.compare` (numbers -> rows), :mod:`~tradelab_jax.parity.tolerances`,
:mod:`~tradelab_jax.parity.workloads`, :mod:`~tradelab_jax.parity.worker` (one process per backend and
precision), :mod:`~tradelab_jax.parity.checks` (workers and run directories -> rows),
:mod:`~tradelab_jax.parity.determinism` (``--measure-determinism-cost``).
"""

from __future__ import annotations

from tradelab_jax.parity.cli import REPORT_FILE, main

__all__ = ["REPORT_FILE", "main"]
