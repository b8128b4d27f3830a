"""Trades as round trips, from one episode's telemetry (numpy + pandas, no JAX).

A round trip opens when the position leaves flat (or flips) and closes when it returns to flat (or flips
again); its P&L is measured exactly as `env.metrics.round_trips` measures it (equity before the entry step
to equity after the exit step; a flip's step counts for the position it closes), so the rows here agree
with eval_summary.json's ``round_trips`` and ``win_rate``. A position still open at the episode's end is a
row with no exit (``open``), counted by neither.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd

COLUMNS = ("side", "entry_time", "entry_price", "exit_time", "exit_price", "size", "fees", "pnl", "exit")


def round_trip_table(telemetry: Mapping[str, np.ndarray], initial_cash: float) -> pd.DataFrame:
    """One row per round trip: side (long/short), entry/exit time (the step's ``ts``, ms) and price (the
    fill price, or the stop's exit price), the largest absolute size held, the fees of its steps, the P&L
    and how it ended (``signal``, ``stop``, ``flip`` or ``open``)."""
    position = np.asarray(telemetry["position"], np.float64)
    n = position.size
    equity = np.concatenate([[float(initial_cash)], np.asarray(telemetry["equity"], np.float64)])
    fees = np.asarray(telemetry["limit_fee"], np.float64) + np.asarray(telemetry["stop_fee"], np.float64)
    fill = np.asarray(telemetry["fill_price"], np.float64)
    stop = np.asarray(telemetry["stop_hit"], bool)
    exit_px = np.asarray(telemetry["exit_price"], np.float64)
    ts = np.asarray(telemetry["ts"], np.int64) if "ts" in telemetry else np.arange(n)
    sign = np.sign(np.concatenate([[0.0], position]))
    rows, open_at = [], None  # open_at: (entry step, equity index the P&L and fees count from)

    def close(step: int, how: str, eq_index: int) -> None:
        entry, base = open_at
        held = position[entry:step + 1] if how != "flip" else position[entry:step]
        rows.append({
            "side": "long" if sign[entry + 1] > 0 else "short",
            "entry_time": int(ts[entry]), "entry_price": float(fill[entry]),
            "exit_time": int(ts[step]) if how != "open" else None,
            "exit_price": (float(exit_px[step]) if how == "stop" else float(fill[step])) if how != "open"
            else None,
            "size": float(np.max(np.abs(held))) if held.size else 0.0,
            "fees": float(np.sum(fees[base:step + 1])),  # after a flip: from the step after it
            "pnl": float(equity[eq_index] - equity[base]) if how != "open" else None,
            "exit": how,
        })

    for i in range(1, n + 1):  # sign[i] is the position after step i - 1
        if sign[i] == sign[i - 1]:
            continue
        step = i - 1
        if sign[i - 1] != 0 and open_at is not None:
            close(step, "flip" if sign[i] != 0 else ("stop" if stop[step] else "signal"), i)
        open_at = None if sign[i] == 0 else ((step, i - 1) if sign[i - 1] == 0 else (step, i))
    if open_at is not None:
        close(n - 1, "open", n)
    return pd.DataFrame(rows, columns=list(COLUMNS))
