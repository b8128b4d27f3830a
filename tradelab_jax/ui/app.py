"""The Gradio page: a title and the tabs Launch, Runs, Compare and Paper (:mod:`.tabs`), composed.

Each tab's module lays out its components and wires its own events to :mod:`.forms`, :mod:`.jobs` and
:mod:`.results`; this module only passes them what they share. No job state lives here (the queue lives on
disk), so a reloaded page picks up running jobs at once.
"""

from __future__ import annotations

from pathlib import Path

import gradio as gr

from tradelab_jax.ui import forms
from tradelab_jax.ui.jobs import JobQueue
from tradelab_jax.ui.tabs import Shared, compare, launch
from tradelab_jax.ui.tabs import paper as paper_tab
from tradelab_jax.ui.tabs import runs as runs_tab

TITLE = "tradelab control panel"
CSS = """
.field-error { background: #fef3f2 !important; border-left: 3px solid #d92d20 !important; padding: 4px 10px; }
.field-error, .field-error * { color: #b42318 !important; font-weight: 600; font-size: 0.9em; }
.field-error p { margin: 0; }
#run-error *, #compare-error * { color: #b42318 !important; font-weight: 600; }
.jobs { display: flex; flex-direction: column; gap: 10px; }
.job { border: 1px solid var(--border-color-primary); border-radius: 8px; padding: 8px 10px; }
.job-head { display: flex; gap: 8px; align-items: baseline; flex-wrap: wrap; }
.job-head code { font-size: 0.8em; color: var(--body-text-color-subdued); }
.badge { border-radius: 10px; padding: 1px 8px; font-size: 0.8em; font-weight: 600; color: #fff; }
.badge.queued { background: #7a5af8; } .badge.running { background: #1570ef; }
.badge.done { background: #079455; } .badge.failed { background: #d92d20; }
.badge.cancelled { background: #667085; } .badge.cancelling { background: #dc6803; }
.bar { height: 10px; background: var(--neutral-200); border-radius: 5px; overflow: hidden;
       margin: 6px 0 4px; }
.bar > div { height: 100%; background: #1570ef; transition: width 0.5s; }
.job.done .bar > div { background: #079455; } .job.failed .bar > div { background: #d92d20; }
.job.cancelled .bar > div { background: #98a2b3; }
#log-tail textarea { font-family: var(--font-mono); font-size: 12px; }
.job-meta { font-size: 0.85em; color: var(--body-text-color-subdued); }
.job-error { font-size: 0.85em; color: #b42318; }
"""


def build_app(outputs: str | Path, queue: JobQueue, choices: forms.Choices | None = None) -> gr.Blocks:
    """The page for the runs under ``outputs``, launching through ``queue``; ``choices`` defaults to what
    the lake and ``conf/`` offer (:func:`forms.load_choices`)."""
    outputs = Path(outputs).resolve()
    choices = choices or forms.load_choices()
    with gr.Blocks(title=TITLE) as page:
        gr.Markdown(
            f"## {TITLE}\nRuns are read from `{outputs}`; trainings run one at a time on this machine."
        )
        shared = Shared(outputs=outputs, queue=queue, page=page)
        with gr.Tabs(elem_id="tabs") as tabs:
            jobs = launch.build(shared, choices)
            runs_tab.build(shared, tabs, jobs)
            compare.build(shared)
            paper_tab.build(shared)
    return page
