"""Hostile and broken outputs folders, over HTTP against the real server (issue 12, items 1 and 2).

Item 1: a run whose contract file (config, status, metrics, eval summary, telemetry, equity.png) is a
symbolic link out of outputs/ is opened, listed, compared and downloaded over the page's own API routes; the
outside file's marker must never come back, and the page must name the refused file in one line.
Item 2: ``tradelab ui --outputs O`` (the real CLI, in a subprocess) starts over a folder full of broken
entries — linked run directories and groups, bad YAML and JSON, a config that is a list, a truncated metrics
line, a folder that holds no run — lists the good runs and notes each bad entry.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import httpx
import pandas as pd
import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from tradelab_jax import runs
from tradelab_jax.errors import UserError
from tradelab_jax.ui import forms, results
from tradelab_jax.ui.jobs import JobQueue

from .runs_factory import make_run

SECRET = "TOPSECRET-7f3a"  # what every outside file holds; no response may carry it
GOOD = "20251126T110000Z_good"
LINKED = {  # run id -> the contract file that is a link out of outputs/
    "20251126T120000Z_cfg": runs.CONFIG_FILE,
    "20251126T120001Z_status": runs.STATUS_FILE,
    "20251126T120002Z_metrics": runs.METRICS_FILE,
    "20251126T120003Z_eval": runs.EVAL_FILE,
    "20251126T120004Z_telemetry": runs.TELEMETRY_FILE,
    "20251126T120005Z_png": runs.EQUITY_FILE,
}


def _outside_files(where: Path) -> dict[str, Path]:
    """One outside file per contract file, each well-formed for its kind, so only the link stops it."""
    where.mkdir(parents=True)
    files = {
        runs.CONFIG_FILE: f"seed: 1\nrun: {{tag: {SECRET}}}\ndata: {{id: {SECRET}}}\n",
        runs.STATUS_FILE: json.dumps({"status": "failed", "error": SECRET, "started_at": SECRET}),
        runs.METRICS_FILE: json.dumps({"update": 1, "env_steps": 7, "loss": 1.0, SECRET: 1}) + "\n",
        runs.EVAL_FILE: json.dumps({"run": {"dataset_id": SECRET}, "splits": {"test": {"agent": {
            "total_return": 0.123456, "sharpe": 9.87, SECRET: 1}}}}),
        runs.EQUITY_FILE: "\x89PNG " + SECRET,
    }
    out = {}
    for name, text in files.items():
        out[name] = where / name
        out[name].write_text(text)
    telemetry = where / runs.TELEMETRY_FILE
    frame = {"split": ["test"] * 2, "policy": ["agent"] * 2, "ts": [1, 2], "equity": [1.0, 2.0], "t": [0, 1],
             "filled": [True, True], "close": [1.0, 1.0], SECRET: [1, 1]}  # fmt: skip
    pd.DataFrame(frame).to_parquet(telemetry)
    out[runs.TELEMETRY_FILE] = telemetry
    return out


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def hostile(outputs: Path, tmp_path: Path):
    """The real server (in-process, loopback) over outputs/ with one run per contract file linked out."""
    from tradelab_jax.ui.app import CSS, build_app

    outside = _outside_files(tmp_path / "outside")
    make_run(outputs, GOOD)
    for run_id, name in LINKED.items():
        d = make_run(outputs, run_id)
        (d / name).unlink(missing_ok=True)
        os.symlink(outside[name], d / name)
    choices = forms.Choices(datasets=(forms.Dataset("binance_btcusdt_1m", "BTC"),), feature_sets=("default",))
    demo = build_app(outputs, JobQueue(outputs), choices)
    port = _free_port()
    demo.queue().launch(server_name="127.0.0.1", server_port=port, allowed_paths=[], prevent_thread_lock=True,
                        quiet=True, css=CSS)  # fmt: skip
    url = f"http://127.0.0.1:{port}/"
    yield url, Client(url, verbose=False, download_files=str(tmp_path / "downloads")), outside, outputs
    demo.close()


def _text(value) -> str:
    """Everything a route returned, as text (downloaded files read back), to search for the marker."""
    out = json.dumps(value, default=str)
    for v in value if isinstance(value, list | tuple) else [value]:
        if isinstance(v, str) and os.path.isfile(v):
            out += Path(v).read_bytes().decode("latin-1")
    return out


def _md(text: str) -> str:
    return text.replace("_", "\\_")  # how the page's Markdown writes an id or a file name


def test_no_route_serves_a_file_linked_out_of_outputs(hostile):
    url, client, outside, outputs = hostile
    for run_id, name in LINKED.items():
        view = client.predict(run_id, "test", api_name="/on_open")
        assert SECRET not in _text(view), (run_id, name)
        note = view[0]
        assert f"{_md(run_id)}/{_md(name)} is a symbolic link out of its run directory" in note, note
        assert note.count("\n") == 0, note  # one line per refused file; one refused file here
        # the download route refuses the same file (no file comes back) and serves the run's others
        assert client.predict(run_id, name, api_name="/on_download") is None
        for other in set(results.DOWNLOADABLE) - {name, "console.log"}:
            got, there = client.predict(run_id, other, api_name="/on_download"), outputs / run_id / other
            assert (Path(got).read_bytes() == there.read_bytes()) if there.exists() else got is None, other
    # the good run still opens and downloads
    view = client.predict(GOOD, "test", api_name="/on_open")
    assert view[0] == "" and "seed: 0" in view[-1]
    got = client.predict(GOOD, runs.CONFIG_FILE, api_name="/on_download")
    assert "seed: 0" in Path(got).read_text()
    # compare: the linked runs' values are not read, one note per refused file
    every = [GOOD, *LINKED]
    note, table, verdicts, plot = client.predict(every, "test", api_name="/on_compare")
    assert SECRET not in _text([note, table, verdicts, plot])
    assert len(note.split("\n")) == len(LINKED), note
    for run_id, name in LINKED.items():
        assert f"{_md(run_id)}/{_md(name)}" in note, note
    # the runs listing (page load and Refresh) lists every run, reads none of the links, names each
    for listing in (client.predict(api_name="/on_load"),
                    client.predict("", "all", "started", True, None, api_name="/on_refresh")):  # fmt: skip
        assert SECRET not in _text(listing)
        table, notes = listing[0], listing[2]
        assert {row[0] for row in table["data"]} == {GOOD, *LINKED}
        assert len(notes.split("\n")) == len(LINKED), notes
        for run_id, name in LINKED.items():
            assert f"{_md(run_id)}/{_md(name)}" in notes, notes
    # Gradio's own file route serves none of them either
    for path in outside.values():
        r = httpx.get(url + "gradio_api/file=" + str(path), timeout=10)
        assert r.status_code == 403 and SECRET not in r.text


def _broken_outputs(root: Path, outside: Path) -> dict[str, str]:
    """Good runs and every kind of broken entry; returns bad entry -> a phrase its note must hold."""
    make_run(root, GOOD)
    make_run(root, "multirun/20251126T100000Z_grid/0")
    make_run(root, "multirun/20251126T100000Z_grid/1")
    make_run(outside, "20250101T000000Z_elsewhere", tag=SECRET)
    make_run(outside, "group/0", tag=SECRET)
    os.symlink(outside / "20250101T000000Z_elsewhere", root / "20251126T120000Z_linkedrun")
    os.symlink(outside / "group", root / "multirun" / "20251126T120000Z_linkedgroup")
    os.symlink(root / GOOD, root / "20251126T120001Z_alias")  # a link inside outputs is not followed either
    bad = {
        "20251126T130000Z_listcfg": "holds a list, not a mapping",
        "20251126T130001Z_scalarcfg": "holds a int, not a mapping",
        "20251126T130002Z_badyaml": "is not valid YAML",
        "20251126T130003Z_badstatus": "is not valid JSON",
        "20251126T130004Z_liststatus": "holds a list, not a mapping",
        "20251126T130005Z_badeval": "is not valid JSON",
        "20251126T130006Z_binarycfg": "is not UTF-8 text",
    }
    contents = {"listcfg": (runs.CONFIG_FILE, b"- a\n- b\n"), "scalarcfg": (runs.CONFIG_FILE, b"3\n"),
                "badyaml": (runs.CONFIG_FILE, b"env: [risk\n"),
                "badstatus": (runs.STATUS_FILE, b'{"status": '),
                "liststatus": (runs.STATUS_FILE, b"[1, 2]"), "badeval": (runs.EVAL_FILE, b"{nope"),
                "binarycfg": (runs.CONFIG_FILE, b"\xff\xfe\x00bad")}  # fmt: skip
    for run_id in bad:
        d = make_run(root, run_id)
        name, data = contents[run_id.split("_", 1)[1]]
        (d / name).write_bytes(data)
    with open(make_run(root, "20251126T130007Z_truncmetrics") / runs.METRICS_FILE, "a") as f:
        f.write('{"update": 3, "env_st')  # cut mid-line; the run lists, its view notes the line
    (root / "notes").mkdir()
    (root / "notes" / "readme.txt").write_text("not a run")
    (root / "multirun" / "20251126T100000Z_grid" / "junk").mkdir()
    return bad | {
        "20251126T120000Z_linkedrun": "symbolic link, not followed",
        "multirun/20251126T120000Z_linkedgroup": "symbolic link, not followed",
        "20251126T120001Z_alias": "symbolic link, not followed",
        "notes": "no run directory",
        "multirun/20251126T100000Z_grid/junk": "no run directory",
    }


def test_the_cli_ui_starts_over_an_outputs_folder_full_of_broken_entries(tmp_path, wait_for):
    root, outside = tmp_path / "outputs", tmp_path / "outside"
    bad = _broken_outputs(root, outside)
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradelab_jax.cli", "ui", "--outputs", str(root), "--port", str(port),
         "--no-worker"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}/"

    def serving() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"tradelab ui exited {proc.returncode}:\n{proc.stdout.read()}")
        try:
            return httpx.get(url + "config", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    try:
        wait_for(serving, "tradelab ui to serve its page", 60, poll_s=0.5)
        client = Client(url, verbose=False)
        table, _pick, notes, *_ = client.predict(api_name="/on_load")
        listed = {row[0] for row in table["data"]}
        good = {GOOD, "multirun/20251126T100000Z_grid/0", "multirun/20251126T100000Z_grid/1",
                "20251126T130007Z_truncmetrics"}  # fmt: skip
        files_bad = {k for k in bad if k.startswith("20251126T13")}
        assert listed == good | files_bad  # a run with a bad file is listed; links and non-runs are not
        assert SECRET not in json.dumps(table) + notes
        lines = notes.split("\n")
        assert len(lines) == len(bad), notes
        for entry, why in bad.items():
            hits = [ln for ln in lines if f"/{_md(entry)}/" in ln or ln.startswith(f"⚠ {_md(entry)}:")]
            assert len(hits) == 1 and why in hits[0], (entry, why, notes)
        # every listed run opens (a note for what it could not read), none raises
        for run_id in sorted(listed):
            view = client.predict(run_id, "test", api_name="/on_open")
            assert (view[0] == "") == (run_id in good - {"20251126T130007Z_truncmetrics"}), (run_id, view[0])
        view = client.predict("20251126T130007Z_truncmetrics", "test", api_name="/on_open")
        assert "1 line(s) not read" in view[0]
        # a linked run is refused by id too: by the page's run picker, and by resolve_run (?run=<id> links)
        with pytest.raises(AppError, match="not in the list of choices"):
            client.predict("20251126T120001Z_alias", "test", api_name="/on_open")
        with pytest.raises(UserError, match="through a symbolic link; links in outputs/ are not followed"):
            results.resolve_run(root, "20251126T120001Z_alias")
        assert proc.poll() is None
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_contract_readers_refuse_links_out_and_foreign_content(tmp_path):
    d, outside = make_run(tmp_path, "20251126T110000Z_r"), tmp_path / "outside.json"
    outside.write_text('{"status": "done"}')
    (d / runs.STATUS_FILE).unlink()
    os.symlink(outside, d / runs.STATUS_FILE)
    with pytest.raises(runs.RunFileError, match=r"status\.json is a symbolic link out of its run directory"):
        runs.read_status(d)
    assert runs.run_state(d) == runs.UNKNOWN
    (d / runs.STATUS_FILE).unlink()
    os.symlink(d / runs.CONFIG_FILE, d / runs.STATUS_FILE)  # a link inside the run is read (as YAML-as-JSON)
    with pytest.raises(runs.RunFileError, match=r"status\.json is not valid JSON"):
        runs.read_status(d)
    for text, why in (("- a\n", "holds a list"), ("", "holds nothing"), ("a: [\n", "is not valid YAML")):
        (d / runs.CONFIG_FILE).write_text(text)
        with pytest.raises(runs.RunFileError, match=why):
            runs.read_config(d)
    good = runs.read_metrics(d)
    with open(d / runs.METRICS_FILE, "a") as f:
        f.write("[1, 2]\n3\n{\"update\": 9, \"env_st")
    assert runs.read_metrics_counted(d) == (good, 3) and len(good) == 2


def test_scan_runs_names_what_it_passes_over(tmp_path):
    root = tmp_path / "outputs"
    make_run(root, "a_run")
    make_run(tmp_path / "elsewhere", "x_run")
    os.symlink(tmp_path / "elsewhere" / "x_run", root / "b_link")
    (root / "c_empty" / "deeper").mkdir(parents=True)
    found, skipped = runs.scan_runs(root)
    assert found == [root / "a_run"] == runs.find_runs(root)
    assert [(s.path.relative_to(root).as_posix(), s.why) for s in skipped] == [
        ("b_link", "a symbolic link, not followed"), ("c_empty/deeper", "no run directory (no status.json)")]
