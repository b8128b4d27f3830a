"""The run view and Compare on a real trained packed sweep (2 seeds x 2 risk levels, the stats tests'
tiny sweep): stats.json's intervals and verdict as shown, the report built for download, and the plotly
figures equal to the point's telemetry."""

from __future__ import annotations

import html
import json
import shutil

import pandas as pd
import pytest

from tests.stats.conftest import tiny_sweep  # noqa: F401 - a fixture
from tradelab_jax import fmt, report, runs
from tradelab_jax.errors import UserError
from tradelab_jax.ui import results
from tradelab_jax.ui.tabs.runs import open_run

from .runs_factory import make_run

SWEEP = "multirun/20251201T100000Z_tiny"


@pytest.fixture
def trained(outputs, tiny_sweep):  # noqa: F811 - the fixture
    shutil.copytree(tiny_sweep, outputs / SWEEP)
    make_run(outputs, "20251126T110000Z_alpha")  # a run without stats.json
    return outputs


def test_intervals_and_verdict_are_stats_json_as_written(trained):
    stats = json.loads((trained / SWEEP / results.STATS_FILE).read_text())
    where, folder, read = results.read_stats(trained, results.resolve_run(trained, f"{SWEEP}/1"))
    assert (where, folder, read) == (f"{SWEEP}/stats.json", trained / SWEEP, stats)
    table = results.intervals_table(read)
    assert len(stats["configs"]) == 2 and set(table["configuration"]) == {c["name"] for c in stats["configs"]}
    for c in stats["configs"]:
        row = table[(table["configuration"] == c["name"]) & (table["policy"] == "agent")
                    & (table["metric"] == "sharpe")].iloc[0]
        sh = c["policies"]["agent"]["sharpe"]
        assert row["n"] == sh["n"] == 2 and row["IQM"] == fmt.cell(sh["iqm"], "num")
        if sh["iqm_ci95"]:
            assert (row["95 % low"], row["95 % high"]) == tuple(fmt.cell(v, "num") for v in sh["iqm_ci95"])
        else:
            assert row["95 % low"] == "-" and row["note"] == sh["reason"]
        ret = table[(table["configuration"] == c["name"]) & (table["policy"] == "agent")
                    & (table["metric"] == "total_return %")].iloc[0]
        assert ret["IQM"].endswith("%")
    view = open_run(trained, f"{SWEEP}/0", "test")
    assert stats["verdict"] in view[2].replace("\\", "")  # the links line, markdown-escaped
    assert list(view[5]["IQM"]) == list(table["IQM"])
    bare = open_run(trained, "20251126T110000Z_alpha", "test")
    assert "No stats.json for this run yet" in bare[2] and bare[5].empty and not bare[0]


def test_the_run_figures_equal_the_points_telemetry(trained):
    d = results.resolve_run(trained, f"{SWEEP}/2")
    figs = results.run_figures(d, "test")
    tel = pd.read_parquet(d / runs.TELEMETRY_FILE)
    agent = tel[(tel["split"] == "test") & (tel["policy"] == "agent")].sort_values("t")
    # drawn downsampled for display (report.display_index: each run of bars' lowest and highest), every
    # drawn point a bar of the telemetry
    equity, close_ = agent["equity"].astype(float).to_numpy(), agent["close"].astype(float).to_numpy()
    (eq,) = [t for t in figs["equity"].data if t.name == "agent"]
    assert len(eq.y) < len(equity)
    assert list(eq.y) == pytest.approx(list(equity[report.display_index(equity)]))
    assert min(eq.y) == pytest.approx(equity.min()) and max(eq.y) == pytest.approx(equity.max())
    (close,) = [t for t in figs["price"].data if t.name == "close"]
    assert list(close.y) == pytest.approx(list(close_[report.display_index(close_)]))
    trades = results.trades_table(d, "test", limit=1_000_000)
    marked = sum(len(t.x) for t in figs["price"].data if t.name.endswith(" entry"))
    assert marked == len(trades)


def test_compare_shows_each_runs_interval_and_verdict(trained):
    stats = json.loads((trained / SWEEP / results.STATS_FILE).read_text())
    ids = [f"{SWEEP}/0", "20251126T110000Z_alpha"]
    table = results.compare_table(trained, ids)
    assert list(table["verdict"]) == [stats["verdict"], "- (no stats.json)"]
    side = results.compare_display(table).set_index("field")
    assert "verdict" not in side.index  # a sentence each, shown under the table
    best = stats["configs"][stats["best"]["index"]]["policies"]["agent"]["sharpe"]
    assert side.loc["sharpe IQM [95 %]", ids[0]].startswith(fmt.cell(best["iqm"], "num"))


def test_the_report_is_built_for_download_and_refused_in_one_sentence(trained, tmp_path):
    out = results.build_report(trained, f"{SWEEP}/1", tmp_path / "dl")
    text = out.read_text()
    stats = json.loads((trained / SWEEP / results.STATS_FILE).read_text())
    assert out.name == "report.html"
    assert f'<p id=verdict class=verdict>{html.escape(stats["verdict"])}' in text
    assert not (trained / SWEEP / "report.html").exists()  # nothing written into outputs/
    with pytest.raises(UserError, match="holds no evaluated trading run to report on"):
        q = trained / "20251126T120000Z_q"
        runs.queue_run(q)
        results.build_report(trained, "20251126T120000Z_q", tmp_path / "dl2")
