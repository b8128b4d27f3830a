"""`tradelab report` on a real tiny packed sweep: one self-contained HTML file whose figures hold the
telemetry's numbers, whose verdict is stats.json's and whose config and checksum are the run's own."""

from __future__ import annotations

import json
from html.parser import HTMLParser

import pandas as pd
import pytest
import yaml

from tradelab_jax import cli, report, runs
from tradelab_jax.roundtrips import round_trip_table


class _Page(HTMLParser):
    """Every element's text by id, the script bodies, and whether any script loads from elsewhere."""

    def __init__(self):
        super().__init__()
        self.by_id, self.scripts, self.external, self._stack = {}, [], [], []

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "script" and "src" in a:
            self.external.append(a["src"])
        self._stack.append((tag, a.get("id"), []))

    def handle_endtag(self, tag):
        while self._stack:
            t, i, buf = self._stack.pop()
            text = "".join(buf)
            if i:
                self.by_id[i] = text
            if t == "script":
                self.scripts.append(text)
            if self._stack:
                self._stack[-1][2].append(text)
            if t == tag:
                break

    def handle_data(self, data):
        if self._stack:
            self._stack[-1][2].append(data)


def _parse(path) -> _Page:
    page = _Page()
    page.feed(path.read_text(encoding="utf-8"))
    page.close()
    return page


def _trace(fig: dict, name: str) -> dict:
    [t] = [t for t in fig["data"] if t.get("name") == name]
    return t


def test_report_of_a_sweep_holds_its_telemetry_verdict_config_and_checksum(tiny_sweep, capsys):
    assert cli.main(["report", str(tiny_sweep)]) == 0
    out = tiny_sweep / report.REPORT_FILE
    assert capsys.readouterr().out.strip() == f"wrote {out}"
    page = _parse(out)
    assert page.external == []  # plotly.js is inline: the file opens offline
    assert max(len(s) for s in page.scripts) > 1_000_000 and "Plotly.newPlot" in "".join(page.scripts)
    stats = json.loads((tiny_sweep / "stats.json").read_text())
    assert page.by_id["verdict"] == stats["verdict"]
    best = stats["configs"][stats["best"]["index"]]
    point = tiny_sweep / best["points"][0]["dir"]
    assert page.by_id["checksum"] == runs.read_eval_summary(point)["run"]["dataset_checksum"]
    assert yaml.safe_load(page.by_id["config"]) == runs.read_config(point)

    tel = pd.read_parquet(point / "telemetry.parquet")
    tel = tel[tel["split"] == "test"]
    equity = json.loads(page.by_id["fig-equity"])
    agent = tel[tel["policy"] == "agent"].sort_values("t").reset_index(drop=True)
    assert len(agent) > 2 * report.DISPLAY_POINTS  # so the curves are downsampled, and say so
    drawn = max(len(t["y"]) for t in equity["data"])
    assert drawn <= report.DISPLAY_POINTS
    assert f"downsampled for display: at most {drawn:,} of {len(agent):,} points per curve" in \
        equity["layout"]["annotations"][0]["text"]
    for pol in ("agent", "buy_and_hold", "flat", "random"):
        rows = tel[tel["policy"] == pol].sort_values("t")
        _assert_drawn_from(_trace(equity, pol), rows["ts"], rows["equity"])
    dd = _trace(equity, "agent drawdown")["y"]
    mdd = runs.read_eval_summary(point)["splits"]["test"]["agent"]["max_drawdown"]
    assert min(dd) == pytest.approx(-100 * mdd)  # the deepest trough survives the downsampling
    price = json.loads(page.by_id["fig-price"])
    _assert_drawn_from(_trace(price, "close"), agent["ts"], agent["close"])
    assert "downsampled for display" in price["layout"]["title"]["text"]
    trips = round_trip_table({c: agent[c].to_numpy() for c in agent.columns},
                             runs.read_config(point)["env"]["initial_cash"])
    entries = len(_trace(price, "long entry")["x"]) + len(_trace(price, "short entry")["x"])
    assert entries == len(trips) and len(_trace(price, "exit")["x"]) == int((trips["exit"] != "open").sum())
    rolling = json.loads(page.by_id["fig-rolling_sharpe"])
    assert 0 < len(rolling["data"][0]["y"]) <= report.DISPLAY_POINTS
    # the per-seed table names every point of every configuration
    for c in stats["configs"]:
        assert c["name"] in out.read_text()


def _assert_drawn_from(trace: dict, ts, y) -> None:
    """A downsampled curve: at most DISPLAY_POINTS of the telemetry's own (time, value) points, in bar
    order, with the first, the last, the lowest and the highest among them."""
    full = dict(zip(report._iso(ts), y.astype(float), strict=True))
    assert len(trace["x"]) <= report.DISPLAY_POINTS and trace["x"] == sorted(trace["x"])
    assert trace["y"] == pytest.approx([full[x] for x in trace["x"]])
    assert trace["x"][0] == min(full) and trace["x"][-1] == max(full)
    assert min(trace["y"]) == pytest.approx(y.min()) and max(trace["y"]) == pytest.approx(y.max())


def test_every_bar_with_points_0_and_plotly_from_the_cdn(tiny_sweep, tmp_path, capsys):
    """`--points 0` draws every bar (the figures hold the telemetry itself); `--plotly cdn` is the same
    page with one script tag instead of plotly.js, millions of characters smaller."""
    point = tiny_sweep / "1"
    assert cli.main(["report", str(point), "--out", str(tmp_path / "all.html"), "--points", "0"]) == 0
    page = _parse(tmp_path / "all.html")
    tel = pd.read_parquet(point / "telemetry.parquet")
    tel = tel[tel["split"] == "test"]
    equity = json.loads(page.by_id["fig-equity"])
    for pol in ("agent", "buy_and_hold", "flat", "random"):
        want = tel[tel["policy"] == pol].sort_values("t")["equity"].to_numpy()
        assert _trace(equity, pol)["y"] == pytest.approx(want.tolist())
    assert "downsampled" not in equity["layout"]["annotations"][0]["text"]
    n_agent = int((tel["policy"] == "agent").sum())
    assert len(json.loads(page.by_id["fig-rolling_sharpe"])["data"][0]["y"]) == n_agent

    assert cli.main(["report", str(point), "--out", str(tmp_path / "inline.html")]) == 0
    assert cli.main(["report", str(point), "--out", str(tmp_path / "cdn.html"), "--plotly", "cdn"]) == 0
    inline, cdn = _parse(tmp_path / "inline.html"), _parse(tmp_path / "cdn.html")
    from plotly.offline import get_plotlyjs_version

    assert cdn.external == [f"https://cdn.plot.ly/plotly-{get_plotlyjs_version()}.min.js"]
    assert all(cdn.by_id[k] == inline.by_id[k] for k in ("fig-equity", "fig-price", "verdict", "config"))
    sizes = {k: (tmp_path / f"{k}.html").stat().st_size for k in ("all", "inline", "cdn")}
    assert sizes["inline"] - sizes["cdn"] > 3_000_000 and sizes["cdn"] < 1_000_000
    assert sizes["all"] > sizes["inline"]
    assert cli.main(["report", str(point), "--points", "3"]) == 2
    assert "expected 0 (every bar) or a count of at least 4" in capsys.readouterr().err


def test_display_index_keeps_a_one_bar_crash_and_nan_gaps():
    """Min/max per run of bars: a one-bar trough that every-k-th-bar sampling would step over is drawn."""
    import numpy as np

    rng = np.random.default_rng(0)
    y = 10_000 + np.cumsum(rng.normal(0, 1, 100_000))
    y[54_321] -= 5_000  # a one-bar crash: the drawdown a report must show
    y[:700] = np.nan  # a rolling statistic's warm-up
    i = report.display_index(y, 1000)
    assert i.size <= 1000 and np.all(np.diff(i) > 0) and i[0] == 0 and i[-1] == y.size - 1
    assert 54_321 in i and np.nanargmax(y) in i
    assert np.isnan(y[i]).any() and np.isfinite(y[i]).sum() > 900
    assert np.array_equal(report.display_index(y[:1000], 1000), np.arange(1000))
    assert np.array_equal(report.display_index(y, 0), np.arange(y.size))
    assert report.display_index(y[::2][:7_001], 1000)[-1] == 7_000


def test_report_of_one_point_and_out_paths(tiny_sweep, tmp_path, capsys):
    point = tiny_sweep / "1"
    dest = tmp_path / "sent"
    dest.mkdir()
    assert cli.main(["report", str(point), "--out", str(dest)]) == 0
    page = _parse(dest / report.REPORT_FILE)
    assert "1 configuration (1 seed)" in page.by_id["verdict"] and "no interval" in page.by_id["verdict"]
    assert not (point / report.REPORT_FILE).exists()
    assert cli.main(["report", str(point), "--out", str(tmp_path / "mine.html")]) == 0
    assert (tmp_path / "mine.html").read_text() == (dest / report.REPORT_FILE).read_text()
    capsys.readouterr()


def test_report_bad_paths_are_one_sentence(tmp_path, capsys):
    (tmp_path / "afile").write_text("x")
    assert cli.main(["report", str(tmp_path)]) == 2
    assert cli.main(["report", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 2 and all(e.startswith("error: ") for e in err)
    assert cli.main(["report", str(tmp_path), "--out", str(tmp_path / "afile" / "r.html")]) == 2
    assert "not a folder" in capsys.readouterr().err


def test_out_without_a_suffix_is_a_folder_and_another_suffix_is_one_sentence(tiny_sweep, tmp_path, capsys):
    """`--out foo` once wrote a file literally named foo; it is a folder that gets report.html."""
    point = tiny_sweep / "1"
    assert cli.main(["report", str(point), "--out", str(tmp_path / "foo")]) == 0
    assert (tmp_path / "foo").is_dir() and (tmp_path / "foo" / report.REPORT_FILE).is_file()
    assert capsys.readouterr().out.strip() == f"wrote {tmp_path / 'foo' / report.REPORT_FILE}"
    assert cli.main(["report", str(point), "--out", str(tmp_path / "r.HTM")]) == 0
    assert (tmp_path / "r.HTM").is_file()
    capsys.readouterr()
    assert cli.main(["report", str(point), "--out", str(tmp_path / "foo.pdf")]) == 2
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("error: --out ") and "'.pdf'" in line and "ending in .html or a folder" in line
    assert not (tmp_path / "foo.pdf").exists()
