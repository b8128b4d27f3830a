"""The Gradio layout: tabs Launch, Runs and Compare, wired to :mod:`.forms`, :mod:`.jobs` and :mod:`.results`.

This module only arranges components and turns their events into calls of those three modules; it holds no
job state of its own (the queue lives on disk), so a reloaded page picks up running jobs at once.
"""

from __future__ import annotations

import html
import shutil
import tempfile
from pathlib import Path
from typing import Any

import gradio as gr
import pandas as pd

from tradelab_jax import runs
from tradelab_jax.errors import UserError
from tradelab_jax.ui import forms, results
from tradelab_jax.ui.jobs import LOG_FILE, JobQueue

TITLE = "tradelab control panel"
REFRESH_S = 1.0
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
FIELD_LABELS = {
    "dataset": "Dataset (from the lake's manifests)",
    "features": "Feature set (conf/features)",
    "risk_pct": "Risk per trade: fraction of equity lost at the stop (0.01 = 1 %); several values sweep",
    "stop_loss_bps": "Stop distance in bps (0 = no stop); several values sweep",
    "maker_fee": "Maker fee override (fraction; blank = config default)",
    "taker_fee": "Taker fee override (fraction; blank = config default)",
    "order_type": "Order type",
    "trailing_stop": "Trailing stop",
    "position_buckets": "Position buckets (exposures in risk units)",
    "total_timesteps": "Total timesteps (env steps per run)",
    "num_envs": "Number of environments",
    "num_steps": "Rollout length (steps per env per update)",
    "chunk_updates": "Updates per chunk (progress and checkpoint cadence)",
    "seeds": "Seeds (several values sweep)",
    "tag": "Experiment tag",
}


EMPTY_EVAL = pd.DataFrame(columns=["split", "policy", *results.SUMMARY_METRICS])
EMPTY_TRADES = pd.DataFrame(columns=["time", "t", "close", "order_size", "fill_price", "position", "equity"])
EMPTY_COMPARE = pd.DataFrame(columns=["field"])


def md(message: object) -> str:
    """A message shown in Markdown, with its angle brackets and markup characters taken literally."""
    text = html.escape(str(message), quote=False)
    for ch in "\\`*_[]#|":
        text = text.replace(ch, "\\" + ch)
    return text


# ---------------------------------------------------------------------------------------------------------
# job panel


def jobs_html(queue: JobQueue, recent: int = 4) -> str:
    jobs = queue.list()
    active = [j for j in jobs if j.active]
    finished = [j for j in jobs if not j.active][-recent:][::-1]
    if not active and not finished:
        return (
            "<div class='jobs'><div class='job-meta'>No jobs yet: fill the form and press Launch.</div></div>"
        )
    parts = ["<div class='jobs'>"]
    for job in [*sorted(active, key=lambda j: j.state != "running"), *finished]:
        p = queue.progress(job, log_lines=0)
        state = "cancelling" if p["cancelling"] else job.state
        pct = max(0.0, min(1.0, float(p["progress"]))) * 100
        meta = []
        if job.state == "queued":
            meta.append(f"waiting, #{p['queue_position']} in the queue")
        else:
            meta.append(f"{pct:.0f}%")
        if p["total_env_steps"]:
            meta.append(f"{p['env_steps']:,} / {p['total_env_steps']:,} env steps")
        if p["steps_per_s"] and job.state == "running":
            meta.append(f"{p['steps_per_s']:,.0f} steps/s")
        if p["mean_episode_return"] is not None:
            meta.append(f"mean episode return {p['mean_episode_return']:.4g}")
        if job.packed:
            meta.append(f"packed sweep of {job.points} runs")
        if job.extra.get("resume"):
            meta.append(f"resumes from update {job.extra.get('from_update')}")
        parts.append(
            f"<div class='job {html.escape(job.state)}' data-job='{html.escape(job.id)}' "
            f"data-state='{html.escape(state)}'>"
            f"<div class='job-head'><b>{html.escape(job.tag)}</b>"
            f"<span class='badge {html.escape(state)}'>{html.escape(state)}</span>"
            f"<code>{html.escape(job.run_dir)}</code></div>"
            f"<div class='bar' role='progressbar' aria-valuenow='{pct:.0f}' aria-valuemin='0' "
            "aria-valuemax='100'>"
            f"<div style='width:{pct:.1f}%'></div></div>"
            f"<div class='job-meta'>{html.escape(' · '.join(meta))}</div>"
        )
        if job.state == "failed" and job.error:
            parts.append(f"<div class='job-error'>{html.escape(job.error)}</div>")
        parts.append("</div>")
    parts.append("</div>")
    return "".join(parts)


def job_choices(queue: JobQueue, recent: int = 4) -> list[tuple[str, str]]:
    jobs = queue.list()
    active = [j for j in jobs if j.active]
    finished = [j for j in jobs if not j.active][-recent:][::-1]
    return [(f"{j.id} ({j.state})", j.id) for j in [*active, *finished]]


def pick_job(queue: JobQueue, current: str | None) -> str | None:
    """Keep the user's choice while it exists; otherwise follow the running job (or the newest)."""
    ids = [v for _, v in job_choices(queue)]
    if current in ids:
        return current
    running = [j.id for j in queue.list() if j.state == "running"]
    return running[0] if running else (ids[0] if ids else None)


# ---------------------------------------------------------------------------------------------------------
# the app


def build_app(outputs: str | Path, queue: JobQueue, choices: forms.Choices | None = None) -> gr.Blocks:
    outputs = Path(outputs).resolve()
    choices = choices or forms.load_choices()
    start = forms.initial_values(choices)
    download_dir = Path(tempfile.mkdtemp(prefix="tradelab-ui-"))

    def run_choices() -> list[str]:
        return [r["run"] for r in results.list_runs(outputs)]

    with gr.Blocks(title=TITLE) as demo:
        gr.Markdown(
            f"## {TITLE}\nRuns are read from `{outputs}`; trainings run one at a time on this machine."
        )
        with gr.Tabs(elem_id="tabs") as tabs:
            # ---------------------------------------------------------------------------------------------
            with gr.Tab("Launch", id="launch"):
                inputs: dict[str, Any] = {}
                errors: dict[str, gr.Markdown] = {}

                def add(name: str, kind=gr.Textbox, **kw) -> None:
                    """A form field with its error line right under it."""
                    if kind is gr.Textbox:
                        kw.setdefault("value", start[name])
                    inputs[name] = kind(label=FIELD_LABELS[name], elem_id=f"f-{name}", **kw)
                    errors[name] = gr.Markdown(
                        "", visible=False, elem_id=f"err-{name}", elem_classes=["field-error"]
                    )

                def pair(a: tuple, b: tuple) -> None:
                    with gr.Row():
                        for name, kind, kw in (a, b):
                            with gr.Column():
                                add(name, kind, **kw)

                text = gr.Textbox
                with gr.Row():
                    with gr.Column(scale=3):
                        with gr.Group():
                            gr.Markdown("**Data**")
                            add(
                                "dataset",
                                gr.Dropdown,
                                choices=[(d.label, d.id) for d in choices.datasets],
                                value=start["dataset"],
                            )
                            add(
                                "features",
                                gr.Dropdown,
                                choices=list(choices.feature_sets),
                                value=start["features"],
                            )
                        with gr.Group():
                            gr.Markdown("**Risk and execution** (fractions unless the name says bps)")
                            pair(
                                ("risk_pct", text, {"placeholder": "0.01 or 0.005, 0.01"}),
                                ("stop_loss_bps", text, {"placeholder": "50 or 25, 50, 100"}),
                            )
                            pair(
                                ("maker_fee", text, {"placeholder": str(choices.defaults.get("maker_fee"))}),
                                ("taker_fee", text, {"placeholder": str(choices.defaults.get("taker_fee"))}),
                            )
                            pair(
                                (
                                    "order_type",
                                    gr.Radio,
                                    {"choices": list(forms.ORDER_TYPES), "value": start["order_type"]},
                                ),
                                ("trailing_stop", gr.Checkbox, {"value": start["trailing_stop"]}),
                            )
                            add("position_buckets")
                        with gr.Group():
                            gr.Markdown("**Training budget**")
                            pair(("total_timesteps", text, {}), ("num_envs", text, {}))
                            pair(("num_steps", text, {}), ("chunk_updates", text, {}))
                            pair(
                                ("seeds", text, {"placeholder": "0 or 0, 1, 2"}),
                                ("tag", text, {"placeholder": "letters, digits, _ and -"}),
                            )
                    with gr.Column(scale=2):
                        preview = gr.Code(
                            label="Command it will run (read-only)",
                            language="shell",
                            interactive=False,
                            elem_id="preview",
                            lines=16,
                            wrap_lines=True,
                            show_line_numbers=False,
                        )
                        launch_btn = gr.Button("Launch", variant="primary", elem_id="launch")
                        launch_msg = gr.Markdown("", elem_id="launch-msg")
                        gr.Markdown("**Jobs** (one training at a time; further launches wait in the queue)")
                        jobs_panel = gr.HTML(jobs_html(queue), elem_id="job-panel")
                        with gr.Row():
                            job_pick = gr.Dropdown(
                                job_choices(queue),
                                value=pick_job(queue, None),
                                label="Job",
                                elem_id="job-pick",
                                scale=3,
                            )
                            cancel_btn = gr.Button("Cancel job", variant="stop", elem_id="cancel", scale=1)
                        cancel_msg = gr.Markdown("", elem_id="cancel-msg")
                        log_tail = gr.Textbox(
                            label=f"Log tail ({LOG_FILE})",
                            lines=16,
                            max_lines=16,
                            interactive=False,
                            elem_id="log-tail",
                            autoscroll=True,
                        )
                timer = gr.Timer(REFRESH_S)

            # ---------------------------------------------------------------------------------------------
            with gr.Tab("Runs", id="runs") as runs_tab:
                with gr.Row():
                    search = gr.Textbox(
                        label="Filter (run, tag or dataset contains)", elem_id="runs-search", scale=3
                    )
                    status_filter = gr.Dropdown(
                        ["all", *runs.STATES, "interrupted"],
                        value="all",
                        label="Status",
                        elem_id="runs-status",
                        scale=1,
                    )
                    sort_by = gr.Dropdown(
                        list(results.SORTABLE), value="started", label="Sort by", elem_id="runs-sort", scale=1
                    )
                    descending = gr.Checkbox(True, label="Descending", scale=1)
                    refresh_btn = gr.Button("Refresh", scale=1, elem_id="runs-refresh")
                runs_table = gr.Dataframe(
                    results.display_frame(results.runs_frame([])),
                    interactive=False,
                    elem_id="runs-table",
                    max_height=360,
                    wrap=False,
                    label="Runs in outputs/ (agent metrics on the test split)",
                )
                run_pick = gr.Dropdown(run_choices(), label="Open run", elem_id="run-pick")
                run_error = gr.Markdown("", elem_id="run-error")
                with gr.Row(equal_height=True):
                    run_status = gr.Markdown("", elem_id="run-status")
                    resume_btn = gr.Button("Resume", elem_id="run-resume", scale=0, min_width=120)
                resume_msg = gr.Markdown("", elem_id="resume-msg")
                with gr.Row():
                    split_pick = gr.Radio(
                        ["test", "val"], value="test", label="Evaluation split", elem_id="run-split"
                    )
                equity_plot = gr.Plot(
                    label="Equity: agent vs buy-and-hold, drawdown below",
                    format="png",
                    show_label=False,
                    elem_id="equity-plot",
                )
                eval_df = gr.Dataframe(
                    EMPTY_EVAL,
                    label="Evaluation summary (eval_summary.json)",
                    interactive=False,
                    elem_id="eval-table",
                )
                metrics_plot = gr.Plot(
                    label="Training curves (metrics.jsonl)",
                    format="png",
                    show_label=False,
                    elem_id="metrics-plot",
                )
                with gr.Accordion("Trades (fills and stop-outs from telemetry.parquet)", open=False):
                    trades_df = gr.Dataframe(
                        EMPTY_TRADES, interactive=False, elem_id="trades-table", max_height=360
                    )
                with gr.Accordion("Config (config.yaml)", open=False):
                    config_code = gr.Code(language="yaml", interactive=False, elem_id="run-config")
                with gr.Accordion("Files", open=False):
                    file_pick = gr.Dropdown(list(results.DOWNLOADABLE), value=runs.EVAL_FILE, label="File")
                    file_btn = gr.Button("Prepare download", elem_id="file-btn")
                    file_out = gr.File(label="Download", interactive=False, elem_id="file-out")

            # ---------------------------------------------------------------------------------------------
            with gr.Tab("Compare", id="compare") as compare_tab:
                with gr.Row():
                    compare_pick = gr.Dropdown(
                        run_choices(),
                        multiselect=True,
                        elem_id="compare-pick",
                        label="Runs to compare (two or more)",
                        scale=4,
                    )
                    compare_split = gr.Radio(["test", "val"], value="test", label="Split", scale=1)
                    compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-btn", scale=1)
                compare_error = gr.Markdown("", elem_id="compare-error")
                compare_df = gr.Dataframe(
                    EMPTY_COMPARE,
                    label="Runs side by side: the agent's metrics on the split, then the config",
                    interactive=False,
                    elem_id="compare-table",
                )
                compare_plot = gr.Plot(
                    label="Equity curves overlaid", format="png", elem_id="compare-plot", show_label=False
                )

        # -------------------------------------------------------------------------------------------------
        # launch form

        names = list(forms.FIELDS)
        form_inputs = [inputs[n] for n in names]
        error_outputs = [errors[n] for n in names]

        def validate(*values):
            plan, errs = forms.parse_form(dict(zip(names, values, strict=True)), choices)
            updates = [
                gr.update(value=f"⚠ {md(errs[n])}", visible=True)
                if n in errs
                else gr.update(value="", visible=False)
                for n in names
            ]
            return plan, errs, updates

        def on_change(*values):
            plan, _, updates = validate(*values)
            where = None
            if plan is not None:
                base = outputs / runs.MULTIRUN_DIR if plan.packed else outputs
                where = base / runs.run_dir_name(plan.tag, "YYYYMMDDTHHMMSSZ")
            return [forms.preview(plan, where), *updates]

        for comp in form_inputs:
            comp.input(
                on_change,
                form_inputs,
                [preview, *error_outputs],
                show_progress="hidden",
                trigger_mode="always_last",
            )
        demo.load(on_change, form_inputs, [preview, *error_outputs], show_progress="hidden")

        def on_launch(*values):
            plan, errs, updates = validate(*values)
            if plan is None:
                gr.Warning(f"Not launched: {len(errs)} field(s) need fixing (marked in red).")
                msg = "**Not launched**: fix the fields marked in red."
                return [msg, *updates, gr.update(), gr.update()]
            job = queue.submit(plan)
            others = [j for j in queue.active() if j.id != job.id]
            where = "waits in the queue" if others else "starts now"
            msg = f"Queued job `{job.id}` ({job.points} run{'s' if job.points > 1 else ''}); it {where}."
            return [msg, *updates, jobs_html(queue), gr.update(choices=job_choices(queue), value=job.id)]

        launch_btn.click(on_launch, form_inputs, [launch_msg, *error_outputs, jobs_panel, job_pick])

        # -------------------------------------------------------------------------------------------------
        # jobs

        def on_tick(current):
            chosen = pick_job(queue, current)
            tail = ""
            if chosen:
                try:
                    job = queue.get(chosen)
                    tail = queue.progress(job, log_lines=14)["log_tail"] or "(no output yet)"
                except UserError:
                    chosen = None
            return jobs_html(queue), gr.update(choices=job_choices(queue), value=chosen), tail

        timer.tick(on_tick, [job_pick], [jobs_panel, job_pick, log_tail], show_progress="hidden")
        demo.load(on_tick, [job_pick], [jobs_panel, job_pick, log_tail], show_progress="hidden")

        def on_cancel(job_id):
            if not job_id:
                return "Pick a job to cancel.", jobs_html(queue)
            try:
                job = queue.cancel(job_id)
            except UserError as err:
                return f"⚠ {md(err)}", jobs_html(queue)
            if job.state == "cancelled":
                return f"Job `{job.id}` cancelled before it started.", jobs_html(queue)
            if job.state == "running":
                return f"Stopping job `{job.id}` (it keeps its last checkpoint).", jobs_html(queue)
            return f"Job `{job.id}` already ended ({job.state}).", jobs_html(queue)

        cancel_btn.click(on_cancel, [job_pick], [cancel_msg, jobs_panel])

        # -------------------------------------------------------------------------------------------------
        # runs

        def on_runs_refresh(text, status, sort, desc, current):
            frame = results.runs_frame(results.list_runs(outputs))
            shown = results.display_frame(results.filter_runs(frame, text, status, sort, desc))
            ids = list(frame["run"])
            return shown, gr.update(choices=ids, value=current if current in ids else None)

        runs_inputs = [search, status_filter, sort_by, descending, run_pick]
        for ev in (
            refresh_btn.click,
            search.submit,
            status_filter.change,
            sort_by.change,
            descending.change,
            runs_tab.select,
        ):
            ev(on_runs_refresh, runs_inputs, [runs_table, run_pick])

        def on_row_select(evt: gr.SelectData):
            row = evt.row_value if evt is not None else None
            return gr.update(value=row[0]) if row else gr.update()

        run_view_outputs = [run_error, run_status, equity_plot, eval_df, metrics_plot, trades_df, config_code]

        def open_run(run_id, split):
            if not run_id:
                return ["", "", None, EMPTY_EVAL, None, EMPTY_TRADES, ""]
            try:
                d = results.resolve_run(outputs, run_id)
            except UserError as err:
                return [f"⚠ {md(err)}", "", None, EMPTY_EVAL, None, EMPTY_TRADES, ""]
            curves = results.equity_curves(d, split)
            title = f"{run_id}: equity on the {split} split, agent vs buy-and-hold (drawdown below)"
            return [
                "",
                results.status_line(d),
                results.plot_equity(curves, title),
                results.eval_table(d),
                results.plot_metrics(results.load_metrics(d)),
                results.trades_table(d, split),
                results.config_text(d),
            ]

        # Programmatic value updates do not count as user input, so every path to a run chains open_run.
        run_pick.input(open_run, [run_pick, split_pick], run_view_outputs)
        split_pick.input(open_run, [run_pick, split_pick], run_view_outputs)
        runs_table.select(on_row_select, None, [run_pick]).then(
            open_run, [run_pick, split_pick], run_view_outputs
        )

        def on_resume(run_id):
            """Queue the picked run's resume through the job queue (one training at a time, cancellable)."""
            if not run_id:
                return "Pick a run to resume.", gr.update(), gr.update()
            try:
                job = queue.resume(run_id)
            except UserError as err:
                return f"⚠ {md(err)}", gr.update(), gr.update()
            others = [j for j in queue.active() if j.id != job.id]
            where = "waits in the queue" if others else "starts now"
            what = f"its packed sweep `{job.run_dir}` ({job.points} runs)" if job.packed else f"`{run_id}`"
            msg = (
                f"Queued job `{job.id}`: {what} resumes from update {job.extra['from_update']}; "
                f"it {where} (see Jobs on the Launch tab)."
            )
            return msg, jobs_html(queue), gr.update(choices=job_choices(queue), value=job.id)

        # Then the run view is read again, so its status line agrees with the message (queued, or done).
        resume_btn.click(on_resume, [run_pick], [resume_msg, jobs_panel, job_pick]).then(
            open_run, [run_pick, split_pick], run_view_outputs
        )

        def on_download(run_id, name):
            try:
                src = results.run_file(outputs, run_id, name)
            except UserError as err:
                gr.Warning(str(err))
                return None
            # Hand Gradio a copy, so the server never needs outputs/ in its allowed paths.
            dest = download_dir / run_id.replace("/", "__")
            dest.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / name)
            return str(dest / name)

        file_btn.click(on_download, [run_pick, file_pick], [file_out])

        # -------------------------------------------------------------------------------------------------
        # compare

        def on_compare(run_ids, split):
            run_ids = list(run_ids or [])
            if len(run_ids) < 2:
                return "Pick two or more runs.", EMPTY_COMPARE, None
            try:
                table = results.compare_table(outputs, run_ids)
                return (
                    "",
                    results.compare_display(table),
                    results.plot_compare_equity(outputs, run_ids, split),
                )
            except UserError as err:
                return f"⚠ {md(err)}", EMPTY_COMPARE, None

        compare_io = ([compare_pick, compare_split], [compare_error, compare_df, compare_plot])
        compare_btn.click(on_compare, *compare_io)
        compare_split.input(on_compare, *compare_io)

        def on_compare_tab(current):
            ids = run_choices()
            return gr.update(choices=ids, value=[c for c in (current or []) if c in ids])

        compare_tab.select(on_compare_tab, [compare_pick], [compare_pick])

        # -------------------------------------------------------------------------------------------------
        # page load: the runs table, and a deep link ?run=<id> opens that run

        def on_load(request: gr.Request):
            frame = results.runs_frame(results.list_runs(outputs))
            shown = results.display_frame(results.filter_runs(frame))
            ids = list(frame["run"])
            wanted = request.query_params.get("run") if request is not None else None
            if wanted is None:
                return shown, gr.update(choices=ids), gr.update(), ""
            try:
                rid = results.run_id_of(outputs, results.resolve_run(outputs, wanted))
            except UserError as err:
                return shown, gr.update(choices=ids), gr.Tabs(selected="runs"), f"⚠ {md(err)}"
            return shown, gr.update(choices=ids, value=rid), gr.Tabs(selected="runs"), ""

        demo.load(on_load, None, [runs_table, run_pick, tabs, run_error]).then(
            lambda run_id, split, err: open_run(run_id, split) if run_id and not err else [gr.update()] * 7,
            [run_pick, split_pick, run_error],
            run_view_outputs,
        )
    return demo
