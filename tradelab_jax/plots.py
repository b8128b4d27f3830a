"""Figures written to files (matplotlib's Agg canvas: no display, no global backend switch)."""

from __future__ import annotations

import os

import numpy as np

from tradelab_jax.io import atomic_path


def plot_equity(path: str | os.PathLike, ts_ms: np.ndarray, equity: np.ndarray,
                benchmark: np.ndarray | None = None, *, title: str = "", label: str = "agent",
                benchmark_label: str = "buy and hold") -> None:
    """Equity (and an optional benchmark curve) over time above a drawdown panel, saved as PNG."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter
    from matplotlib.figure import Figure

    times = np.asarray(ts_ms, dtype="datetime64[ms]")
    equity = np.asarray(equity, np.float64)
    fig = Figure(figsize=(10, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot(times, equity, lw=1.2, label=label, color="tab:blue")
    if benchmark is not None:
        top.plot(times, benchmark, lw=1.0, label=benchmark_label, color="tab:gray", alpha=0.8)
    top.set_ylabel("equity (quote)")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    if title:
        top.set_title(title)
    drawdown = 1.0 - equity / np.maximum.accumulate(equity)
    bottom.fill_between(times, -100 * drawdown, 0, color="tab:red", alpha=0.4, lw=0)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    locator = AutoDateLocator()
    bottom.xaxis.set_major_locator(locator)
    bottom.xaxis.set_major_formatter(ConciseDateFormatter(locator))
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
