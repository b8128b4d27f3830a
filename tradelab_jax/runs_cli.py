"""``tradelab runs``: list run directories and prune the ones no longer wanted.

Prune is a dry run by default (what would go, and the bytes it frees); ``--yes`` deletes. What it never
deletes, whatever the filters say: a run whose state (``runs.effective_state``) is active (queued or
running with a live pid), one whose directory a trainer holds locked (``runs.run_lock``), a run of unknown
state unless asked for by ``--status unknown``, and with ``--require-archived`` one whose files are not all
in the archive with the same sha256 (``tradelab archive push`` records them in ``archive_manifest.json`` in
S3; that manifest is the one proof of archiving). A packed sweep goes whole or not at all (its points are
one training). Deleting first renames the directory to a hidden ``.<name>.pruning`` beside it (atomic), then
removes it, so a prune killed midway leaves every other run whole and discoverable (run discovery skips
hidden folders); the next prune finishes removing such leftovers.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradelab_jax import runs
from tradelab_jax.errors import BusyError, UserError
from tradelab_jax.paper.files import KIND as PAPER_KIND  # a `tradelab paper` session's status.json kind
from tradelab_jax.paths import default_outputs

PRUNE_KEYS = ("older_than", "status", "keep_last", "keep_tag", "require_archived")
TRASH_SUFFIX = ".pruning"
PRUNABLE_STATES = (*runs.FINAL_STATES, runs.INTERRUPTED)  # the default of --status


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tradelab runs", description="Run directories under the outputs root."
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser(
        "list",
        help="runs with state, age and size",
        description="One line per run or packed "
        "sweep under the outputs root, newest first: id, state, age, size.",
    )
    p.add_argument("--outputs", type=Path, help="outputs root (default: $TRADELAB_OUTPUTS, else outputs/)")

    p = sub.add_parser(
        "prune",
        help="delete old or failed runs (dry run unless --yes)",
        description=(
            "Select runs (or whole packed sweeps) by age, state and tag, and delete them. Dry run by default:"
            " it lists what would go and the bytes freed; --yes deletes. Never touches an active run (queued "
            "or running with a live pid, or locked by a trainer), and with --require-archived none whose "
            "files are not all archived in S3 (tradelab archive push). See docs/streaming.md (retention)."
        ),
    )
    p.add_argument("--outputs", type=Path, help="outputs root (default: $TRADELAB_OUTPUTS, else outputs/)")
    p.add_argument(
        "--older-than", help="only runs that ended (or last changed) longer ago than this: 30d, 12h"
    )
    p.add_argument(
        "--status",
        help=f"only runs in these states, comma-separated (default: {', '.join(PRUNABLE_STATES)}; "
        f"'{runs.UNKNOWN}' selects runs without a readable status.json)",
    )
    p.add_argument("--keep-last", type=int, help="always keep the N newest runs or sweeps")
    p.add_argument(
        "--keep-tag",
        action="append",
        default=None,
        metavar="TAG",
        help="always keep runs with this run.tag (repeatable)",
    )
    p.add_argument(
        "--require-archived",
        action="store_true",
        help="only runs whose every file is in the S3 archive with the same sha256",
    )
    p.add_argument(
        "--config",
        metavar="FILE|PRESET",
        help="a retention preset of conf/retention/ or a YAML "
        "file; its runs: section gives defaults for the flags above",
    )
    p.add_argument("--yes", action="store_true", help="delete (default: only list what would go)")
    p.add_argument("--bucket", help="S3 bucket for --require-archived (default $TRADELAB_S3_BUCKET)")
    p.add_argument("--prefix", help="S3 key prefix (default $TRADELAB_S3_PREFIX)")
    p.add_argument("--endpoint-url", help="S3 endpoint (default $TRADELAB_S3_ENDPOINT_URL)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(sys.argv[1:] if argv is None else argv)
    outputs = args.outputs.expanduser().resolve() if args.outputs else default_outputs()
    if outputs.exists() and not outputs.is_dir():
        raise UserError(f"--outputs={str(args.outputs or outputs)!r} is not a folder ({outputs} is a file); "
                        "give the outputs root that holds the runs")
    if args.command == "list":
        return _list(outputs)
    return _prune(args, outputs)


# --------------------------------------------------------------------------------------------- units


@dataclass
class Unit:
    """What prune deletes as one: a run directory, or a packed sweep with all its points."""

    path: Path
    dirs: list[Path]  # the run directories inside (the run itself, or the sweep's points)
    states: list[str]
    ended: float  # epoch seconds: the latest end (or last update) over its runs
    tags: set[str]
    size: int = 0
    why_kept: str | None = None  # set when a filter or a safety rule keeps it

    @property
    def state(self) -> str:
        """Its runs' one state; while any is active, that (a packed sweep's points are marked done one by
        one as each is evaluated, and the sweep is still running until the last)."""
        if len(set(self.states)) == 1:
            return self.states[0]
        return next((s for s in reversed(runs.ACTIVE_STATES) if s in self.states), "mixed")  # furthest on


def _parse_utc(text: Any) -> float | None:
    import datetime as dt

    if not isinstance(text, str):
        return None
    try:
        return dt.datetime.strptime(text, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC).timestamp()
    except ValueError:
        return None


def _held_locks() -> set[tuple[int, int]]:
    """``(st_dev, st_ino)`` of everything an OS lock (flock) is held on now, from Linux's ``/proc/locks``
    (empty where it is missing): which run directories a trainer holds (:func:`runs.run_lock`), found
    without taking the lock as a probe would (a trainer starting at that instant would be refused)."""
    try:
        text = Path("/proc/locks").read_text()
    except OSError:
        return set()
    held = set()
    for line in text.splitlines():
        f = line.split()  # "1: FLOCK  ADVISORY  WRITE 18295 fe:00:2147243 0 EOF" (a waiter's: "1: -> FLOCK")
        if len(f) >= 6 and f[1] == "FLOCK" and f[5].count(":") == 2:
            major, minor, ino = f[5].split(":")
            try:
                held.add((os.makedev(int(major, 16), int(minor, 16)), int(ino)))
            except ValueError:
                continue
    return held


def _locked(path: Path, held: set[tuple[int, int]]) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    return (st.st_dev, st.st_ino) in held


def _run_facts(run_dir: Path, held: set[tuple[int, int]]) -> tuple[str, float, str | None]:
    """(effective state, when it ended or last changed in epoch s, its run.tag or None); ``held`` is
    :func:`_held_locks`.

    A queued run whose directory (or packed sweep root) a trainer holds locked is ``running``: the trainer
    writes its points queued when it starts and running only once its data is loaded and its first program
    compiled, and in between the training is under way, not waiting for a launcher.
    """
    state = runs.run_state(run_dir)
    if state == "queued" and any(_locked(d, held) for d in {run_dir, runs.resume_root(run_dir)}):
        state = "running"
    try:
        status = runs.read_status(run_dir) or {}
    except (OSError, ValueError):
        status = {}
    when = next(
        (
            t
            for t in (_parse_utc(status.get(k)) for k in ("ended_at", "updated_at", "started_at"))
            if t is not None
        ),
        None,
    )
    if when is None:
        when = (run_dir / runs.STATUS_FILE).stat().st_mtime
    tag = None
    try:
        run_cfg = runs.read_config(run_dir).get("run")
        tag = run_cfg.get("tag") if isinstance(run_cfg, dict) else None
    except (OSError, ValueError):
        pass
    if tag is None and "_" in run_dir.name:
        tag = run_dir.name.split("_", 1)[1]
    return state, when, tag


def _size(path: Path) -> int:
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            p = Path(dirpath) / name
            if not p.is_symlink():
                total += p.stat().st_size
    return total


def find_units(outputs: Path) -> list[Unit]:
    """Every run or packed sweep under ``outputs``, newest first (run discovery's order)."""
    found = runs.iter_runs(outputs)
    held = _held_locks()  # read once for every run
    units: dict[Path, Unit] = {}
    for run_dir in found:
        if (runs.read_status(run_dir) or {}).get("kind") == PAPER_KIND:
            continue  # a paper session is an account's history, not a training run: never pruned here
        root = runs.resume_root(run_dir)
        state, when, tag = _run_facts(run_dir, held)
        unit = units.get(root)
        if unit is None:
            units[root] = Unit(root, [run_dir], [state], when, {tag} if tag else set())
        else:
            unit.dirs.append(run_dir)
            unit.states.append(state)
            unit.ended = max(unit.ended, when)
            if tag:
                unit.tags.add(tag)
    for unit in units.values():
        unit.size = _size(unit.path)
    return list(units.values())


# --------------------------------------------------------------------------------------------- archive


def _archived(unit: Unit, outputs: Path, client: Any, spec: Any) -> str | None:
    """None when every file of the unit is in the archive with its sha256, else why not (a clause)."""
    from tradelab_jax.archive.local import run_id_for, scan_run, scan_sweep
    from tradelab_jax.archive.ops import get_manifest

    checks = [(d, scan_run(d, spec)) for d in unit.dirs]
    if runs.is_sweep_dir(unit.path):
        checks.append((unit.path, scan_sweep(unit.path, spec)))
    for folder, files in checks:
        run_id = run_id_for(folder, outputs, None)
        manifest = get_manifest(client, spec, run_id)
        if manifest is None:
            return f"{run_id} is not archived"
        archived = {e["path"]: e["sha256"] for e in manifest["files"]}
        changed = [f.path for f in files if archived.get(f.path) != f.sha256]
        if changed:
            return f"{run_id} has {len(changed)} file(s) not archived as they are now (e.g. {changed[0]})"
    return None


# --------------------------------------------------------------------------------------------- prune


@dataclass
class PrunePlan:
    remove: list[Unit] = field(default_factory=list)
    kept: list[Unit] = field(default_factory=list)  # units a filter or a safety rule kept, with why
    leftovers: list[Path] = field(default_factory=list)  # .<name>.pruning folders of a killed prune

    @property
    def bytes_freed(self) -> int:
        return sum(u.size for u in self.remove) + sum(_size(p) for p in self.leftovers)


def plan_prune(
    outputs: Path,
    *,
    older_than: Any = None,
    status: Any = None,
    keep_last: int | None = None,
    keep_tag: list[str] | None = None,
    require_archived: bool = False,
    archive: tuple[Any, Any] | None = None,
    now: float | None = None,
) -> PrunePlan:
    """Which runs go and which stay (and why): the filters, then the safety rules."""
    from tradelab_jax.data.retain import parse_duration

    now = time.time() if now is None else now
    age_s = parse_duration(older_than, "--older-than") if older_than is not None else None
    wanted = _states(status)
    if keep_last is not None and (
        isinstance(keep_last, bool) or not isinstance(keep_last, int) or keep_last < 0
    ):
        raise UserError(f"invalid --keep-last {keep_last!r}: give a whole number >= 0")
    keep_tags = set(keep_tag or [])
    plan = PrunePlan()
    if outputs.is_dir():
        plan.leftovers = sorted(p for p in outputs.rglob(f".*{TRASH_SUFFIX}") if p.is_dir())
    for n, unit in enumerate(find_units(outputs)):
        active = [s for s in unit.states if s in runs.ACTIVE_STATES]
        if active:
            unit.why_kept = f"{active[0]} (never pruned)"
        elif keep_last is not None and n < keep_last:
            unit.why_kept = f"one of the {keep_last} newest"
        elif unit.tags & keep_tags:
            unit.why_kept = f"tag {sorted(unit.tags & keep_tags)[0]}"
        elif not all(s in wanted for s in unit.states):
            unit.why_kept = f"state {unit.state}"
        elif age_s is not None and now - unit.ended < age_s:
            unit.why_kept = f"ended {_age(now - unit.ended)} ago"
        elif require_archived:
            assert archive is not None
            unit.why_kept = _archived(unit, outputs, *archive)
        (plan.kept if unit.why_kept else plan.remove).append(unit)
    return plan


def _states(text: Any) -> set[str]:
    if text is None:
        return set(PRUNABLE_STATES)
    items = text if isinstance(text, list | tuple) else str(text).split(",")
    chosen = {str(s).strip() for s in items if str(s).strip()}
    valid = {*PRUNABLE_STATES, runs.UNKNOWN}
    bad = sorted(chosen - valid)
    if bad or not chosen:
        active = (
            f"; {', '.join(runs.ACTIVE_STATES)} runs are never pruned"
            if set(bad) & set(runs.ACTIVE_STATES)
            else ""
        )
        raise UserError(f"invalid --status {text!r}: choose from {', '.join(sorted(valid))}{active}")
    return chosen


def remove_unit(unit: Unit) -> None:
    """Delete one unit: refused while a trainer holds any of its run locks; rename aside, then remove."""
    with contextlib.ExitStack() as locks:
        # A packed sweep's trainer locks the sweep's own directory; a single run's, the run's.
        held = [*([unit.path] if runs.is_sweep_dir(unit.path) else []), *unit.dirs]
        for d in held:
            try:
                locks.enter_context(runs.run_lock(d))
            except BusyError as err:
                raise BusyError(f"not pruned: {err}") from None
        # Re-check under the locks: the run may have been resumed since the plan was made.
        for d in unit.dirs:
            if runs.run_state(d) in runs.ACTIVE_STATES:
                raise BusyError(f"not pruned: {d} became {runs.run_state(d)} since the plan was made")
        trash = unit.path.with_name(f".{unit.path.name}{TRASH_SUFFIX}")
        os.replace(unit.path, trash)  # atomic: from here on discovery no longer sees the run
    if os.environ.get("TRADELAB_TEST_LAKE_HOLD"):  # the kill tests stop here (tradelab_jax.data.lake)
        from tradelab_jax.data.lake import crash_test_hold

        crash_test_hold("prune-after-rename")
    shutil.rmtree(trash)


def _prune(args: argparse.Namespace, outputs: Path) -> int:
    preset: dict[str, Any] = {}
    if args.config:
        from tradelab_jax.data.retain import read_preset

        preset = read_preset(args.config, "runs", PRUNE_KEYS)

    def pick(name: str) -> Any:
        value = getattr(args, name)
        return preset.get(name) if value in (None, False) else value

    require_archived = bool(pick("require_archived"))
    archive, archive_errors = None, contextlib.nullcontext()
    if require_archived:
        from tradelab_jax.archive.client import make_client, s3_errors
        from tradelab_jax.archive.config import spec_from

        spec = spec_from(args.bucket, args.prefix, args.endpoint_url)
        archive, archive_errors = (make_client(spec), spec), s3_errors(spec)
    keep_tag = pick("keep_tag")
    if isinstance(keep_tag, str):
        keep_tag = [keep_tag]
    with archive_errors:  # planning reads the archive's manifests: an S3 error is one sentence
        plan = plan_prune(outputs, older_than=pick("older_than"), status=pick("status"),
                          keep_last=pick("keep_last"), keep_tag=keep_tag, require_archived=require_archived,
                          archive=archive)
    for unit in plan.kept:
        if "never pruned" in (unit.why_kept or "") or "archiv" in (unit.why_kept or ""):
            print(f"keep   {_rel(unit.path, outputs)}: {unit.why_kept}")
    verb = "remove" if args.yes else "would remove"
    for unit in plan.remove:
        print(
            f"{verb} {_rel(unit.path, outputs)}  {unit.state}  {_age(time.time() - unit.ended)} old  "
            f"{unit.size:,} bytes"
        )
    for p in plan.leftovers:
        print(f"{verb} {_rel(p, outputs)}  (left by an interrupted prune)")
    if not args.yes:
        print(
            f"dry run: {len(plan.remove)} run(s) or sweep(s) would go, {plan.bytes_freed:,} bytes freed; "
            f"{len(plan.kept)} kept; add --yes to delete"
        )
        return 0
    freed, refused = 0, []
    for p in plan.leftovers:
        freed += _size(p)
        shutil.rmtree(p, ignore_errors=True)
    for unit in plan.remove:
        try:
            remove_unit(unit)
            freed += unit.size
        except BusyError as err:
            refused.append(str(err))
    for r in refused:
        print(f"warning: {r}", file=sys.stderr)
    print(
        f"removed {len(plan.remove) - len(refused)} run(s) or sweep(s), {freed:,} bytes freed; "
        f"{len(plan.kept) + len(refused)} kept"
    )
    return 0


def _list(outputs: Path) -> int:
    units = find_units(outputs)
    if not units:
        print(f"no runs under {outputs}")
        return 0
    now = time.time()
    for u in units:
        kind = f" (sweep, {len(u.dirs)} points)" if runs.is_sweep_dir(u.path) else ""
        print(f"{_rel(u.path, outputs)}{kind}  {u.state}  {_age(now - u.ended)} ago  {u.size:,} bytes")
    return 0


def _rel(path: Path, outputs: Path) -> str:
    try:
        return path.resolve().relative_to(outputs.resolve()).as_posix()
    except ValueError:
        return str(path)


def _age(seconds: float) -> str:
    seconds = max(0.0, seconds)
    for unit, size in (("d", 86_400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.1f}{unit}"
    return f"{seconds:.0f}s"
