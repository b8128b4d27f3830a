"""Exit codes through the real `tradelab` CLI: an unknown dataset is a data error (3) in every command that
reads the lake, an input error is 2, and docs/data.md's table says so with errors.py's own codes."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tradelab_jax import cli, errors

DOC = Path(__file__).resolve().parent.parent / "docs" / "data.md"


@pytest.mark.parametrize(("argv", "error_line"), [
    (["train", "data.id=no_such_dataset", "run.progress=false"], True),
    (["episode", "--dataset", "no_such_dataset", "--policy", "flat", "--out", "{tmp}/ep"], True),
    (["data", "validate", "no_such_dataset"], False),  # its report's ERROR row, then exit 3
])
def test_an_unknown_dataset_exits_3_with_one_sentence_naming_the_known_ones(argv, error_line, tmp_path,
                                                                           capsys, monkeypatch):
    monkeypatch.delenv("TRADELAB_LAKE", raising=False)
    monkeypatch.setenv("TRADELAB_OUTPUTS", str(tmp_path / "outputs"))
    assert cli.main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == errors.DataError.exit_code == 3
    captured = capsys.readouterr()
    said = captured.err if error_line else captured.out
    [line] = [ln for ln in said.splitlines() if "no_such_dataset' in lake" in ln]
    assert line.startswith("error: no dataset 'no_such_dataset' in lake " if error_line else "    ERROR ")
    assert "binance_btcusdt_1m_2025-10" in line  # the known datasets
    if error_line:
        assert captured.err.strip() == line


def test_an_input_error_exits_2(tmp_path, capsys):
    assert cli.main(["episode", "--dataset", "binance_btcusdt_1m_2025-10", "--episode-length", "0",
                     "--out", str(tmp_path / "ep")]) == errors.UserError.exit_code == 2
    assert capsys.readouterr().err.startswith("error: invalid --episode-length 0")


def test_the_docs_exit_code_table_is_errors_py():
    rows = dict(re.findall(r"^\| (\d) \| `(\w+)` \|", DOC.read_text(encoding="utf-8"), re.M))
    assert rows == {str(cls.exit_code): cls.__name__
                    for cls in (errors.UserError, errors.DataError, errors.DiskFullError)}
    assert re.search(r"^\| 3 \| `DataError` \| the data: an unknown dataset id", DOC.read_text(), re.M)
