"""Every command that writes checks its output location first: a file where a folder must be, or a folder
that cannot be created under a file, is one ``error:`` sentence naming the flag, exit 2, no traceback, and
nothing written (``paths.check_output_dir``, the one rule).

The commands run through ``tradelab_jax.cli.main`` as a user's shell would reach them; ``train`` runs in a
subprocess (tests never wrap an in-process ``train.main()`` in capsys).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tradelab_jax import cli

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"

# (command line with {bad} for the output location, the flag the sentence must name)
COMMANDS = [
    (["episode", "--policy", "flat", "--out", "{bad}"], "--out"),
    (["data", "import", "{csv}", "--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1m",
      "--lake", "{bad}"], "--lake"),
    (["data", "ingest", "--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1m",
      "--since", "2025-01-01", "--api-url", "http://127.0.0.1:9", "--lake", "{bad}"], "--lake"),
    (["data", "resample", "binance_btcusdt_1m", "--to", "1h", "--lake", "{bad}"], "--lake"),
    (["data", "trades-to-bars", "{csv}", "--exchange", "kraken", "--symbol", "BTC/USD", "--lake", "{bad}"],
     "--lake"),
    (["ui", "--outputs", "{bad}"], "--outputs"),
    (["archive", "pull", "some_run", "--bucket", "tradelab-test", "--endpoint-url", "http://127.0.0.1:9",
      "--outputs", "{bad}"], "--outputs"),
    (["parity", "--workloads", "features", "--out", "{bad}"], "--out"),
    (["check", "canary", "--out", "{bad}"], "--out"),
    (["data", "stream", "--exchange", "binance", "--symbol", "BTC/USDT", "--timeframe", "1m",
      "--ws-url", "ws://127.0.0.1:9", "--rest-url", "http://127.0.0.1:9", "--lake", "{bad}"], "--lake"),
    (["data", "retain", "binance_btcusdt_1m", "--keep", "90d", "--lake", "{bad}"], "--lake"),
]


@pytest.fixture
def places(tmp_path):
    """``{"file": a regular file, "under_file": a path below it}``, and a small CSV input."""
    a_file = tmp_path / "notes.md"
    a_file.write_text("a file, not a folder\n")
    csv = tmp_path / "bars.csv"
    csv.write_text("ts,open,high,low,close,volume\n1735689600000,1,1,1,1,1\n")
    return {"file": a_file, "under_file": a_file / "x"}, csv


def _snapshot(root: Path) -> dict[str, int]:
    return {str(p.relative_to(root)): p.stat().st_size for p in root.rglob("*")}


@pytest.mark.parametrize("kind", ["file", "under_file"])
@pytest.mark.parametrize(("argv", "flag"), COMMANDS, ids=[" ".join(c[0][:2]) for c in COMMANDS])
def test_a_command_refuses_an_unusable_output_location(argv, flag, kind, places, tmp_path, capsys,
                                                       monkeypatch):
    monkeypatch.setenv("TRADELAB_OUTPUTS", str(tmp_path / "outputs"))
    bad_places, csv = places
    bad = bad_places[kind]
    before = _snapshot(tmp_path)
    line = [a.replace("{bad}", str(bad)).replace("{csv}", str(csv)) for a in argv]
    code = cli.main(line)
    out = capsys.readouterr()
    assert code == 2, out
    [error] = [x for x in out.err.splitlines() if x.strip()]
    assert error.startswith("error: ") and flag in error and str(bad) in error
    assert ("is not a folder" in error) if kind == "file" else ("cannot be created" in error)
    assert "Traceback" not in out.err
    assert _snapshot(tmp_path) == before  # nothing written anywhere below the test's folder
    assert bad_places["file"].read_text() == "a file, not a folder\n"


def test_train_refuses_an_unusable_outputs_root(places, tmp_path):
    bad_places, _ = places
    cases = ((bad_places["file"], "is not a folder"), (bad_places["under_file"], "cannot be created"))
    for bad, needle in cases:
        proc = subprocess.run(
            [sys.executable, "-m", "tradelab_jax.cli", "train", f"run.outputs={bad}"],
            capture_output=True, text=True, cwd=ROOT, timeout=300,
            env={**os.environ, "TRADELAB_OUTPUTS": str(tmp_path / "outputs")},
        )
        assert proc.returncode == 2, proc.stderr
        [error] = [x for x in proc.stderr.splitlines() if x.strip()]
        assert error.startswith("error: run.outputs=") and needle in error
        assert "HYDRA_FULL_ERROR" not in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("sub", ["list", "prune"])
def test_runs_refuses_an_outputs_root_that_is_a_file(sub, places, capsys):
    bad_places, _ = places
    code = cli.main(["runs", sub, "--outputs", str(bad_places["file"])])
    err = capsys.readouterr().err
    [error] = [x for x in err.splitlines() if x.strip()]
    assert code == 2 and error.startswith("error: --outputs=") and "is not a folder" in error
