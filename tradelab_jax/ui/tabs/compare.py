"""The Compare tab: two or more runs side by side (metrics, then the config fields that differ) and their
equity curves overlaid on one split."""

from __future__ import annotations

import gradio as gr
import pandas as pd

from tradelab_jax.errors import UserError
from tradelab_jax.ui import results
from tradelab_jax.ui.tabs import Shared, md, notes_md

EMPTY_COMPARE = pd.DataFrame(columns=["field"])


def build(shared: Shared) -> None:
    with gr.Tab("Compare", id="compare") as tab:
        with gr.Row():
            pick = gr.Dropdown(
                shared.run_ids(),
                multiselect=True,
                elem_id="compare-pick",
                label="Runs to compare (two or more)",
                scale=4,
            )
            split = gr.Radio(["test", "val"], value="test", label="Split", scale=1)
            compare_btn = gr.Button("Compare", variant="primary", elem_id="compare-btn", scale=1)
        error = gr.Markdown("", elem_id="compare-error")
        table = gr.Dataframe(
            EMPTY_COMPARE,
            label="Runs side by side: the agent's metrics on the test split, its Sharpe IQM [95 % interval] "
            "over seeds/folds (stats.json), then the config; each run's verdict below",
            interactive=False,
            elem_id="compare-table",
        )
        verdicts = gr.Markdown("", elem_id="compare-verdicts")
        plot = gr.Plot(label="Equity curves overlaid", elem_id="compare-plot", show_label=False)

    def on_compare(run_ids, split_name):
        run_ids = list(run_ids or [])
        if len(run_ids) < 2:
            return "Pick two or more runs.", EMPTY_COMPARE, "", None
        notes: list[str] = []
        try:
            table = results.compare_table(shared.outputs, run_ids, notes)
        except UserError as err:
            return f"⚠ {md(err)}", EMPTY_COMPARE, "", None
        shown = results.compare_display(table)
        verdict_lines = "  \n".join(f"**Verdict** of {md(r['run'])}: {md(r['verdict'])}"
                                    for _, r in table.iterrows())
        try:
            plot = results.plot_compare_equity(shared.outputs, run_ids, split_name, notes)
        except Exception as err:  # a foreign telemetry file must cost the plot, not the page
            notes.append(f"the equity curves could not be drawn ({type(err).__name__}: {err})")
            plot = None
        return notes_md(notes), shown, verdict_lines, plot

    def on_tab(current):
        """The dropdown offers the runs there are now, keeping the picks that still exist."""
        ids = shared.run_ids()
        return gr.update(choices=ids, value=[c for c in (current or []) if c in ids])

    io = ([pick, split], [error, table, verdicts, plot])
    compare_btn.click(on_compare, *io)
    split.input(on_compare, *io)
    tab.select(on_tab, [pick], [pick])
