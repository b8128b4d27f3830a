"""How numbers read, in the CLI's summaries and in the UI's tables (no JAX; the one place for it).

Fractions of a run's summary (returns, drawdown, win rate, exposure) read as percent; other numbers with
two decimals, or in compact scientific notation when two decimals would lose them; counts with thousands
separators. A value that is missing (None, NaN) reads ``-``.
"""

from __future__ import annotations

import math
from typing import Any

# eval_summary.json's metrics and how each reads: `pct` fields are fractions shown as percent.
METRIC_KINDS = {
    "steps": "int", "terminated": "bool", "total_return": "pct", "annual_return": "pct", "sharpe": "num",
    "sortino": "num", "max_drawdown": "pct", "calmar": "num", "trades": "int", "round_trips": "int",
    "win_rate": "pct", "turnover": "num", "fees_paid": "num", "stops_hit": "int", "exposure": "pct",
    "final_equity": "num", "asset_return": "pct", "bars": "int",
}  # fmt: skip


def fmt_num(x: float) -> str:
    """At most 9 characters: two decimals below 10,000, else compact scientific notation (a compounding
    maker-fee rebate reaches 1e13), also for values so small that two decimals would read 0.00."""
    x = float(x)
    if x == 0 or (0.005 <= abs(x) < 1e4):
        return f"{x:,.2f}"
    return f"{x:.2e}"


def fmt_pct(fraction: float, signed: bool = False) -> str:
    text = fmt_num(100 * float(fraction))
    return f"+{text}%" if signed and not text.startswith("-") else f"{text}%"


def fmt_int(n: Any) -> str:
    n = int(n)
    return f"{n:,}" if abs(n) < 10**8 else f"{n:.2e}"


def cell(value: Any, kind: str) -> str:
    """One table cell: kind is ``pct``, ``num``, ``int`` or ``bool``; None and NaN read ``-``."""
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "-"
    if kind == "bool":
        return "yes" if value else "no"
    if kind == "int":
        return fmt_int(value)
    if kind == "pct":
        return fmt_pct(value)
    return fmt_num(value)


def header(field: str) -> str:
    """A metric's column title with its unit (``total_return %``)."""
    return f"{field} %" if METRIC_KINDS.get(field) == "pct" else field
