"""The control panel's tabs, one module each (:mod:`.launch`, :mod:`.runs`, :mod:`.compare`).

Each module's ``build`` opens its ``gr.Tab``, lays out its components and wires its own events;
:func:`tradelab_jax.ui.app.build_app` composes them and passes what they share explicitly: the
:class:`Shared` context, and the components one tab updates in another (the job panel, the tab strip).
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from tradelab_jax.ui import results
from tradelab_jax.ui.jobs import JobQueue


@dataclass(frozen=True)
class Shared:
    """What every tab reads: the outputs root, the job queue, and the page (whose load events a tab adds)."""

    outputs: Path
    queue: JobQueue
    page: gr.Blocks

    def run_ids(self) -> list[str]:
        return [r["run"] for r in results.list_runs(self.outputs)]


def md(message: object) -> str:
    """A message shown in Markdown, with its angle brackets and markup characters taken literally."""
    text = html.escape(str(message), quote=False)
    for ch in "\\`*_[]#|":
        text = text.replace(ch, "\\" + ch)
    return text


def notes_md(notes: list[str]) -> str:
    """Each note (a file not read, an entry skipped) as one line of Markdown, taken literally."""
    return "  \n".join(f"⚠ {md(n)}" for n in notes)
