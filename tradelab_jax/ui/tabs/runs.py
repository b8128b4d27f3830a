"""The Runs tab: the table of every run under the outputs root, and one run's view (status line with Resume,
equity and drawdown, evaluation summary, training curves, trades, config, downloads).

``?run=<id>`` in the page's address opens that run on load.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import gradio as gr
import pandas as pd

from tradelab_jax import fmt, runs, tracking
from tradelab_jax.errors import UserError
from tradelab_jax.ui import results
from tradelab_jax.ui.tabs import Shared, md, notes_md
from tradelab_jax.ui.tabs.launch import JobPanel

EMPTY_EVAL = pd.DataFrame(columns=["split", "policy", *map(fmt.header, results.SUMMARY_METRICS)])
EMPTY_TRADES = pd.DataFrame(columns=list(results.TRADE_COLUMNS))
EMPTY_INTERVALS = pd.DataFrame(columns=list(results.INTERVAL_COLUMNS))
# the run view with no run open (the order of RunView.shown)
EMPTY_VIEW = ["", "", "", None, None, EMPTY_INTERVALS, EMPTY_EVAL, None, EMPTY_TRADES, ""]


@dataclass(frozen=True)
class RunView:
    """The open run: which run and split, and the components :func:`open_run` fills (in its order)."""

    pick: gr.Dropdown
    split: gr.Radio
    error: gr.Markdown
    # error, status line, links, equity plot, price plot, intervals, eval table, metrics plot, trades, config
    shown: list

    @property
    def io(self) -> tuple[list, list]:
        """``(inputs, outputs)`` of an event that (re)opens the picked run."""
        return [self.pick, self.split], self.shown


def links_md(outputs: Path, run_dir: Path, notes: list[str] | None = None) -> str:
    """The run's links as Markdown lines: the TensorBoard command (and MLflow / W&B runs) of
    :func:`tradelab_jax.tracking.links`, and the verdict of its (or its sweep's) stats.json."""
    lines = list(tracking.links(run_dir, outputs))
    found = results.stats_verdict(outputs, run_dir, notes)
    if found:
        where, verdict = found
        lines.append(f"**Verdict** ({md(where)}): {md(verdict)}")
    else:
        lines.append("No stats.json for this run yet (written after training; `tradelab stats DIR` makes "
                     "one): no intervals or verdict to show.")
    return "  \n".join(lines)


def _stats_of(outputs: Path, run_dir: Path) -> dict | None:
    found = results.read_stats(outputs, run_dir)  # its notes are the links line's
    return found[2] if found else None


def open_run(outputs: Path, run_id: str | None, split: str) -> list:
    """The run view's values for ``run_id`` on ``split`` (empty with no run, the refusal for a bad id).

    What cannot be read or drawn is left empty, with one line saying why above the view (:func:`notes_md`).
    """
    if not run_id:
        return list(EMPTY_VIEW)
    try:
        d = results.resolve_run(outputs, run_id)
    except UserError as err:
        return [f"⚠ {md(err)}", *EMPTY_VIEW[1:]]
    notes: list[str] = []
    results.note_links_out(d, notes)

    def shown(part: str, make: Callable[[], object], empty: object) -> object:
        try:
            return make()
        except Exception as err:  # a foreign file's content must cost its pane, not the page
            notes.append(f"{run_id}: the {part} could not be shown ({type(err).__name__}: {err})")
            return empty

    figs = shown("equity and price figures", lambda: results.run_figures(d, split, notes), None)
    shown_view = [
        shown("status line", lambda: results.status_line(d, notes), ""),
        shown("links", lambda: links_md(outputs, d, notes), ""),
        shown("equity plot", lambda: results.plot_equity(figs), None),
        shown("price plot", lambda: results.plot_price(figs), None),
        shown("intervals", lambda: results.intervals_table(_stats_of(outputs, d)), EMPTY_INTERVALS),
        shown("evaluation summary", lambda: results.eval_table(d, notes), EMPTY_EVAL),
        shown("training curves", lambda: results.plot_metrics(results.load_metrics(d, notes)), None),
        shown("trades table", lambda: results.trades_table(d, split, notes=notes), EMPTY_TRADES),
        shown("config", lambda: results.config_text(d, notes), ""),
    ]
    return [notes_md(notes), *shown_view]



def build(shared: Shared, tabs: gr.Tabs, jobs: JobPanel) -> None:
    """The Runs tab. Resume updates ``jobs`` (on the Launch tab); a deep link selects this tab in ``tabs``."""
    with gr.Tab("Runs", id="runs") as tab:
        table, pick, skipped = _runs_table(shared, tab)
        view = _run_view(shared, table, pick, jobs)
    _wire_deep_link(shared, tabs, table, skipped, view)


def _refresh(outputs: Path, *filters) -> tuple[pd.DataFrame, list[str], str]:
    """The runs table as shown (``filters``: text, status, sort column, descending), every run id, and the
    notes line under the table (entries skipped, files not read)."""
    notes: list[str] = []
    frame = results.runs_frame(results.list_runs(outputs, notes))
    return results.display_frame(results.filter_runs(frame, *filters)), list(frame["run"]), notes_md(notes)


def _runs_table(shared: Shared, tab: gr.Tab) -> tuple[gr.Dataframe, gr.Dropdown, gr.Markdown]:
    """The filter row, the table, the notes line (entries skipped, files not read) and the run dropdown
    under it, re-read on every filter change, Refresh and visit of the tab."""
    with gr.Row():
        search = gr.Textbox(label="Filter (run, tag or dataset contains)", elem_id="runs-search", scale=3)
        status_filter = gr.Dropdown(
            ["all", *runs.EFFECTIVE_STATES], value="all", label="Status", elem_id="runs-status", scale=1
        )
        sort_by = gr.Dropdown(
            list(results.SORTABLE), value="started", label="Sort by", elem_id="runs-sort", scale=1
        )
        descending = gr.Checkbox(True, label="Descending", scale=1)
        refresh_btn = gr.Button("Refresh", scale=1, elem_id="runs-refresh")
    table = gr.Dataframe(
        results.display_frame(results.runs_frame([])),
        interactive=False,
        elem_id="runs-table",
        max_height=360,
        wrap=False,
        label="Runs in outputs/ (agent metrics on the test split)",
    )
    skipped = gr.Markdown("", elem_id="runs-notes")
    pick = gr.Dropdown(shared.run_ids(), label="Open run", elem_id="run-pick")

    def on_refresh(text, status, sort, desc, current):
        shown, ids, notes = _refresh(shared.outputs, text, status, sort, desc)
        # The pick is left to the browser unless the picked run is gone (a refresh in flight while the user
        # picks another run would otherwise put back the one it read).
        pick = gr.update(choices=ids) if current in ids else gr.update(choices=ids, value=None)
        return shown, pick, notes

    inputs = [search, status_filter, sort_by, descending, pick]
    for ev in (refresh_btn.click, search.submit, status_filter.change, sort_by.change, descending.change,
               tab.select):  # fmt: skip
        ev(on_refresh, inputs, [table, pick, skipped])
    return table, pick, skipped


def _run_view(shared: Shared, table: gr.Dataframe, pick: gr.Dropdown, jobs: JobPanel) -> RunView:
    """The open run's components; picking a run (in the dropdown or the table) or a split opens it."""
    error = gr.Markdown("", elem_id="run-error")
    with gr.Row(equal_height=True):
        status = gr.Markdown("", elem_id="run-status")
        resume_btn = gr.Button("Resume", elem_id="run-resume", scale=0, min_width=120)
    resume_msg = gr.Markdown("", elem_id="resume-msg")
    links = gr.Markdown("", elem_id="run-links")
    with gr.Row():
        split = gr.Radio(["test", "val"], value="test", label="Evaluation split", elem_id="run-split")
    equity_plot = gr.Plot(
        label="Equity: agent vs baselines and the asset, drawdown below", show_label=False,
        elem_id="equity-plot",
    )  # fmt: skip
    price_plot = gr.Plot(label="Price with the agent's round trips", show_label=False, elem_id="price-plot")
    intervals_df = gr.Dataframe(
        EMPTY_INTERVALS, label="Intervals over seeds/folds (stats.json): IQM with its 95 % interval",
        interactive=False, elem_id="intervals-table",
    )  # fmt: skip
    with gr.Row():
        report_btn = gr.Button("Build report (report.html)", elem_id="report-btn", scale=0, min_width=220)
        report_file = gr.File(label="Report", interactive=False, elem_id="report-file")
    eval_df = gr.Dataframe(
        EMPTY_EVAL, label="Evaluation summary (eval_summary.json)", interactive=False, elem_id="eval-table"
    )
    metrics_plot = gr.Plot(
        label="Training curves (metrics.jsonl)", format="png", show_label=False, elem_id="metrics-plot"
    )
    with gr.Accordion("Trades (fills and stop-outs from telemetry.parquet)", open=False):
        trades_df = gr.Dataframe(EMPTY_TRADES, interactive=False, elem_id="trades-table", max_height=360)
    with gr.Accordion("Config (config.yaml)", open=False):
        config_code = gr.Code(language="yaml", interactive=False, elem_id="run-config")
    view = RunView(pick, split, error, [error, status, links, equity_plot, price_plot, intervals_df, eval_df,
                                        metrics_plot, trades_df, config_code])  # fmt: skip
    _files(shared, pick)
    _wire_report(shared, pick, report_btn, report_file)

    def on_open(run_id, split_name):
        return open_run(shared.outputs, run_id, split_name)

    def on_row_select(evt: gr.SelectData):
        row = evt.row_value if evt is not None else None
        return gr.update(value=row[0]) if row else gr.update()

    # Programmatic value updates do not count as user input, so every path to a run chains on_open.
    pick.input(on_open, *view.io)
    split.input(on_open, *view.io)
    table.select(on_row_select, None, [pick]).then(on_open, *view.io)
    _wire_resume(shared, view, resume_btn, resume_msg, jobs, on_open)
    return view


def _files(shared: Shared, pick: gr.Dropdown) -> None:
    """Downloads of the open run's contract files, handed to Gradio as copies in a temporary folder, so the
    server never needs outputs/ in its allowed paths."""
    download_dir = Path(tempfile.mkdtemp(prefix="tradelab-ui-"))
    with gr.Accordion("Files", open=False):
        file_pick = gr.Dropdown(list(results.DOWNLOADABLE), value=runs.EVAL_FILE, label="File")
        file_btn = gr.Button("Prepare download", elem_id="file-btn")
        file_out = gr.File(label="Download", interactive=False, elem_id="file-out")

    def on_download(run_id, name):
        try:
            src = results.run_file(shared.outputs, run_id, name)
        except UserError as err:
            gr.Warning(str(err))
            return None
        dest = download_dir / run_id.replace("/", "__")
        dest.mkdir(parents=True, exist_ok=True)
        shutil.copy2(src, dest / name)
        return str(dest / name)

    file_btn.click(on_download, [pick, file_pick], [file_out])


def _wire_report(shared: Shared, pick: gr.Dropdown, button: gr.Button, out: gr.File) -> None:
    """Build the open run's report (``tradelab_jax.report``, of its stats folder) into a temporary folder
    Gradio serves as a download; a refusal is one warning, never an error page."""
    report_dir = Path(tempfile.mkdtemp(prefix="tradelab-ui-report-"))

    def on_report(run_id):
        if not run_id:
            gr.Warning("Pick a run first.")
            return None
        try:
            return str(results.build_report(shared.outputs, run_id, report_dir / run_id.replace("/", "__")))
        except UserError as err:
            gr.Warning(str(err))
            return None

    button.click(on_report, [pick], [out])


def _wire_resume(
    shared: Shared, view: RunView, resume_btn: gr.Button, resume_msg: gr.Markdown, jobs: JobPanel,
    on_open: Callable[[str | None, str], list],
) -> None:
    """Queue the picked run's resume through the job queue (one training at a time, cancellable)."""
    queue = shared.queue

    def on_resume(run_id):
        if not run_id:
            return "Pick a run to resume.", gr.update(), gr.update()
        try:
            job = queue.resume(run_id)
        except UserError as err:
            return f"⚠ {md(err)}", gr.update(), gr.update()
        where = "waits in the queue" if [j for j in queue.active() if j.id != job.id] else "starts now"
        what = f"its packed sweep `{job.run_dir}` ({job.points} runs)" if job.packed else f"`{run_id}`"
        msg = (
            f"Queued job `{job.id}`: {what} resumes from update {job.extra['from_update']}; "
            f"it {where} (see Jobs on the Launch tab)."
        )
        return msg, *jobs.show(queue, job.id)

    # Then the run view is read again, so its status line agrees with the message (queued, or done).
    resume_btn.click(on_resume, [view.pick], [resume_msg, jobs.panel, jobs.pick]).then(on_open, *view.io)


def _wire_deep_link(shared: Shared, tabs: gr.Tabs, table: gr.Dataframe, skipped: gr.Markdown,
                    view: RunView) -> None:  # fmt: skip
    """On page load: the runs table and its notes, and ``?run=<id>`` selects this tab and opens that run."""
    outputs = shared.outputs

    def on_load(request: gr.Request):
        shown, ids, notes = _refresh(outputs)
        wanted = request.query_params.get("run") if request is not None else None
        if wanted is None:
            return shown, gr.update(choices=ids), notes, gr.update(), ""
        try:
            rid = results.run_id_of(outputs, results.resolve_run(outputs, wanted))
        except UserError as err:
            return shown, gr.update(choices=ids), notes, gr.Tabs(selected="runs"), f"⚠ {md(err)}"
        return shown, gr.update(choices=ids, value=rid), notes, gr.Tabs(selected="runs"), ""

    def open_linked(run_id, split, err):
        return open_run(outputs, run_id, split) if run_id and not err else [gr.update()] * len(view.shown)

    shared.page.load(on_load, None, [table, view.pick, skipped, tabs, view.error]).then(
        open_linked, [view.pick, view.split, view.error], view.shown
    )
