"""docs/run-directory.md says what the trainer writes: checks of the statements a reader relies on."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parent.parent / "docs" / "run-directory.md"


def _files_table_row(name: str) -> str:
    [row] = [line for line in DOC.read_text().splitlines() if line.startswith(f"| `{name}` |")]
    return row


def _section(title: str) -> str:
    """The section's text with its line breaks folded into spaces."""
    text = DOC.read_text()
    start = text.index(f"### {title}\n")
    end = text.find("\n### ", start + 1)
    return " ".join((text[start:] if end < 0 else text[start:end]).split())


def test_equity_png_is_one_split_in_the_table_and_its_section():
    """`training.evaluate.plot_equity` draws the test split, else the last evaluated one: not every split."""
    row, section = _files_table_row("equity.png"), _section("equity.png")
    for text in (row, section):
        assert "test split" in text and "last evaluated split" in text, text
    assert "per evaluation split" not in row


def test_eval_summary_documents_asset_return_and_bucket_indices():
    section = _section("eval_summary.json")
    assert "asset_return" in section and "RiskGuard" in section
    assert "terminated" in section
    assert re.search(r"bucket index 4", section)
    assert '"buy_and_hold": "bucket 1"' not in section
