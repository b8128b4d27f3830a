"""The Launch tab: the form (typed by :mod:`tradelab_jax.ui.forms`) with its live command preview, and the
job panel (the queue's jobs, Cancel, the picked job's log tail), refreshed every :data:`REFRESH_S`."""

from __future__ import annotations

import html
from dataclasses import dataclass
from typing import Any

import gradio as gr

from tradelab_jax import runs
from tradelab_jax.errors import UserError
from tradelab_jax.knobs import ALL_KNOBS
from tradelab_jax.ui import forms
from tradelab_jax.ui.jobs import LOG_FILE, JobQueue
from tradelab_jax.ui.tabs import Shared, md

REFRESH_S = 1.0
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
    "experiment": "Experiment preset (conf/experiment; fields left at their start value keep the preset's)",
    "data_start": "data.start: first UTC date of the sub-period (YYYY-MM-DD[THH:MM]; blank = first bar)",
    "data_end": "data.end: end of the sub-period, exclusive (blank = last bar)",
    "split_train": "data.split.train: fraction of the bars to train on (blank = 0.70)",
    "split_val": "data.split.val: fraction for validation (blank = 0.15; test gets the rest)",
    "cv": "Cross-validation (cv): none trains on the train split; folds evaluate each on its own test window",
    "cv_folds": "cv.folds: number of folds (>= 2; blank = 5)",
    "cv_embargo_bars": "cv.embargo_bars: bars left out after each test window (blank = 0)",
    "cv_test": "cv.test: test window, bars or a fraction (walk-forward; blank = 1/(folds+1))",
    "cv_train": "cv.train: rolling training window, bars or a fraction (walk-forward; blank = 1/(folds+1))",
    "cv_mode": "cv.mode (walk-forward): rolling or expanding (blank = rolling)",
}


def advanced_label(name: str) -> str:
    """An advanced knob's label, from the knob table: key, unit, meaning and the default a blank keeps."""
    knob = ALL_KNOBS[f"{'env' if name in forms.ENV_KNOBS else 'agent'}.{name}"]
    default = knob.config_default()
    text = str(default).lower() if isinstance(default, bool) else forms._start_text(default)
    parts = [knob.key, *(x for x in (knob.unit, knob.help) if x)]
    return f"{' · '.join(parts)} (blank = {text})"


# ---------------------------------------------------------------------------------------------------------
# what the job panel shows


def _shown_jobs(queue: JobQueue, recent: int) -> tuple[list, list]:
    """The active jobs, and the ``recent`` last finished ones, newest first."""
    jobs = queue.list()
    return [j for j in jobs if j.active], [j for j in jobs if not j.active][-recent:][::-1]


def _job_card(queue: JobQueue, job) -> str:
    p = queue.progress(job, log_lines=0)
    state = "cancelling" if p["cancelling"] else job.state
    pct = max(0.0, min(1.0, float(p["progress"]))) * 100
    meta = [f"waiting, #{p['queue_position']} in the queue" if job.state == "queued" else f"{pct:.0f}%"]
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
    card = (
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
        card += f"<div class='job-error'>{html.escape(job.error)}</div>"
    return card + "</div>"


def jobs_html(queue: JobQueue, recent: int = 4) -> str:
    active, finished = _shown_jobs(queue, recent)
    if not active and not finished:
        return (
            "<div class='jobs'><div class='job-meta'>No jobs yet: fill the form and press Launch.</div></div>"
        )
    cards = [_job_card(queue, j) for j in [*sorted(active, key=lambda j: j.state != "running"), *finished]]
    return "<div class='jobs'>" + "".join(cards) + "</div>"


def job_choices(queue: JobQueue, recent: int = 4) -> list[tuple[str, str]]:
    active, finished = _shown_jobs(queue, recent)
    return [(f"{j.id} ({j.state})", j.id) for j in [*active, *finished]]


def pick_job(queue: JobQueue, current: str | None) -> str | None:
    """Keep the user's choice while it exists; otherwise follow the running job (or the newest)."""
    ids = [v for _, v in job_choices(queue)]
    if current in ids:
        return current
    running = [j.id for j in queue.list() if j.state == "running"]
    return running[0] if running else (ids[0] if ids else None)


@dataclass(frozen=True)
class JobPanel:
    """The job panel's components that a queued job updates (Launch here, Resume on the Runs tab)."""

    panel: gr.HTML
    pick: gr.Dropdown
    log_tail: gr.Textbox

    def show(self, queue: JobQueue, job_id: str) -> tuple[str, Any]:
        """The panel's new values once ``job_id`` is queued: its card, and the dropdown on it."""
        return jobs_html(queue), gr.update(choices=job_choices(queue), value=job_id)


# ---------------------------------------------------------------------------------------------------------
# the tab


def build(shared: Shared, choices: forms.Choices) -> JobPanel:
    """The Launch tab; returns its job panel, which Resume on the Runs tab updates too."""
    with gr.Tab("Launch", id="launch"):
        with gr.Row():
            with gr.Column(scale=3):
                inputs, errors = _form_fields(choices)
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
                jobs = _job_panel(shared)
        timer = gr.Timer(REFRESH_S)
    _wire_form(shared, choices, inputs, errors, preview)
    _wire_launch(shared, choices, inputs, errors, launch_btn, launch_msg, jobs)
    _wire_refresh(shared, jobs, timer)
    return jobs


def _form_fields(choices: forms.Choices) -> tuple[dict[str, Any], dict[str, gr.Markdown]]:
    """One component per form field, each with its error line right under it: ``(inputs, errors)``."""
    start = forms.initial_values(choices)
    inputs: dict[str, Any] = {}
    errors: dict[str, gr.Markdown] = {}

    def add(name: str, kind=gr.Textbox, **kw) -> None:
        if kind is gr.Textbox:
            kw.setdefault("value", start[name])
        label = FIELD_LABELS[name] if name in FIELD_LABELS else advanced_label(name)
        inputs[name] = kind(label=label, elem_id=f"f-{name}", **kw)
        errors[name] = gr.Markdown("", visible=False, elem_id=f"err-{name}", elem_classes=["field-error"])

    def pair(a: tuple, b: tuple) -> None:
        with gr.Row():
            for name, kind, kw in (a, b):
                with gr.Column():
                    add(name, kind, **kw)

    text = gr.Textbox
    presets = [forms.NO_EXPERIMENT, *choices.experiments]
    add("experiment", gr.Dropdown, choices=presets, value=forms.NO_EXPERIMENT)
    with gr.Group():
        gr.Markdown("**Data**")
        datasets = [(d.label, d.id) for d in choices.datasets]
        add("dataset", gr.Dropdown, choices=datasets, value=start["dataset"])
        add("features", gr.Dropdown, choices=list(choices.feature_sets), value=start["features"])
    with gr.Group():
        gr.Markdown("**Risk and execution** (fractions unless the name says bps)")
        pair(
            ("risk_pct", text, {"placeholder": "0.01 or 0.005, 0.01"}),
            ("stop_loss_bps", text, {"placeholder": "50 or 25, 50, 100"}),
        )
        pair(
            ("maker_fee", text, {"placeholder": str(choices.default("maker_fee"))}),
            ("taker_fee", text, {"placeholder": str(choices.default("taker_fee"))}),
        )
        pair(
            ("order_type", gr.Radio, {"choices": list(forms.ORDER_TYPES), "value": start["order_type"]}),
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
    with gr.Accordion("Splits and cross-validation", open=False, elem_id="splits"):
        gr.Markdown("What to train and test on (docs/training.md, \"Splits and cross-validation\"); a blank "
                    "field keeps the config's value.")
        pair(("data_start", text, {"placeholder": "2025-10-01"}), ("data_end", text, {"placeholder": ""}))
        pair(("split_train", text, {"placeholder": "0.7"}), ("split_val", text, {"placeholder": "0.15"}))
        cv_kinds = [("none", ""), ("walk_forward", "walk_forward"), ("purged_kfold", "purged_kfold")]
        pair(("cv", gr.Dropdown, {"choices": cv_kinds, "value": ""}),
             ("cv_folds", text, {"placeholder": "5"}))
        pair(("cv_embargo_bars", text, {"placeholder": "0"}), ("cv_test", text, {"placeholder": "blank"}))
        pair(("cv_train", text, {"placeholder": "blank"}),
             ("cv_mode", gr.Dropdown, {"choices": [("default", ""), ("rolling", "rolling"),
                                                   ("expanding", "expanding")], "value": ""}))
    with gr.Accordion("Advanced", open=False, elem_id="advanced"):
        gr.Markdown("The other env and PPO knobs; a blank field keeps the config's (or the preset's) value.")
        for name in forms.ADVANCED:
            knob = forms.FIELD_TABLE[name].knob
            if knob.kind in ("bool", "choice"):
                names = ["true", "false"] if knob.kind == "bool" else list(knob.choices)
                add(name, gr.Dropdown, choices=[("default", ""), *((n, n) for n in names)], value="")
            else:
                add(name, placeholder=forms._start_text(knob.config_default()))
    return inputs, errors


def _validate(choices: forms.Choices, values: tuple) -> tuple[forms.LaunchPlan | None, dict[str, str], list]:
    """The form parsed, and one update per field's error line (shown with its sentence, or hidden)."""
    plan, errs = forms.parse_form(dict(zip(forms.FIELDS, values, strict=True)), choices)
    updates = [
        gr.update(value=f"⚠ {md(errs[n])}", visible=True) if n in errs else gr.update(value="", visible=False)
        for n in forms.FIELDS
    ]
    return plan, errs, updates


def _wire_form(shared: Shared, choices: forms.Choices, inputs: dict, errors: dict, preview: gr.Code) -> None:
    """Every edit re-checks the whole form and redraws the preview (and the page's first load does)."""
    form_inputs = [inputs[n] for n in forms.FIELDS]
    outputs = [preview, *(errors[n] for n in forms.FIELDS)]

    def on_change(*values):
        plan, _, updates = _validate(choices, values)
        where = None
        if plan is not None:
            base = shared.outputs / runs.MULTIRUN_DIR if plan.packed else shared.outputs
            where = base / runs.run_dir_name(plan.tag, "YYYYMMDDTHHMMSSZ")
        return [forms.preview(plan, where), *updates]

    for comp in form_inputs:
        comp.input(on_change, form_inputs, outputs, show_progress="hidden", trigger_mode="always_last")
    shared.page.load(on_change, form_inputs, outputs, show_progress="hidden")


def _wire_launch(
    shared: Shared,
    choices: forms.Choices,
    inputs: dict,
    errors: dict,
    launch_btn: gr.Button,
    launch_msg: gr.Markdown,
    jobs: JobPanel,
) -> None:
    queue = shared.queue

    def on_launch(*values):
        plan, errs, updates = _validate(choices, values)
        if plan is None:
            gr.Warning(f"Not launched: {len(errs)} field(s) need fixing (marked in red).")
            return ["**Not launched**: fix the fields marked in red.", *updates, gr.update(), gr.update()]
        job = queue.submit(plan)
        where = "waits in the queue" if [j for j in queue.active() if j.id != job.id] else "starts now"
        msg = f"Queued job `{job.id}` ({job.points} run{'s' if job.points > 1 else ''}); it {where}."
        return [msg, *updates, *jobs.show(queue, job.id)]

    launch_btn.click(
        on_launch,
        [inputs[n] for n in forms.FIELDS],
        [launch_msg, *(errors[n] for n in forms.FIELDS), jobs.panel, jobs.pick],
    )


def _job_panel(shared: Shared) -> JobPanel:
    """The job cards, the job dropdown with Cancel (wired here), and the picked job's log tail."""
    queue = shared.queue
    gr.Markdown("**Jobs** (one training at a time; further launches wait in the queue)")
    panel = gr.HTML(jobs_html(queue), elem_id="job-panel")
    with gr.Row():
        pick = gr.Dropdown(
            job_choices(queue), value=pick_job(queue, None), label="Job", elem_id="job-pick", scale=3
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

    cancel_btn.click(on_cancel, [pick], [cancel_msg, panel])
    return JobPanel(panel=panel, pick=pick, log_tail=log_tail)


def _wire_refresh(shared: Shared, jobs: JobPanel, timer: gr.Timer) -> None:
    """Each tick (and the page's load) redraws the cards and the dropdown, and reads the picked job's log."""
    queue = shared.queue

    def on_tick(current):
        chosen = pick_job(queue, current)
        tail = ""
        if chosen:
            try:
                job = queue.get(chosen)
                tail = queue.progress(job, log_lines=14)["log_tail"] or "(no output yet)"
            except UserError:
                chosen = None
        # The value is sent only when the tick must change it (the picked job is gone, or none was picked):
        # a tick in flight while the user picks another job would otherwise put back the one it read.
        pick = gr.update(choices=job_choices(queue)) if chosen == current else gr.update(
            choices=job_choices(queue), value=chosen)
        return jobs_html(queue), pick, tail

    io = ([jobs.pick], [jobs.panel, jobs.pick, jobs.log_tail])
    timer.tick(on_tick, *io, show_progress="hidden")
    shared.page.load(on_tick, *io, show_progress="hidden")
