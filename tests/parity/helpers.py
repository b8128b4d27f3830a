"""Shared settings for the parity tests."""

from __future__ import annotations

import json
from pathlib import Path

from tradelab_jax.parity import REPORT_FILE

# The files every finished trading run directory holds (docs/run-directory.md).
CONTRACT = ("config.yaml", "status.json", "metrics.jsonl", "checkpoints", "eval_summary.json")


def read_report(out: Path) -> dict:
    return json.loads((out / REPORT_FILE).read_text(encoding="utf-8"))


def rows_by_name(report: dict) -> dict[str, dict]:
    return {f"{r['group']}:{r['name']}": r for r in report["rows"]}
