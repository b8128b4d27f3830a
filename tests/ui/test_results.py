"""Reading runs: the table, filters, one run's curves and tables, comparisons, and id validation."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from tradelab_jax import plots, runs
from tradelab_jax.errors import UserError
from tradelab_jax.ui import results

from .runs_factory import make_run


@pytest.fixture
def populated(outputs):
    make_run(outputs, "20251126T110000Z_alpha", seed=1, risk=0.01, started="2025-11-26T11:00:00Z")
    make_run(
        outputs,
        "20251126T120000Z_beta",
        seed=2,
        risk=0.02,
        started="2025-11-26T12:00:00Z",
        agent_equity=(10_000.0, 10_500.0, 10_400.0, 11_000.0),
    )
    make_run(
        outputs, "20251126T130000Z_cart", status="failed", dataset="other_ds", started="2025-11-26T13:00:00Z"
    )
    sweep = outputs / "multirun" / "20251126T140000Z_sw"
    make_run(sweep, "0", seed=0, tag="sw", started="2025-11-26T14:00:00Z")
    make_run(sweep, "1", seed=1, tag="sw", started="2025-11-26T14:00:00Z")
    never = outputs / "20251126T150000Z_never"  # queued then cancelled: no config, no metrics
    runs.queue_run(never)
    runs.write_status(never, status="cancelled")
    (outputs / ".queue").mkdir()  # the job queue is not a run
    (outputs / "notes").mkdir()  # nor is any folder without status.json
    return outputs


def test_every_run_is_listed_with_its_test_metrics(populated):
    rows = {r["run"]: r for r in results.list_runs(populated)}
    assert set(rows) == {
        "20251126T110000Z_alpha",
        "20251126T120000Z_beta",
        "20251126T130000Z_cart",
        "multirun/20251126T140000Z_sw/0",
        "multirun/20251126T140000Z_sw/1",
        "20251126T150000Z_never",
    }
    beta = rows["20251126T120000Z_beta"]
    assert (
        beta["tag"] == "beta" and beta["dataset"] == "binance_btcusdt_1m_2025-10" and beta["status"] == "done"
    )
    assert beta["test_return"] == pytest.approx(0.10) and beta["sharpe"] == 1.25 and beta["fees_paid"] == 0.04
    assert beta["max_drawdown"] == pytest.approx(100 / 10_500) and beta["env_steps"] == 256
    assert beta["started"] == "2025-11-26 12:00:00" and beta["risk_pct"] == 0.02
    assert rows["20251126T130000Z_cart"]["test_return"] is None
    assert rows["multirun/20251126T140000Z_sw/1"]["tag"] == "sw"


def test_filter_and_sort(populated):
    frame = results.runs_frame(results.list_runs(populated))
    assert list(results.filter_runs(frame, "ALPHA")["run"]) == ["20251126T110000Z_alpha"]
    assert list(results.filter_runs(frame, "never")["status"]) == ["cancelled"]
    assert list(results.filter_runs(frame, "other_ds")["tag"]) == ["cart"]
    assert set(results.filter_runs(frame, status="failed")["run"]) == {"20251126T130000Z_cart"}
    by_return = results.filter_runs(frame, sort_by="test_return", descending=True)
    assert by_return["run"].iloc[0] == "20251126T120000Z_beta" and np.isnan(by_return["test_return"].iloc[-1])
    oldest = results.filter_runs(frame, sort_by="started", descending=False)
    assert oldest["run"].iloc[0] == "20251126T110000Z_alpha"
    with pytest.raises(UserError, match="cannot sort"):
        results.filter_runs(frame, sort_by="__class__")
    shown = results.display_frame(frame)
    assert shown.set_index("run").loc["20251126T120000Z_beta", "return %"] == 10.0
    assert shown.set_index("run").loc["20251126T120000Z_beta", "started"] == "2025-11-26 12:00"


def test_a_running_run_whose_process_is_gone_reads_interrupted(outputs):
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    make_run(outputs, "20251126T110000Z_lost", status="running", pid=dead.pid)
    make_run(outputs, "20251126T110001Z_live", status="running", pid=os.getpid())
    states = {r["tag"]: r["status"] for r in results.list_runs(outputs)}
    assert states == {"lost": "interrupted", "live": "running"}


@pytest.mark.parametrize(
    "bad",
    [
        "../outputs",
        "..",
        "../../etc/passwd",
        "/etc/passwd",
        "multirun/../../etc",
        "multirun/x/../../..",
        "a/b",
        "multirun/20251126T140000Z_sw/0/../../..",
        ".queue",
        "20251126T110000Z_alpha/../x",
        "20251126T110000Z_alpha\\..",
        "",
        "multirun/20251126T140000Z_sw/x",
        "notes",
    ],
)
def test_run_ids_that_escape_or_are_not_runs_are_refused(populated, bad):
    with pytest.raises(UserError):
        results.resolve_run(populated, bad)


def test_a_symlink_out_of_outputs_is_refused(populated, tmp_path):
    outside = make_run(tmp_path / "elsewhere", "20250101T000000Z_secret")
    (populated / "20250101T000000Z_link").symlink_to(outside)
    with pytest.raises(UserError, match="outside"):
        results.resolve_run(populated, "20250101T000000Z_link")


def test_runs_and_paper_sessions_are_opened_by_one_id_rule(tmp_path):
    # results.resolve_id is the rule of both pickers: the same refusals, each naming what was picked.
    from tradelab_jax.ui.tabs import paper

    outputs = tmp_path / "outputs"
    (outputs / "paper" / "real").mkdir(parents=True)
    (outputs / "paper" / "alias").symlink_to(outputs / "paper" / "real")  # a link that stays inside
    for kind, resolve in (("run", results.resolve_run), ("session", paper.resolve_session)):
        for bad, says in (("/etc", f"invalid {kind} id '/etc': expected a path relative to the outputs root"),
                          ("paper\\real", f"invalid {kind} id"), ("paper/..", f"invalid {kind} id part '..'"),
                          ("paper/alias", f"{kind} 'paper/alias' is reached through a symbolic link"),
                          ("", "no run selected" if kind == "run" else "no paper session selected")):
            with pytest.raises(UserError) as err:
                resolve(outputs, bad)
            assert str(err.value).startswith(says) and "\n" not in str(err.value), (kind, bad, err.value)
    assert results.resolve_id(outputs, "paper/real", kind="run", example="x", none="-") == (
        outputs / "paper" / "real").resolve()


def test_only_offered_files_are_served(populated):
    path = results.run_file(populated, "20251126T110000Z_alpha", "eval_summary.json")
    assert path == populated / "20251126T110000Z_alpha" / "eval_summary.json"
    for name in ("../../etc/passwd", "status.json/../../x", ".hydra/config.yaml", "checkpoints"):
        with pytest.raises(UserError):
            results.run_file(populated, "20251126T110000Z_alpha", name)
    with pytest.raises(UserError, match="has no"):
        results.run_file(populated, "20251126T130000Z_cart", "telemetry.parquet")


def test_equity_curves_and_drawdown(populated):
    d = results.resolve_run(populated, "20251126T120000Z_beta")
    curves = results.equity_curves(d, "test")
    assert list(curves.columns) == ["time", "ts", "agent", "buy_and_hold"]
    assert list(curves["agent"]) == [10_000.0, 10_500.0, 10_400.0, 11_000.0]
    assert str(curves["time"].iloc[0]) == "2025-10-15 00:01:00+00:00"
    # hand-worked: peak 10500 then 10400 -> 100/10500 below the peak
    np.testing.assert_allclose(plots.drawdown([100.0, 120.0, 90.0, 130.0]), [0, 0, 0.25, 0])
    assert results.equity_curves(results.resolve_run(populated, "20251126T130000Z_cart")) is None


def test_tables_of_one_run(populated):
    d = results.resolve_run(populated, "20251126T110000Z_alpha")
    ev = results.eval_table(d)
    assert set(ev["split"]) == {"val", "test"} and set(ev["policy"]) == {"agent", "buy_and_hold"}
    trades = results.trades_table(d, "test")
    assert len(trades) == 1 and trades["side"].iloc[0] == "long"  # one fill, still open at the end
    assert trades["entry time"].iloc[0].startswith("2025-10-15")
    assert trades["exit"].iloc[0] == "open" and trades["P&L"].iloc[0] == "-"
    assert ev.set_index(["split", "policy"]).loc[("test", "agent"), "total_return %"].endswith("%")
    assert list(results.load_metrics(d)["update"]) == [1, 2]
    assert "risk_pct: 0.01" in results.config_text(d)
    assert results.status_line(d).startswith("**done**")
    empty = results.resolve_run(populated, "20251126T130000Z_cart")
    assert results.eval_table(empty).empty and results.trades_table(empty).empty


def test_the_run_figures_are_the_reports_plotly_figures_of_the_telemetry(populated):
    import pandas as pd

    d = results.resolve_run(populated, "20251126T120000Z_beta")
    figs = results.run_figures(d, "test")
    eq = results.plot_equity(figs)
    by_name = {t.name: t for t in eq.data}
    assert set(by_name) == {"agent", "buy_and_hold", "flat", "agent drawdown", "buy_and_hold drawdown",
                            "asset (close, scaled)"}
    tel = pd.read_parquet(d / runs.TELEMETRY_FILE)
    test = tel[tel["split"] == "test"]
    for pol in ("agent", "buy_and_hold", "flat"):
        assert list(by_name[pol].y) == list(test[test["policy"] == pol].sort_values("t")["equity"])
    # hand-worked drawdown of 10000, 10500, 10400, 11000: only the third bar is below its peak
    np.testing.assert_allclose(by_name["agent drawdown"].y, [0, 0, (10_400 / 10_500 - 1) * 100, 0])
    assert by_name["agent"].x[0] == "2025-10-15T00:01"
    assert all(t.showlegend is not False for t in eq.data)  # every panel's traces are in the legend
    price = results.plot_price(figs)
    entries = [t for t in price.data if t.name == "long entry"]
    # the factory's agent holds from its first bar: one open round trip, marked where it starts
    assert [list(t.x) for t in entries] == [["2025-10-15T00:01"]]
    assert "1 round trip" in price.layout.title.text
    assert results.plot_equity(None).layout.annotations[0].text.startswith("no equity curve")
    assert results.run_figures(results.resolve_run(populated, "20251126T130000Z_cart")) is None
    metrics_fig = results.plot_metrics(results.load_metrics(d))
    assert len(metrics_fig.axes) == 4 and metrics_fig.axes[0].get_lines()
    assert results.plot_metrics(results.load_metrics(populated / "nothing")).axes[0].texts


def test_compare_two_runs(populated):
    ids = ["20251126T110000Z_alpha", "20251126T120000Z_beta", "multirun/20251126T140000Z_sw/1"]
    table = results.compare_table(populated, ids)
    assert list(table["run"]) == ids and list(table["risk_pct"]) == [0.01, 0.02, 0.01]
    assert table["total_return"].iloc[1] == pytest.approx(0.10)
    assert table["buy_and_hold_return"].iloc[0] == pytest.approx(0.0)
    side = results.compare_display(table)
    assert list(side.columns) == ["field", *ids]
    assert side.set_index("field").loc["total_return %", ids[1]] == "10.00%"
    assert side.set_index("field").loc["seed", ids[1]] == "2"
    fig = results.plot_compare_equity(populated, ids, "test")
    top = [t for t in fig.data if t.yaxis == "y"]
    bottom = [t for t in fig.data if t.yaxis == "y2"]
    assert len(top) == 4 and top[-1].name == "buy and hold" and "seed=2" in top[1].name
    assert list(top[1].y) == [10_000.0, 10_500.0, 10_400.0, 11_000.0]
    assert [t.name for t in bottom] == [f"{t.name} drawdown" for t in top[:3]]  # a legend entry each
    assert list(table["verdict"]) == ["- (no stats.json)"] * 3
    assert side.set_index("field").loc["sharpe IQM [95 %]", ids[0]] == "- (no stats.json)"
    with pytest.raises(UserError):
        results.compare_table(populated, ["20251126T110000Z_alpha", "../../etc"])


def test_runs_written_by_the_trainer_helpers_show_up_with_their_status(outputs):
    d = runs.new_run_dir(outputs, "cli")
    runs.queue_run(d)
    (row,) = results.list_runs(outputs)
    assert row["status"] == "queued" and row["run"] == d.name


def test_runs_over_different_periods_are_aligned_on_their_first_bar(outputs):
    make_run(outputs, "20251126T110000Z_a")
    late = make_run(outputs, "20251126T120000Z_b")
    import pandas as pd

    tel = pd.read_parquet(late / runs.TELEMETRY_FILE)
    tel["ts"] += 86_400_000
    tel.to_parquet(late / runs.TELEMETRY_FILE, index=False)
    fig = results.plot_compare_equity(outputs, ["20251126T110000Z_a", "20251126T120000Z_b"])
    assert "different periods" in fig.layout.xaxis2.title.text
    assert list(fig.data[0].x) == [0, 1, 2, 3]


def test_a_sweep_point_resumes_with_its_sweep_and_a_plain_multirun_point_alone(outputs):
    packed = outputs / "multirun" / "20251126T140000Z_sw"
    for n in ("0", "1"):
        make_run(packed, n, status="cancelled", tag="sw", checkpoint=3)
    (packed / runs.PACKED_FILE).write_text('{"points": [{"dir": "0"}, {"dir": "1"}]}')
    target = results.resume_target(outputs, "multirun/20251126T140000Z_sw/1")
    assert (target.dir_id, target.path, target.points) == ("multirun/20251126T140000Z_sw", packed, 2)
    assert (target.tag, target.update) == ("sw", 3)
    runs.write_status(packed / "0", status="done")  # a done point is left alone: the other resumes
    assert results.resume_target(outputs, "multirun/20251126T140000Z_sw/1").points == 1
    runs.write_status(packed / "1", status="done")
    with pytest.raises(UserError, match="cannot be resumed: every point of the sweep is done"):
        results.resume_target(outputs, "multirun/20251126T140000Z_sw/1")
    hydra = outputs / "multirun" / "20251126T150000Z_m"  # a Hydra multirun: one process per point
    make_run(hydra, "2", status="failed", tag="m", checkpoint=1)
    target = results.resume_target(outputs, "multirun/20251126T150000Z_m/2")
    assert (target.dir_id, target.path, target.points) == ("multirun/20251126T150000Z_m/2", hydra / "2", 1)


def test_the_run_view_links_tensorboard_and_the_stats_verdict(populated):
    import json

    from tradelab_jax.ui.tabs.runs import links_md

    alpha = results.resolve_run(populated, "20251126T110000Z_alpha")
    assert links_md(populated, alpha).split("  \n") == [
        f"TensorBoard: `tensorboard --logdir {populated}`",
        "No stats.json for this run yet (written after training; `tradelab stats DIR` makes one): no "
        "intervals or verdict to show."]
    verdict = "best of 2 configurations: Sharpe 0.41; PBO n/a (needs at least 2 configurations)"
    (alpha / results.STATS_FILE).write_text(json.dumps({"schema": 1, "verdict": verdict}))
    lines = links_md(populated, alpha).split("  \n")
    assert lines[0].startswith("TensorBoard: `tensorboard --logdir ") and len(lines) == 2
    assert lines[1] == "**Verdict** (20251126T110000Z\\_alpha/stats.json): " + verdict
    # A sweep point shows its sweep's verdict; a stats.json without one is a note, not a line.
    sweep = populated / "multirun" / "20251126T140000Z_sw"
    (sweep / results.STATS_FILE).write_text(json.dumps({"verdict": "1 configuration over 2 point(s): x"}))
    where = "multirun/20251126T140000Z\\_sw/stats.json"
    point_links = links_md(populated, sweep / "0")
    assert point_links.endswith(f"**Verdict** ({where}): 1 configuration over 2 point(s): x")
    (sweep / results.STATS_FILE).write_text(json.dumps({"verdict": None}))
    notes: list[str] = []
    assert "Verdict" not in links_md(populated, sweep / "0", notes)
    assert notes == [f"{sweep / results.STATS_FILE} holds no verdict sentence"]
    (sweep / results.STATS_FILE).write_text("[1, 2")
    notes = []
    assert "Verdict" not in links_md(populated, sweep / "1", notes) and "not valid JSON" in notes[0]
