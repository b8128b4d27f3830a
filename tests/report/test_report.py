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
    for pol in ("agent", "buy_and_hold", "flat", "random"):
        want = tel[tel["policy"] == pol].sort_values("t")["equity"].to_numpy()
        assert _trace(equity, pol)["y"] == pytest.approx(want.tolist())
    agent = tel[tel["policy"] == "agent"].sort_values("t").reset_index(drop=True)
    dd = _trace(equity, "agent drawdown")["y"]
    mdd = runs.read_eval_summary(point)["splits"]["test"]["agent"]["max_drawdown"]
    assert min(dd) == pytest.approx(-100 * mdd)
    price = json.loads(page.by_id["fig-price"])
    assert _trace(price, "close")["y"] == pytest.approx(agent["close"].tolist())
    trips = round_trip_table({c: agent[c].to_numpy() for c in agent.columns},
                             runs.read_config(point)["env"]["initial_cash"])
    entries = len(_trace(price, "long entry")["x"]) + len(_trace(price, "short entry")["x"])
    assert entries == len(trips) and len(_trace(price, "exit")["x"]) == int((trips["exit"] != "open").sum())
    rolling = json.loads(page.by_id["fig-rolling_sharpe"])
    assert len(rolling["data"][0]["y"]) == len(agent)
    # the per-seed table names every point of every configuration
    for c in stats["configs"]:
        assert c["name"] in out.read_text()


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
