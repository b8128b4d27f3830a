"""Retention: drop a dataset's old bars (``tradelab data retain``), plus the pieces ``tradelab runs prune``
shares with it (durations, the presets of ``conf/retention/``).

Why a retain can be killed at any instant: the kept bars are written with the lake's one writer
(:func:`tradelab_jax.data.lake.write_dataset`: the rewritten month goes beside the current files, the
manifest switches atomically, and only then are the old files removed), under the dataset's writer lock, so
the dataset is always its old version or its new one, whole; a kill leaves at most files the manifest does
not list (``data validate`` warns, the next write removes them). The shipped datasets of the repo's own
``data/`` are never touched.
"""

from __future__ import annotations

import datetime as _dt
import os
import re
import time
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradelab_jax.data.lake import Lake, parquet_bytes, read_bars, take, write_dataset
from tradelab_jax.data.schema import month_keys, ms_to_iso, parse_time
from tradelab_jax.errors import DataError, UserError
from tradelab_jax.paths import REPO_ROOT, conf_dir
from tradelab_jax.paths import read_preset as read_settings

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(s|m|h|d|w)\s*$")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86_400, "w": 604_800}
# The keys write_dataset sets itself; any other key of a manifest is carried over as it was.
_WRITTEN_KEYS = {
    "format", "id", "exchange", "symbol", "timeframe", "timeframe_ms", "columns", "first_ts", "last_ts",
    "first_bar", "last_bar", "rows", "expected_rows", "gaps", "unconfirmed_ts", "files", "provenance",
}  # fmt: skip


def parse_duration(text: Any, what: str) -> float:
    """``90d``, ``12h``, ``30m``, ``2w``, ``45s`` as seconds (m is minutes)."""
    match = _DURATION.match(str(text)) if text is not None else None
    if not match or float(match.group(1)) <= 0:
        raise UserError(f"invalid {what} {text!r}: give a positive duration such as 90d, 12h, 30m or 2w")
    return float(match.group(1)) * _UNIT_S[match.group(2)]


def shipped_datasets() -> set[str]:
    """The datasets the repo ships (each has a file in conf/data/)."""
    return {p.stem for p in (conf_dir() / "data").glob("*.yaml")}


def is_shipped(lake: Lake, dataset_id: str) -> bool:
    """A shipped dataset in the repo's own lake (``data/``): retention never touches it."""
    return lake.root.resolve() == (REPO_ROOT / "data").resolve() and dataset_id in shipped_datasets()


def read_preset(name_or_path: str | os.PathLike, section: str, keys: tuple[str, ...]) -> dict[str, Any]:
    """One section (``data`` or ``runs``) of a retention preset: a YAML file or a name of conf/retention/."""
    path, data = read_settings(name_or_path, "retention", "retention config")
    part = data.get(section) if isinstance(data, dict) else None
    if part is None:
        return {}
    if not isinstance(part, dict):
        raise UserError(f"retention config {path}: {section}: must be a mapping of settings")
    unknown = sorted(set(part) - set(keys))
    if unknown:
        raise UserError(
            f"retention config {path}: {section}: has unknown key(s) {', '.join(unknown)}; "
            f"valid keys: {', '.join(keys)}"
        )
    return part


# --------------------------------------------------------------------------------------------- retain


@dataclass(frozen=True)
class RetainPlan:
    """What ``data retain`` removes from one dataset (times UTC epoch ms, sizes in bytes)."""

    dataset_id: str
    cutoff_ms: int  # bars with an open time before this go
    bars_removed: int
    bars_kept: int
    months_removed: list[str]  # month files deleted whole
    month_rewritten: str | None  # the month cut in two, rewritten with its kept bars
    bytes_freed: int  # exact: the files' sizes now minus after

    def describe(self) -> str:
        if not self.bars_removed:
            return f"{self.dataset_id}: nothing before {ms_to_iso(self.cutoff_ms)}; nothing to remove"
        parts = (
            [f"{len(self.months_removed)} month file(s) {', '.join(self.months_removed)}"]
            if (self.months_removed)
            else []
        )
        if self.month_rewritten:
            parts.append(f"month {self.month_rewritten} rewritten with its kept bars")
        return (
            f"{self.dataset_id}: {self.bars_removed:,} bar(s) before {ms_to_iso(self.cutoff_ms)} "
            f"({'; '.join(parts)}), {self.bars_kept:,} kept, {self.bytes_freed:,} bytes freed"
        )


def _cutoff(keep: Any, before: Any, now_ms: int | None) -> int:
    if (keep is None) == (before is None):
        raise UserError("give exactly one of --keep (e.g. 90d) or --before (a date)")
    if before is not None:
        return parse_time(before, "--before")
    now = int(time.time() * 1000) if now_ms is None else int(now_ms)
    return now - int(parse_duration(keep, "--keep") * 1000)


def plan_retain(
    lake: Lake, dataset_id: str, *, keep: Any = None, before: Any = None, now_ms: int | None = None
) -> tuple[RetainPlan, dict, dict[str, np.ndarray]]:
    """The plan, the dataset's manifest and its kept bars; refuses a shipped dataset and an empty result."""
    if is_shipped(lake, dataset_id):
        raise UserError(
            f"dataset {dataset_id!r} is shipped with the repo (data/); retention never touches "
            "it (copy it to a lake of your own with --lake to trim a copy)"
        )
    manifest = lake.read_manifest(dataset_id)
    cutoff = _cutoff(keep, before, now_ms)
    tf_ms = int(manifest.get("timeframe_ms") or 0) or None
    if tf_ms:
        cutoff = -(-cutoff // tf_ms) * tf_ms  # whole bars only: a bar opening before the cutoff goes
    bars = read_bars(lake, manifest)
    kept_mask = bars["ts"] >= cutoff
    kept = take(bars, kept_mask)
    n_removed = int((~kept_mask).sum())
    if n_removed and not len(kept["ts"]):
        raise UserError(
            f"retaining {dataset_id!r} from {ms_to_iso(cutoff)} would remove all its "
            f"{len(bars['ts']):,} bars (last bar {manifest['last_bar']}); give a longer --keep or "
            "an earlier --before"
        )
    months_removed, rewritten, freed = [], None, 0
    kept_months = set(np.unique(month_keys(kept["ts"])).astype(str)) if len(kept["ts"]) else set()
    for entry in manifest["files"]:
        size = int(entry.get("bytes") or lake.file_path(entry["path"]).stat().st_size)
        if int(entry["last_ts"]) < cutoff:
            months_removed.append(entry["month"])
            freed += size
        elif int(entry["first_ts"]) < cutoff and entry["month"] in kept_months:
            rewritten = entry["month"]
            part = take(kept, month_keys(kept["ts"]).astype(str) == rewritten)
            freed += size - len(parquet_bytes(part))
    plan = RetainPlan(dataset_id, cutoff, n_removed, len(kept["ts"]), months_removed, rewritten, freed)
    return plan, manifest, kept


def _strays(lake: Lake, manifest: dict) -> bool:
    """Whether the dataset's folder holds files its manifest does not list (a killed writer's)."""
    listed = {f["path"] for f in manifest["files"]}
    folders = {p.rsplit("/", 1)[0] for p in listed}
    return any(
        f"{folder}/{child.name}" not in listed
        for folder in folders
        if lake.file_path(folder).is_dir()
        for child in lake.file_path(folder).iterdir()
    )


def retain(
    lake: Lake,
    dataset_id: str,
    *,
    keep: Any = None,
    before: Any = None,
    yes: bool = False,
    now_ms: int | None = None,
) -> RetainPlan:
    """Plan (dry run) or, with ``yes``, remove the bars before the cutoff (under the writer lock)."""
    if not yes:
        return plan_retain(lake, dataset_id, keep=keep, before=before, now_ms=now_ms)[0]
    with lake.writer(dataset_id, command="tradelab data retain"):
        plan, manifest, kept = plan_retain(lake, dataset_id, keep=keep, before=before, now_ms=now_ms)
        staged = {f["month"] for f in manifest["files"] if f["path"].rsplit("/", 1)[-1].startswith(".")}
        if not plan.bars_removed and not staged and not _strays(lake, manifest):
            return plan
        # A retain killed after its manifest switch left staged names and old files: finish that too.
        changed = ({plan.month_rewritten} if plan.month_rewritten else set()) | staged
        provenance = manifest.get("provenance") or {}
        text = (provenance.get("text") or f"# {dataset_id}\n").rstrip() + "\n"
        if plan.bars_removed:  # (only tidying: the provenance already says what was removed)
            note = (
                f"- `tradelab data retain` removed the {plan.bars_removed:,} bar(s) before "
                f"{ms_to_iso(plan.cutoff_ms)} on {_dt.datetime.now(_dt.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}."
            )
            heading = "## Retention"
            text = text.rstrip() + ("\n" if heading in text else f"\n\n{heading}\n\n") + note + "\n"
        try:
            write_dataset(
                lake, dataset_id=dataset_id, exchange=manifest["exchange"], symbol=manifest["symbol"],
                timeframe=manifest["timeframe"], bars=kept, provenance_text=text,
                sources=list(provenance.get("sources") or []),
                unconfirmed_ts=manifest.get("unconfirmed_ts") or [], previous=manifest,
                changed_months=changed,
                extra_fields={k: v for k, v in manifest.items() if k not in _WRITTEN_KEYS} or None,
            )  # fmt: skip
        except KeyError as err:
            raise DataError(f"manifest of {dataset_id!r} lacks {err}; run `tradelab data validate`") from None
        return plan
