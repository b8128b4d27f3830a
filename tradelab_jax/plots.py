"""Equity figures: the one equity-and-drawdown drawing, shared by the trainer's and the episode's
``equity.png`` and by the UI (matplotlib's Figure/Agg objects: no display, no pyplot state, no global backend
switch, so figures can be built from several request threads at once)."""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from tradelab_jax.io import atomic_path

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

AGENT_COLOR = "tab:blue"
BENCHMARK_COLOR = "tab:gray"
DRAWDOWN_COLOR = "tab:red"  # the agent's drawdown area


def drawdown(equity: np.ndarray) -> np.ndarray:
    """Fraction below the running peak, 0 at a new high (a NaN gap is skipped by the peak, stays NaN)."""
    equity = np.asarray(equity, np.float64)
    return 1.0 - equity / np.fmax.accumulate(equity)


def date_axis(ax: Axes) -> None:
    """Concise UTC dates on a time axis."""
    from matplotlib.dates import AutoDateLocator, ConciseDateFormatter

    locator = AutoDateLocator()
    ax.xaxis.set_major_locator(locator)
    ax.xaxis.set_major_formatter(ConciseDateFormatter(locator))


def equity_figure(ts_ms: np.ndarray, equity: np.ndarray, benchmark: np.ndarray | None = None, *,
                  title: str = "", label: str = "agent", benchmark_label: str = "buy and hold",
                  benchmark_drawdown: bool = False) -> Figure:
    """Equity (and an optional benchmark curve) over time (``ts_ms``: epoch ms, UTC) above a drawdown panel
    in percent: the agent's, and the benchmark's too with ``benchmark_drawdown``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    times = np.asarray(ts_ms, dtype="datetime64[ms]")
    equity = np.asarray(equity, np.float64)
    fig = Figure(figsize=(10, 6), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    top, bottom = fig.subplots(2, 1, sharex=True, height_ratios=(3, 1))
    top.plot(times, equity, lw=1.2, label=label, color=AGENT_COLOR)
    if benchmark is not None:
        top.plot(times, benchmark, lw=1.0, label=benchmark_label, color=BENCHMARK_COLOR, alpha=0.8)
    top.set_ylabel("equity (quote)")
    top.legend(loc="upper left")
    top.grid(alpha=0.3)
    if title:
        top.set_title(title)
    bottom.fill_between(times, -100 * drawdown(equity), 0, color=DRAWDOWN_COLOR, alpha=0.4, lw=0, label=label)
    if benchmark is not None and benchmark_drawdown:
        bottom.fill_between(times, -100 * drawdown(benchmark), 0, color=BENCHMARK_COLOR, alpha=0.4, lw=0,
                            label=benchmark_label)
    bottom.set_ylabel("drawdown %")
    bottom.grid(alpha=0.3)
    date_axis(bottom)
    return fig


def plot_equity(path: str | os.PathLike, ts_ms: np.ndarray, equity: np.ndarray,
                benchmark: np.ndarray | None = None, *, title: str = "", label: str = "agent",
                benchmark_label: str = "buy and hold") -> None:
    """:func:`equity_figure` with the agent's drawdown, saved as PNG (atomically) at ``path``."""
    fig = equity_figure(ts_ms, equity, benchmark, title=title, label=label, benchmark_label=benchmark_label)
    with atomic_path(path, suffix=".png") as tmp:
        fig.savefig(tmp, format="png")
