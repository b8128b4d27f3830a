"""``tradelab archive push|pull|list``: run directories to and from S3."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from tradelab_jax.archive.client import make_client, s3_errors
from tradelab_jax.archive.config import (
    ENV_BUCKET,
    ENV_ENDPOINT,
    ENV_PREFIX,
    ArchiveSpec,
    check_run_id,
    spec_from,
)
from tradelab_jax.archive.local import is_under, run_id_for, sweeps_of
from tradelab_jax.archive.ops import (
    SWEEP_KIND,
    PushResult,
    human_size,
    list_runs,
    pull_tree,
    push_run,
    push_sweep,
)
from tradelab_jax.errors import UserError
from tradelab_jax.paths import check_output_dir, default_outputs
from tradelab_jax.runs import find_runs, is_run_dir, is_sweep_dir

EPILOG = (
    f"The bucket, prefix and endpoint come from the flags or from {ENV_BUCKET}, {ENV_PREFIX} and "
    f"{ENV_ENDPOINT}. Credentials come only from the standard AWS chain (AWS_ACCESS_KEY_ID / "
    "AWS_SECRET_ACCESS_KEY, AWS_PROFILE, an instance role). See docs/archive.md."
)


def build_parser() -> argparse.ArgumentParser:
    s3 = argparse.ArgumentParser(add_help=False)
    group = s3.add_argument_group("S3 location")
    group.add_argument("--bucket", help=f"S3 bucket (default ${ENV_BUCKET})")
    group.add_argument("--prefix", help=f"key prefix inside the bucket (default ${ENV_PREFIX} or none)")
    group.add_argument("--endpoint-url", help=f"S3-compatible endpoint, e.g. MinIO (default ${ENV_ENDPOINT})")
    group.add_argument("--region", help="AWS region (default $AWS_REGION / $AWS_DEFAULT_REGION)")
    outputs = argparse.ArgumentParser(add_help=False)
    outputs.add_argument("--outputs", type=Path, help="outputs root (default $TRADELAB_OUTPUTS or outputs/)")
    verbose = argparse.ArgumentParser(add_help=False)
    verbose.add_argument("-v", "--verbose", action="store_true", help="print each file transferred")

    parser = argparse.ArgumentParser(
        prog="tradelab archive",
        description="Push, pull and list run directories in S3, with checksums verified both ways.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", metavar="{push,pull,list}", required=True)

    push = sub.add_parser(
        "push",
        parents=[s3, outputs, verbose],
        help="upload run directories (only files that changed), then their manifest",
        description="Upload run directories to s3://BUCKET/PREFIX/runs/<run_id>/. Only files whose sha256 "
        "differs from the archived manifest are uploaded; an interrupted multipart upload is resumed. A "
        "packed sweep's own files (packed.json, .hydra/) go with any of its points.",
        epilog=EPILOG,
    )
    push.add_argument(
        "run_dirs",
        nargs="*",
        metavar="RUN_DIR",
        help="a run folder, a packed sweep folder, the outputs root or a folder below it (e.g. "
        "outputs/multirun), or a run id under the outputs root",
    )
    push.add_argument(
        "--run-id", help="archive a single run under this id instead of its path under --outputs"
    )
    push.add_argument(
        "--newer-than",
        type=Path,
        metavar="FILE",
        help="push every run under the outputs root with a file modified after FILE (used on pods)",
    )
    push.add_argument("--allow-running", action="store_true", help="push a run whose status is 'running'")
    push.add_argument(
        "--check-remote",
        action="store_true",
        help="check every file against S3 instead of trusting the archived manifest",
    )
    push.add_argument("--prune", action="store_true", help="delete archived files the run no longer has")
    push.add_argument("--multipart-threshold-mib", type=float, help="files above this go up in parts (64)")
    push.add_argument("--part-size-mib", type=float, help="part size for multipart uploads, at least 5 (64)")

    pull = sub.add_parser(
        "pull",
        parents=[s3, outputs, verbose],
        help="restore archived runs under the outputs root",
        description="Download archived runs to <outputs>/<run_id>/ with every file's sha256 verified; "
        "files already present and identical are kept. A sweep id pulls the sweep's files and every point; "
        "a point id brings its sweep's files (packed.json, .hydra/) along.",
        epilog=EPILOG,
    )
    pull.add_argument(
        "run_ids", nargs="+", metavar="RUN_ID", help="e.g. 20261126T120000Z_demo or multirun/<ts>_<tag>"
    )
    pull.add_argument("--force", action="store_true", help="replace local files that differ from the archive")

    ls = sub.add_parser(
        "list",
        parents=[s3],
        help="archived runs and sweeps: id, status, files, size, pushed at",
        description="List the runs and sweeps archived under s3://BUCKET/PREFIX/runs/.",
        epilog=EPILOG,
    )
    ls.add_argument("--json", action="store_true", help="print JSON instead of a table")
    return parser


def main(argv: list[str]) -> int:
    args = build_parser().parse_args(argv)
    spec = spec_from(
        args.bucket,
        args.prefix,
        args.endpoint_url,
        args.region,
        getattr(args, "multipart_threshold_mib", None),
        getattr(args, "part_size_mib", None),
    )
    outputs = args.outputs.expanduser().resolve() if getattr(args, "outputs", None) else default_outputs()
    if args.command == "pull":  # the one subcommand that writes under the outputs root
        check_output_dir(outputs, "--outputs")
    log = (lambda msg: print(f"  {msg}", file=sys.stderr)) if getattr(args, "verbose", False) else None
    with s3_errors(spec):
        client = make_client(spec)
        if args.command == "push":
            return _push(client, spec, args, outputs, log)
        if args.command == "pull":
            return _pull(client, spec, args, outputs, log)
        return _list(client, spec, args)


def _resolve_run_dir(arg: str, outputs: Path) -> Path:
    path = Path(arg).expanduser()
    if path.is_dir():
        path = path.resolve()
    elif not path.is_absolute() and (outputs / arg).is_dir():
        check_run_id(arg)
        path = (outputs / arg).resolve()
    else:
        raise UserError(
            f"no run directory {arg!r}: give the path of a run folder (one holding status.json) "
            f"or a run id under {outputs}"
        )
    # Refuse up front what is neither a run, a sweep, nor the outputs tree: never walk an arbitrary tree.
    if not (is_run_dir(path) or is_sweep_dir(path) or is_under(path, outputs)):
        raise UserError(
            f"{path} is not a run folder, a packed sweep folder or a folder under the outputs root "
            f"{outputs}: push accepts a run folder (holding status.json), a sweep folder (holding "
            "packed.json), a run id, or the outputs root or a folder below it (--outputs names another root)"
        )
    return path


def _runs_to_push(args: argparse.Namespace, outputs: Path) -> list[Path]:
    if args.newer_than is not None:
        if args.run_dirs:
            raise UserError("give either RUN_DIR arguments or --newer-than, not both")
        try:
            since = args.newer_than.stat().st_mtime
        except OSError:
            raise UserError(f"--newer-than file {args.newer_than} does not exist") from None
        return [r for r in find_runs(outputs) if _newest_mtime(r) > since] if outputs.is_dir() else []
    if not args.run_dirs:
        raise UserError("nothing to push: give one or more RUN_DIR arguments (or --newer-than FILE)")
    runs: list[Path] = []
    for arg in args.run_dirs:
        root = _resolve_run_dir(arg, outputs)
        found = find_runs(root)
        if not found:
            raise UserError(f"{root} holds no run directory (a folder with status.json)")
        runs += found
    if args.run_id and len(runs) != 1:
        raise UserError(f"--run-id names one run, but {len(runs)} run directories were given")
    return runs


def _newest_mtime(run_dir: Path) -> float:
    return max((p.stat().st_mtime for p in run_dir.rglob("*") if p.is_file()), default=0.0)


def _push(client, spec: ArchiveSpec, args, outputs: Path, log) -> int:
    runs = _runs_to_push(args, outputs)
    if not runs:
        print(f"no run under {outputs} changed after {args.newer_than}; nothing to push", file=sys.stderr)
        return 0
    kwargs = {"log": log} if log else {}
    for run_dir in runs:
        run_id = run_id_for(run_dir, outputs, args.run_id)
        res = push_run(
            client,
            spec,
            run_dir,
            run_id,
            allow_running=args.allow_running,
            check_remote=args.check_remote,
            prune=args.prune,
            **kwargs,
        )
        _report_push(res)
    # Then each packed sweep those runs belong to: its packed.json and .hydra/, manifest last.
    for sweep_dir in [] if args.run_id else sweeps_of(runs, outputs):
        sweep_id = run_id_for(sweep_dir, outputs, None)
        res = push_sweep(
            client, spec, sweep_dir, sweep_id, check_remote=args.check_remote, prune=args.prune, **kwargs
        )
        _report_push(res)
    return 0


def _report_push(res: PushResult) -> None:
    label = f"{res.run_id} (sweep files)" if res.kind == SWEEP_KIND else res.run_id
    pruned = f", {len(res.pruned)} pruned" if res.pruned else ""
    if res.written:
        print(
            f"pushed {label} -> {res.url}: {len(res.uploaded)} uploaded "
            f"({human_size(res.uploaded_bytes)}), {len(res.unchanged)} unchanged{pruned}"
        )
    else:
        print(
            f"unchanged {label} -> {res.url}: all {len(res.unchanged)} files already archived, "
            f"nothing written{pruned}"
        )


def _pull(client, spec: ArchiveSpec, args, outputs: Path, log) -> int:
    kwargs = {"log": log} if log else {}
    for run_id in args.run_ids:
        tree = pull_tree(client, spec, run_id.rstrip("/"), outputs, force=args.force, **kwargs)
        for res in tree.results:
            label = f"{res.run_id} (sweep files)" if res.kind == SWEEP_KIND else res.run_id
            print(
                f"pulled {label} -> {res.dest}: {len(res.downloaded)} downloaded "
                f"({human_size(res.downloaded_bytes)}), {len(res.unchanged)} unchanged"
            )
        if tree.note:
            print(f"note: {tree.note}", file=sys.stderr)
    return 0


def _list(client, spec: ArchiveSpec, args) -> int:
    rows = list_runs(client, spec)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    if not rows:
        print(f"no archived runs in {spec.url(spec.runs_root)}")
        return 0
    table = [("RUN ID", "STATUS", "FILES", "SIZE", "PUSHED AT")]
    table += [
        (r["id"], _status_cell(r), str(r["files"]), human_size(r["size"]), r["pushed_at"]) for r in rows
    ]
    widths = [max(len(row[i]) for row in table) for i in range(5)]
    for row in table:
        print("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _status_cell(row: dict) -> str:
    if row.get("kind") != SWEEP_KIND:
        return row["status"]
    n = len(row.get("points", []))
    return f"sweep: {n} point{'s' if n != 1 else ''} {row['status']}"
