"""The Paper tab: the ``tradelab paper`` sessions under ``<outputs>/paper/`` (docs/paper.md) and, for the
picked one, its equity and its trades, re-read every :data:`REFRESH_S` by the same ``gr.Timer`` mechanism
as the Launch tab's job panel, so a running session is watched as it trades. The figure and the trades are
sent again only when the session's journal changed (:func:`view_key`), so a tick between two bars leaves
the user's zoom alone.

A session is named by its path relative to the outputs root (``paper/<ts>_<symbol>``) and opened only
through :func:`resolve_session`, which applies the runs' rules (:func:`results.resolve_id`): plain id
parts, inside the outputs root, not reached through a symbolic link, and none of its files a link out of it
(:func:`runs.run_file_path`).
The data functions (:func:`sessions_frame`, :func:`session_view`) hold no Gradio state and are what the
tests call.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from tradelab_jax import runs
from tradelab_jax.data.schema import ms_to_iso
from tradelab_jax.errors import UserError
from tradelab_jax.paper import files
from tradelab_jax.ui import results
from tradelab_jax.ui.tabs import Shared, md, notes_md

REFRESH_S = 3.0  # seconds between two re-reads; a paper session trades one bar a timeframe (1m by default)
PAPER_DIR = "paper"  # <outputs>/paper/<session>/, tradelab paper's default --out
SESSION_COLUMNS = ("session", "symbol", "status", "bars", "last_bar", "equity", "total_return")
TRADE_COLUMNS = ("time", "kind", "side", "size", "price", "fee")
# every file read_session opens: each must be a plain file of the session, never a link out of it
SESSION_FILES = (files.PAPER_FILE, files.JOURNAL_FILE, runs.STATUS_FILE, files.SUMMARY_FILE)
EMPTY_TRADES = pd.DataFrame(columns=list(TRADE_COLUMNS))


def no_sessions_note(outputs: Path) -> str:
    return (f"No paper sessions in `{md(Path(outputs) / PAPER_DIR)}` yet: `tradelab paper RUN_DIR --exchange "
            "... --symbol ...` starts one there (docs/paper.md).")


def resolve_session(outputs: str | os.PathLike, session_id: Any) -> Path:
    """The directory of paper session ``session_id`` (relative to ``outputs``); refuses traversal, absolute
    paths, links and folders that are not sessions, each with one sentence (:class:`UserError`)."""
    path = results.resolve_id(outputs, session_id, kind="session", none="no paper session selected",
                              example="paper/<timestamp>_<symbol>")
    for name in SESSION_FILES:
        try:
            runs.run_file_path(path, name)
        except runs.RunFileError as err:
            raise UserError(f"session {session_id!r}: {err}") from None
    if not files.is_paper_dir(path):
        raise UserError(f"no paper session {session_id!r} in {Path(outputs).resolve()}")
    return path


def list_sessions(outputs: str | os.PathLike, notes: list[str] | None = None) -> list[str]:
    """The ids of the sessions under ``<outputs>/paper`` (newest first); one reached through a link is a
    note, not an entry."""
    outputs = Path(outputs).resolve()
    root = outputs / PAPER_DIR
    if root.is_symlink():
        if notes is not None:
            notes.append(f"{root} is a symbolic link; links in outputs/ are not followed")
        return []
    ids = []
    for d in files.find_sessions(root):
        sid = d.relative_to(outputs).as_posix() if d.is_relative_to(outputs) else str(d)
        try:
            resolve_session(outputs, sid)
        except UserError as err:
            if notes is not None:
                notes.append(str(err))
            continue
        ids.append(sid)
    return ids


def _read(outputs: Path, session_id: str) -> dict[str, Any]:
    return files.read_session(resolve_session(outputs, session_id))


def session_row(session_id: str, s: dict[str, Any]) -> dict[str, Any]:
    """One line of the sessions table: the journal's count, last bar and equity (fresh at every bar), the
    status.json state (a dead pid reads ``interrupted``) and its total return (rewritten every
    ``--refresh-s``; None before the first write)."""
    status = s["status"] if isinstance(s["status"], dict) else None
    ret = status.get("total_return") if status else None
    return {
        "session": session_id,
        "symbol": s["paper"].get("symbol"),
        "status": runs.effective_state(status),
        "bars": len(s["ts"]),
        "last_bar": ms_to_iso(s["ts"][-1]) if s["ts"] else None,
        "equity": s["equity"][-1] if s["equity"] else None,
        "total_return": ret if isinstance(ret, int | float) else None,
    }


def sessions_frame(outputs: str | os.PathLike, notes: list[str] | None = None) -> tuple[pd.DataFrame, str]:
    """The sessions table and the line under it: a note when there are none (never an error), or the
    sessions that could not be read."""
    outputs = Path(outputs).resolve()
    notes = [] if notes is None else notes
    rows = []
    for sid in list_sessions(outputs, notes):
        try:
            rows.append(session_row(sid, _read(outputs, sid)))
        except (OSError, ValueError, KeyError, TypeError, UserError) as err:  # a damaged one costs its row
            notes.append(f"{sid}: not read ({type(err).__name__}: {err})")
    frame = pd.DataFrame(rows, columns=list(SESSION_COLUMNS))
    line = notes_md(notes)
    if not rows:
        line = "  \n".join(x for x in (no_sessions_note(outputs), line) if x)
    return frame, line


def trades_frame(s: dict[str, Any]) -> pd.DataFrame:
    """The session's fills and stop exits (:func:`files.read_session`'s ``trades``), oldest first."""
    rows = [{"time": ms_to_iso(t["ts"]), **{k: t[k] for k in TRADE_COLUMNS[1:]}} for t in s["trades"]]
    return pd.DataFrame(rows, columns=list(TRADE_COLUMNS))


def equity_figure(session_id: str, s: dict[str, Any]):
    """The session's marked equity per bar and the asset (its close scaled to the first marked equity, so
    both start together), as a plotly figure with a legend."""
    import plotly.graph_objects as go

    x = [ms_to_iso(t) for t in s["ts"]]
    fig = go.Figure()
    fig.add_trace(go.Scatter(x=x, y=s["equity"], name="agent equity", mode="lines"))
    if s["equity"] and s["close"] and s["equity"][0] is not None and s["close"][0]:
        scale = s["equity"][0] / s["close"][0]
        fig.add_trace(go.Scatter(x=x, y=[c * scale for c in s["close"]], name="asset (close, scaled)",
                                 mode="lines", line={"dash": "dot"}))
    symbol = s["paper"].get("symbol") or ""
    fig.update_layout(title=f"paper {session_id}: {symbol}, equity (quote currency) per traded bar",
                      height=420, legend={"orientation": "h"}, hovermode="x unified", showlegend=True)
    return fig


def view_key(outputs: str | os.PathLike, session_id: str | None) -> tuple | None:
    """What the picked session's view was drawn from: its id and its journal's and status's size and
    modification time (ns). A tick whose key equals the last one drawn sends no new figure."""
    if not session_id:
        return None
    try:
        d = resolve_session(outputs, session_id)
        stats = [(d / n).stat() for n in (files.JOURNAL_FILE, runs.STATUS_FILE) if (d / n).is_file()]
    except (UserError, OSError):
        return (session_id, "unreadable")
    return (session_id, *((st.st_size, st.st_mtime_ns) for st in stats))


def session_view(outputs: str | os.PathLike, session_id: str | None) -> tuple[str, Any, pd.DataFrame]:
    """``(message, equity figure, trades table)`` of the picked session; a refusal or an unreadable session
    is the message with an empty view."""
    if not session_id:
        return "", None, EMPTY_TRADES
    try:
        s = _read(Path(outputs).resolve(), session_id)
    except UserError as err:
        return f"⚠ {md(err)}", None, EMPTY_TRADES
    except (OSError, ValueError, KeyError, TypeError) as err:
        return f"⚠ {md(session_id)}: not read ({md(type(err).__name__)}: {md(err)})", None, EMPTY_TRADES
    return "", equity_figure(session_id, s), trades_frame(s)


def build(shared: Shared) -> None:
    """The Paper tab: the sessions table, the picked session's equity and trades, re-read on every tick of
    its timer, on the page's load and on a visit of the tab."""
    with gr.Tab("Paper", id="paper") as tab:
        table = gr.Dataframe(pd.DataFrame(columns=list(SESSION_COLUMNS)), interactive=False,
                             elem_id="paper-table", max_height=300, wrap=False,
                             label="Paper sessions in outputs/paper/ (tradelab paper)")
        notes = gr.Markdown("", elem_id="paper-notes")
        pick = gr.Dropdown([], label="Open session", elem_id="paper-pick")
        error = gr.Markdown("", elem_id="paper-error")
        plot = gr.Plot(label="Equity", show_label=False, elem_id="paper-equity")
        trades = gr.Dataframe(EMPTY_TRADES, interactive=False, elem_id="paper-trades", max_height=360,
                              label="Trades (fills and stop exits from account.jsonl)")
        timer = gr.Timer(REFRESH_S)
        drawn = gr.State(None)  # the view_key of what the view shows

    def on_tick(current, last):
        frame, line = sessions_frame(shared.outputs)
        ids = list(frame["session"])
        # as the Launch tab's tick: the value is sent only when the picked session is gone
        chosen = current if current in ids else None
        pick_update = gr.update(choices=ids) if chosen == current else gr.update(choices=ids, value=None)
        key = view_key(shared.outputs, chosen)
        if key is not None and key == last:  # nothing new traded: keep the figure (and its zoom) as it is
            return frame, line, pick_update, gr.update(), gr.update(), gr.update(), last
        return frame, line, pick_update, *session_view(shared.outputs, chosen), key

    def on_pick(session_id):
        return *session_view(shared.outputs, session_id), view_key(shared.outputs, session_id)

    def on_row_select(evt: gr.SelectData):
        row = evt.row_value if evt is not None else None
        return gr.update(value=row[0]) if row else gr.update()

    io = ([pick, drawn], [table, notes, pick, error, plot, trades, drawn])
    timer.tick(on_tick, *io, show_progress="hidden")
    shared.page.load(on_tick, *io, show_progress="hidden")
    tab.select(on_tick, *io, show_progress="hidden")
    view = [error, plot, trades, drawn]
    pick.input(on_pick, [pick], view)
    table.select(on_row_select, None, [pick]).then(on_pick, [pick], view)
