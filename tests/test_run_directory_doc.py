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


def _quoted(text: str) -> set[str]:
    return set(re.findall(r"`([a-z]+)`", text))


def test_the_documented_states_and_resume_rule_are_runs_own():
    from tradelab_jax import runs

    section = _section("status.json")
    lifecycle = re.search(r"`status`: (.*?)\. A resume", section).group(1)
    assert _quoted(lifecycle) == set(runs.STATES)
    derived = re.search(r"\(`runs.effective_state`\): an active status \((.*?)\) whose .*? reads `([a-z]+)`",
                        section)
    assert _quoted(derived.group(1)) == set(runs.ACTIVE_STATES) and derived.group(2) == runs.INTERRUPTED
    resumes = re.search(r"must be (.*?), with", section).group(1)
    assert _quoted(resumes) == set(runs.RESUMABLE_STATES)
    for name in ("resumable", "resume_root", "holds_run", "find_runs", "iter_runs", "is_sweep_dir"):
        assert f"runs.{name}" in section and callable(getattr(runs, name))
