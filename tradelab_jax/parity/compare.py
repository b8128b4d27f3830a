"""Comparing two results quantity by quantity: max absolute / relative difference against a tolerance.

Pure numpy (no JAX), so the run-directory comparison can run anywhere. A quantity is ``discrete`` (bools,
counts, signs, bar indices: must be equal element for element) or ``continuous`` (floats: within
``atol + rtol * |reference|`` element-wise, the ``numpy.isclose`` rule). NaN must meet NaN and infinities
must meet equal infinities; anything else is a mismatch.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True)
class Tolerance:
    """``|a - b| <= atol + rtol * |b|`` element-wise (``b`` the reference); ``exact`` demands equal bits."""

    atol: float = 0.0
    rtol: float = 0.0
    exact: bool = False

    @staticmethod
    def bits() -> Tolerance:
        return Tolerance(exact=True)

    def describe(self) -> str:
        if self.exact:
            return "bit-identical"
        if self.atol == 0.0 and self.rtol == 0.0:
            return "equal"
        return f"atol {self.atol:.0e} rtol {self.rtol:.0e}"


@dataclass
class Row:
    """One compared quantity: the report's line."""

    group: str  # features | rollouts | training | eval | run
    name: str
    kind: str  # discrete | continuous | text
    n: int
    max_abs: float | None
    max_rel: float | None
    mismatches: int
    tolerance: str
    ok: bool
    note: str = ""

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        for key in ("max_abs", "max_rel"):
            v = out[key]
            out[key] = None if v is None or not math.isfinite(v) else v
        return out


def _as_float(x: Any) -> np.ndarray:
    arr = np.asarray(x)
    if arr.dtype == object:
        flat = [np.nan if v is None else v for v in arr.ravel()]
        arr = np.asarray(flat, dtype=np.float64).reshape(arr.shape)
    return arr.astype(np.float64)


def max_differences(a: Any, b: Any) -> tuple[float, float]:
    """``(max |a - b|, max relative difference)`` over the elements where both are finite.

    The relative difference divides by ``max(|b|, 1e-6 * max|b|)``: near-zero reference values (a z-score
    crossing zero) would otherwise make it meaningless, while the scale floor keeps it a fraction of the
    quantity's own magnitude. An all-zero reference has no magnitude; there the absolute difference is used.
    """
    a, b = _as_float(a), _as_float(b)
    both = np.isfinite(a) & np.isfinite(b)
    if not both.any():
        return 0.0, 0.0
    d = np.abs(a[both] - b[both])
    ref = np.abs(b[both])
    # An all-zero reference has no scale: the absolute difference stands in for the relative one.
    floor = 1e-6 * float(ref.max()) if ref.max() > 0 else 1.0
    return float(d.max()), float((d / np.maximum(ref, floor)).max())


def count_mismatches(a: Any, b: Any, tol: Tolerance) -> int:
    """Elements outside ``tol`` (NaN/inf placement counts as a mismatch)."""
    a, b = np.asarray(a), np.asarray(b)
    if tol.exact:
        if a.dtype.kind == "f" and b.dtype.kind == "f" and a.dtype == b.dtype:
            ai = a.view(np.dtype(f"u{a.dtype.itemsize}"))
            bi = b.view(np.dtype(f"u{b.dtype.itemsize}"))
            same = (ai == bi) | (np.isnan(a) & np.isnan(b))
            return int((~same).sum())
        return int((~((a == b) | (_isnan(a) & _isnan(b)))).sum())
    af, bf = np.atleast_1d(_as_float(a)), np.atleast_1d(_as_float(b))
    nan_a, nan_b = np.isnan(af), np.isnan(bf)
    inf_a, inf_b = np.isinf(af), np.isinf(bf)
    bad = (nan_a != nan_b) | (inf_a != inf_b) | (inf_a & inf_b & (af != bf))
    both = np.isfinite(af) & np.isfinite(bf)
    close = np.abs(af[both] - bf[both]) <= tol.atol + tol.rtol * np.abs(bf[both])
    bad[both] |= ~close
    return int(bad.sum())


def _isnan(x: np.ndarray) -> np.ndarray:
    return np.isnan(x) if x.dtype.kind in "fc" else np.zeros(x.shape, bool)


def compare_arrays(group: str, name: str, a: Any, b: Any, tol: Tolerance, *, discrete: bool = False,
                   note: str = "", gated: bool = True) -> Row:
    """Compare ``a`` (the result under test) with ``b`` (the reference).

    A quantity that is not ``gated`` is reported (its differences and mismatches) but never fails.
    """
    a, b = np.asarray(a), np.asarray(b)
    kind = "discrete" if discrete or (a.dtype.kind in "biu" and b.dtype.kind in "biu") else "continuous"
    if a.shape != b.shape:
        return Row(group, name, kind, int(max(a.size, b.size)), None, None, int(max(a.size, b.size)),
                   tol.describe() if kind == "continuous" else "equal", False,
                   note or f"shapes differ: {a.shape} vs {b.shape}")
    if kind == "discrete":
        mism = count_mismatches(a, b, Tolerance.bits() if tol.exact else Tolerance())
        max_abs, _ = max_differences(a, b) if a.size else (0.0, 0.0)
        return Row(group, name, kind, int(a.size), max_abs, None, mism,
                   "bit-identical" if tol.exact else "equal", mism == 0, note)
    mism = count_mismatches(a, b, tol)
    max_abs, max_rel = max_differences(a, b) if a.size else (0.0, 0.0)
    if not gated:
        return Row(group, name, kind, int(a.size), max_abs, max_rel, mism, "report only", True, note)
    return Row(group, name, kind, int(a.size), max_abs, max_rel, mism, tol.describe(), mism == 0, note)


def compare_text(group: str, name: str, a: Any, b: Any, note: str = "") -> Row:
    same = a == b
    return Row(group, name, "text", 1, None, None, 0 if same else 1, "equal", same,
               note or ("" if same else f"{a!r} vs {b!r}"))


def missing_row(group: str, name: str, where: str) -> Row:
    return Row(group, name, "text", 0, None, None, 1, "present", False, f"missing in {where}")


@dataclass
class Report:
    """Every compared quantity of one parity check, plus what was compared with what."""

    mode: str  # backends | run_dir
    subject: str  # what is under test, e.g. "gpu float32" or a run directory
    reference: str  # e.g. "cpu float32" or "local cpu re-run"
    profile: str  # the tolerance profile used
    rows: list[Row] = field(default_factory=list)
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    @property
    def failures(self) -> list[Row]:
        return [r for r in self.rows if not r.ok]

    def extend(self, rows: Iterable[Row]) -> None:
        self.rows.extend(rows)

    def to_json(self) -> dict[str, Any]:
        return {
            "mode": self.mode,
            "subject": self.subject,
            "reference": self.reference,
            "profile": self.profile,
            "ok": self.ok,
            "failures": len(self.failures),
            "quantities": len(self.rows),
            "meta": self.meta,
            "rows": [r.to_json() for r in self.rows],
        }


def _num(x: float | None) -> str:
    if x is None:
        return "-"
    if x == 0:
        return "0"
    return f"{x:.2e}"


def format_table(report: Report | Mapping[str, Any]) -> str:
    """The human-readable table: one line per quantity, failures marked ``FAIL``."""
    data = report.to_json() if isinstance(report, Report) else report
    rows = data["rows"]
    head = ("group", "quantity", "kind", "n", "max_abs", "max_rel", "tolerance", "result")
    cells = [
        (r["group"], r["name"], r["kind"], str(r["n"]), _num(r["max_abs"]), _num(r["max_rel"]),
         r["tolerance"],
         ("ok" if r["ok"] else f"FAIL ({r['mismatches']})") + (f"  {r['note']}" if r["note"] else ""))
        for r in rows
    ]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(head)]
    widths[-1] = len(head[-1])
    fmt = "  ".join(f"{{:<{w}}}" for w in widths)
    lines = [
        f"parity ({data['mode']}): {data['subject']}  vs  {data['reference']}"
        f"   [tolerances: {data['profile']}]",
        fmt.format(*head),
        fmt.format(*("-" * w for w in widths)),
    ]
    lines += [fmt.format(*c).rstrip() for c in cells]
    verdict = ("PASS" if data["ok"]
               else f"FAIL: {data['failures']} of {data['quantities']} quantities over tolerance")
    lines.append(verdict)
    return "\n".join(lines)
