"""docs/data.md's layout names every folder the code writes under a lake root."""

from __future__ import annotations

import re
from pathlib import Path

from tradelab_jax.data.journal import journal_path
from tradelab_jax.data.lake import Lake

DOC = Path(__file__).resolve().parents[2] / "docs" / "data.md"


def _layout_block() -> str:
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Layout", 1)[1]
    return re.search(r"```\n(.*?)```", section, re.S).group(1)


def test_the_layout_lists_every_folder_of_the_lake_root(tmp_path):
    lake = Lake(tmp_path)
    written = {
        lake.dataset_rel_dir("binance", "BTC/USDT", "1m", "x").split("/")[0],
        lake.manifest_path("x").parent.name,
        lake.provenance_path("x").parent.name,
        lake.lock_path("x").parent.name,
        journal_path(lake, "x").parent.name,  # the live stream's journal (data/stream.py)
    }
    listed = {m.group(1) for m in re.finditer(r"^  ([a-z_]+)/", _layout_block(), re.M)}
    assert written == {"lake", "manifests", "provenance", "locks", "journal"}
    assert written <= listed, f"docs/data.md's layout lacks {sorted(written - listed)}"
    assert "journal/<dataset_id>.jsonl" in _layout_block()
