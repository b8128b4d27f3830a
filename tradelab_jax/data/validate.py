"""Validation rules for bars, and the per-dataset report behind ``tradelab data validate``.

Errors (exit non-zero): a missing or unreadable file, a checksum that differs from the manifest, a wrong
column or dtype, NaN/inf, timestamps that are duplicated, decreasing or off the timeframe grid, OHLC
inconsistency (high < max(open, close), low > min(open, close), high < low), non-positive prices, negative
volume, and a manifest whose rows, range or gaps disagree with its files. Gaps themselves are warnings: real
exchanges have outages, so a gap is reported with its range and recorded in the manifest.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field

import numpy as np

from tradelab_jax.data.lake import (
    Lake,
    check_table_schema,
    concat,
    find_gaps,
    read_month_file,
    sha256_file,
)
from tradelab_jax.data.schema import BAR_COLUMNS, PRICE_COLUMNS, month_of, ms_to_iso, timeframe_ms
from tradelab_jax.errors import DataError, UserError


@dataclass
class Finding:
    level: str  # "error" | "warning" | "note" (a fact worth knowing, not a problem)
    check: str
    message: str


@dataclass
class Report:
    dataset_id: str
    findings: list[Finding] = field(default_factory=list)
    rows: int | None = None
    first_bar: str | None = None
    last_bar: str | None = None
    gaps: list[dict] = field(default_factory=list)
    files: int = 0

    @property
    def errors(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "error"]

    @property
    def warnings(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "warning"]

    @property
    def notes(self) -> list[Finding]:
        return [f for f in self.findings if f.level == "note"]

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def status(self) -> str:
        return "error" if self.errors else ("warning" if self.warnings else "ok")

    def add(self, level: str, check: str, message: str) -> None:
        self.findings.append(Finding(level, check, message))

    def to_json(self) -> dict:
        return {
            "dataset_id": self.dataset_id,
            "status": self.status,
            "rows": self.rows,
            "first_bar": self.first_bar,
            "last_bar": self.last_bar,
            "files": self.files,
            "gaps": self.gaps,
            "errors": [asdict(f) for f in self.errors],
            "warnings": [asdict(f) for f in self.warnings],
            "notes": [asdict(f) for f in self.notes],
        }


def _where(ts: np.ndarray, rows: np.ndarray, offset: int = 0) -> str:
    i = int(rows[0])
    stamp = ms_to_iso(int(ts[i])) if np.isfinite(ts[i]) else "?"
    return f"first at {stamp} (data row {i + offset + 1})"


def check_bars(bars: dict[str, np.ndarray], tf_ms: int) -> tuple[list[Finding], list[dict]]:
    """Every array-level rule on bars in storage order; returns findings and the gaps found."""
    findings: list[Finding] = []

    def err(check: str, message: str) -> None:
        findings.append(Finding("error", check, message))

    ts = bars["ts"]
    n = len(ts)
    if n == 0:
        err("rows", "there are no bars")
        return findings, []
    if ts.dtype != np.int64:
        err("dtype", f"column 'ts' has dtype {ts.dtype}, expected int64 epoch milliseconds")
        return findings, []
    for name, values in bars.items():
        if name == "ts":
            continue
        if values.dtype != np.float64:
            err("dtype", f"column {name!r} has dtype {values.dtype}, expected float64")
            continue
        bad = np.flatnonzero(~np.isfinite(values))
        if len(bad):
            kind = "NaN" if np.isnan(values[bad[0]]) else "infinite"
            err(
                "finite", f"column {name!r} has {len(bad)} NaN/infinite value(s), {_where(ts, bad)} is {kind}"
            )
    if findings:
        return findings, []
    step = np.diff(ts)
    dup = np.flatnonzero(step == 0)
    if len(dup):
        err("unique", f"{len(dup)} duplicate timestamp(s), {_where(ts, dup + 1)}")
    back = np.flatnonzero(step < 0)
    if len(back):
        err(
            "order",
            f"timestamps are not increasing at {len(back)} place(s), {_where(ts, back + 1)} comes after "
            f"{ms_to_iso(int(ts[back[0]]))}",
        )
    off = np.flatnonzero(ts % tf_ms != 0)
    if len(off):
        err("grid", f"{len(off)} timestamp(s) are not on the {tf_ms // 1000}s grid, {_where(ts, off)}")
    o, h, lo, c, v = (bars[k] for k in ("open", "high", "low", "close", "volume"))
    rules = [
        ("ohlc", h < np.maximum(o, c), "bar(s) have high < max(open, close)"),
        ("ohlc", lo > np.minimum(o, c), "bar(s) have low > min(open, close)"),
        ("ohlc", h < lo, "bar(s) have high < low"),
        ("prices", np.any([bars[k] <= 0 for k in PRICE_COLUMNS], axis=0), "bar(s) have a price <= 0"),
        ("volume", v < 0, "bar(s) have volume < 0"),
    ]
    for name, values in bars.items():
        if name not in BAR_COLUMNS and name.endswith("volume"):
            rules.append(("volume", values < 0, f"bar(s) have {name} < 0"))
    for check, mask, text in rules:
        bad = np.flatnonzero(mask)
        if len(bad):
            err(check, f"{len(bad)} {text}, {_where(ts, bad)}")
    gaps = find_gaps(ts, tf_ms) if not (len(dup) or len(back)) else []
    if len(step) and not len(back) and not len(dup):
        usual = int(np.median(step))
        if usual != tf_ms and usual % tf_ms == 0:
            err(
                "timeframe",
                f"bars are usually {usual // 1000}s apart, not {tf_ms // 1000}s: the data looks like a "
                "different timeframe",
            )
    return findings, gaps


def validate_dataset(lake: Lake, dataset_id: str) -> Report:
    """Check one dataset's manifest, files, checksums and bars."""
    report = Report(dataset_id)
    try:
        manifest = lake.read_manifest(dataset_id)
    except UserError as exc:
        report.add("error", "manifest", str(exc))
        return report
    try:
        tf_ms = timeframe_ms(manifest["timeframe"])
        columns = [c["name"] for c in manifest["columns"]]
    except (UserError, KeyError, TypeError) as exc:
        report.add(
            "error", "manifest", f"manifest of {dataset_id!r} has an invalid timeframe or columns ({exc})"
        )
        return report
    report.files = len(manifest["files"])
    if not manifest["files"]:
        report.add("error", "files", f"manifest of {dataset_id!r} lists no files")
    parts = []
    for entry in manifest["files"]:
        rel = entry["path"]
        try:
            path = lake.file_path(rel)
        except UserError as exc:
            report.add("error", "files", str(exc))
            continue
        if not path.is_file():
            report.add("error", "files", f"file {rel} listed in the manifest does not exist")
            continue
        digest = sha256_file(path)
        if digest != entry.get("sha256"):
            report.add(
                "error",
                "checksum",
                f"file {rel} has sha256 {digest[:12]}…, "
                f"the manifest records {str(entry.get('sha256'))[:12]}…",
            )
        try:
            part = read_month_file(path)
            check_table_schema_names(part, columns, rel)
        except DataError as exc:
            report.add("error", "schema", str(exc).replace(str(lake.root) + "/", ""))
            continue
        if len(part["ts"]) != entry.get("rows"):
            report.add(
                "error",
                "rows",
                f"file {rel} holds {len(part['ts'])} rows, the manifest says {entry.get('rows')}",
            )
        if (
            len(part["ts"])
            and entry.get("month")
            and (
                month_of(int(part["ts"].min())) != entry["month"]
                or month_of(int(part["ts"].max())) != entry["month"]
            )
        ):
            report.add("error", "partition", f"file {rel} holds bars outside its month {entry['month']}")
        parts.append(part)
    _report_stray_files(lake, manifest, report)
    if not parts:
        return report
    try:
        bars = concat(parts, columns)
    except (KeyError, ValueError):
        report.add("error", "schema", "the dataset's files do not share one set of columns")
        return report
    file_errors = bool(report.errors)
    findings, gaps = check_bars(bars, tf_ms)
    if file_errors:
        gaps = []  # unreadable or missing files would show up as gaps; they are already reported
    report.findings.extend(findings)
    ts = bars["ts"]
    report.rows = len(ts)
    if len(ts):
        report.first_bar, report.last_bar = ms_to_iso(int(ts[0])), ms_to_iso(int(ts[-1]))
    report.gaps = gaps
    if gaps:
        report.add("warning", "gaps", describe_gaps(gaps))
    if report.errors:
        return report
    _compare_manifest(manifest, bars, gaps, report)
    unconfirmed = manifest.get("unconfirmed_ts") or []
    if unconfirmed:
        shown = ", ".join(ms_to_iso(int(t)) for t in unconfirmed[:3]) + (" …" if len(unconfirmed) > 3 else "")
        report.add(
            "note",
            "final",
            f"{len(unconfirmed)} bar(s) may not be final ({shown}): the source may have ended while the "
            "candle was still forming (see the provenance)",
        )
    return report


def describe_gaps(gaps: list[dict], show: int = 3) -> str:
    """``2 gap(s), 75 missing bar(s): 2025-06-01T00:00:00Z → 2025-06-01T00:14:00Z (15), ...``."""
    missing = sum(g["missing_bars"] for g in gaps)
    shown = ", ".join(f"{g['from']} → {g['to']} ({g['missing_bars']})" for g in gaps[:show])
    more = f", and {len(gaps) - show} more" if len(gaps) > show else ""
    return f"{len(gaps)} gap(s), {missing} missing bar(s): {shown}{more}"


def check_table_schema_names(part: dict, columns: list[str], rel: str) -> None:
    if list(part) != columns:
        raise DataError(f"file {rel} has columns {list(part)}, the manifest lists {columns}")


def _compare_manifest(manifest: dict, bars: dict, gaps: list[dict], report: Report) -> None:
    ts = bars["ts"]
    expect = {
        "rows": len(ts),
        "first_ts": int(ts[0]),
        "last_ts": int(ts[-1]),
    }
    for key, actual in expect.items():
        if manifest.get(key) != actual:
            report.add(
                "error",
                "manifest",
                f"manifest field {key!r} is {manifest.get(key)!r}, the files give {actual}",
            )
    recorded = [(g.get("from_ts"), g.get("to_ts"), g.get("missing_bars")) for g in manifest.get("gaps", [])]
    actual_gaps = [(g["from_ts"], g["to_ts"], g["missing_bars"]) for g in gaps]
    if recorded != actual_gaps:
        report.add(
            "error",
            "manifest",
            f"manifest records {len(recorded)} gap(s), the files have {len(actual_gaps)}; "
            "the manifest is out of date",
        )


def _report_stray_files(lake: Lake, manifest: dict, report: Report) -> None:
    listed = {e["path"] for e in manifest["files"]}
    folders = {e["path"].rsplit("/", 1)[0] for e in manifest["files"] if "/" in e["path"]}
    for folder in folders:
        try:
            path = lake.file_path(folder)
        except UserError:
            continue
        if not path.is_dir():
            continue
        for child in sorted(path.iterdir()):
            rel = f"{folder}/{child.name}"
            if rel not in listed:
                report.add("warning", "files", f"file {rel} is in the dataset folder but not in its manifest")


def validate_all(lake: Lake, ids: list[str] | None = None) -> list[Report]:
    return [validate_dataset(lake, i) for i in (ids if ids is not None else lake.ids())]


def format_reports(reports: list[Report]) -> str:
    """A readable table: one line per dataset, then its errors and warnings indented below."""
    if not reports:
        return "no datasets found"
    header = ("dataset", "status", "rows", "first bar", "last bar", "gaps", "errors", "warnings")
    rows = [
        (
            r.dataset_id,
            r.status.upper(),
            f"{r.rows:,}" if r.rows is not None else "-",
            r.first_bar or "-",
            r.last_bar or "-",
            str(len(r.gaps)),
            str(len(r.errors)),
            str(len(r.warnings)),
        )
        for r in reports
    ]
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True)).rstrip()]
    for report, row in zip(reports, rows, strict=True):
        lines.append("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
        for f in report.errors + report.warnings + report.notes:
            lines.append(f"    {f.level.upper():7} [{f.check}] {f.message}")
    failed = sum(1 for r in reports if not r.ok)
    lines.append("")
    lines.append(f"{len(reports)} dataset(s) checked, {failed} with errors")
    return "\n".join(lines)


def reports_json(reports: list[Report]) -> str:
    return json.dumps(
        {"datasets": [r.to_json() for r in reports], "ok": all(r.ok for r in reports)}, indent=2
    )


__all__ = [
    "Finding",
    "Report",
    "check_bars",
    "check_table_schema",
    "format_reports",
    "reports_json",
    "validate_all",
    "validate_dataset",
]
