"""``tradelab pod launch|status|logs|stop``: training on a rented RunPod GPU pod."""

from __future__ import annotations

import argparse
import json
import os
import sys

from tradelab_jax.errors import UserError
from tradelab_jax.paths import check_id
from tradelab_jax.pod.api import (
    DEFAULT_API_BASE,
    ENV_API_BASE,
    ENV_API_KEY,
    RunPodAPI,
    api_base,
    api_key_from_env,
    check_interpolated,
    deploy_queries,
    sdk,
    sdk_installed,
)
from tradelab_jax.pod.spec import (
    DEFAULT_GPU,
    DEFAULT_IMAGE,
    REPO_PLACEHOLDER,
    S3_NAMES,
    PodSpec,
    ScriptSpec,
    check_repo,
    missing_aws_credentials,
    missing_aws_message,
    placeholder,
    pod_env,
    render_script,
    repo_url_or_origin,
)
from tradelab_jax.runs import utc_timestamp

EPILOG = (
    f"Pods are managed through RunPod's Python SDK (pip install -e '.[pods]'; --dry-run works without "
    f"it). The RunPod API key is read "
    f"from ${ENV_API_KEY} only and never printed. The API endpoint is "
    f"{DEFAULT_API_BASE} unless --api-url or ${ENV_API_BASE} says otherwise. See docs/pods.md."
)
_IMAGE = r"^[A-Za-z0-9][A-Za-z0-9._/:@-]{0,254}$"


def build_parser() -> argparse.ArgumentParser:
    api = argparse.ArgumentParser(add_help=False)
    api.add_argument("--api-url", help=f"RunPod API base URL (default ${ENV_API_BASE} or {DEFAULT_API_BASE})")
    parser = argparse.ArgumentParser(
        prog="tradelab pod",
        description="Launch `tradelab train` on a RunPod GPU pod that pushes its runs to S3, and manage it.",
        epilog=EPILOG,
    )
    sub = parser.add_subparsers(dest="command", metavar="{launch,status,logs,stop}", required=True)

    launch = sub.add_parser(
        "launch",
        parents=[api],
        help="start a pod that installs the project, trains and pushes the run",
        usage="tradelab pod launch [options] -- [train overrides ...]",
        description="Start a GPU pod running: install tradelab_jax from --repo-url at --ref, `tradelab train "
        "OVERRIDES`, `tradelab archive push` of the new runs, then stop the pod. Everything after `--` is "
        "passed to `tradelab train`, each argument quoted, after the same config check `tradelab train` "
        "makes here.",
        epilog=EPILOG,
    )
    launch.add_argument("--gpu", default=DEFAULT_GPU, help=f"RunPod GPU type id (default {DEFAULT_GPU!r})")
    launch.add_argument("--gpu-count", type=int, default=1, help="GPUs on the pod (default 1)")
    launch.add_argument("--image", default=DEFAULT_IMAGE, help=f"container image (default {DEFAULT_IMAGE})")
    launch.add_argument("--name", help="pod name (default tradelab-<UTC timestamp>)")
    launch.add_argument("--cloud", choices=["ALL", "SECURE", "COMMUNITY"], default="ALL", help="RunPod cloud")
    launch.add_argument("--volume-gb", type=int, default=20, help="persistent volume at /workspace (20)")
    launch.add_argument("--container-disk-gb", type=int, default=30, help="container disk (30)")
    launch.add_argument(
        "--repo-url",
        default=os.environ.get("TRADELAB_REPO_URL", ""),
        help="https git URL the pod installs the project from (default $TRADELAB_REPO_URL, else this "
        "checkout's origin remote if it is an https URL)",
    )
    launch.add_argument(
        "--ref", default=os.environ.get("TRADELAB_REPO_REF", "main"), help="branch/tag/commit"
    )
    launch.add_argument(
        "--jax-extra", default="cuda12", help="pip extra for jax on the pod, e.g. cuda12 ('' for none)"
    )
    launch.add_argument("--bucket", help="S3 bucket the pod pushes to (default $TRADELAB_S3_BUCKET)")
    launch.add_argument("--prefix", help="S3 prefix (default $TRADELAB_S3_PREFIX)")
    launch.add_argument("--endpoint-url", help="S3 endpoint for the pod (default $TRADELAB_S3_ENDPOINT_URL)")
    launch.add_argument(
        "--aws-credentials",
        choices=["env", "runpod-secret", "none"],
        default="env",
        help="how the pod gets S3 credentials: copied from this environment's AWS_ACCESS_KEY_ID / "
        "AWS_SECRET_ACCESS_KEY at launch (env), RunPod secrets aws_access_key_id / aws_secret_access_key "
        "(runpod-secret), or not at all (none)",
    )
    launch.add_argument(
        "--pod-api-key",
        choices=["none", "runpod-secret"],
        default="none",
        help="give the pod RUNPOD_API_KEY from the RunPod secret runpod_api_key so it can stop itself",
    )
    launch.add_argument(
        "--on-exit",
        choices=["stop", "terminate", "sleep"],
        default="stop",
        help="after pushing: stop the pod (keeps its volume), terminate it, or leave it running (stop)",
    )
    launch.add_argument(
        "--env", action="append", default=[], metavar="KEY=VALUE", help="extra (non-secret) pod env"
    )
    launch.add_argument("--dry-run", action="store_true", help="print the exact request (secrets masked)")
    launch.add_argument("--json", action="store_true", help="print the created pod as JSON")

    status = sub.add_parser(
        "status", parents=[api], help="one pod's state, or all pods", epilog=EPILOG, description="Pod state."
    )
    status.add_argument("pod_id", nargs="?", metavar="POD_ID", help="a pod id (default: list all pods)")
    status.add_argument("--json", action="store_true", help="print JSON")

    logs = sub.add_parser(
        "logs",
        help="the pod's start-up log, as uploaded to S3 every 30 s",
        description="Print s3://BUCKET/PREFIX/pods/POD_ID/pod.log, which the pod uploads while it runs.",
        epilog=EPILOG,
    )
    logs.add_argument("pod_id", metavar="POD_ID")
    logs.add_argument("--tail", type=int, default=200, help="last N lines (0 = all; default 200)")
    logs.add_argument("--bucket")
    logs.add_argument("--prefix")
    logs.add_argument("--endpoint-url")

    stop = sub.add_parser("stop", parents=[api], help="stop (or --terminate) a pod", epilog=EPILOG)
    stop.add_argument("pod_id", metavar="POD_ID")
    stop.add_argument("--terminate", action="store_true", help="terminate: delete the pod and its volume")
    return parser


def main(argv: list[str]) -> int:
    argv = list(argv)
    overrides: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, overrides = argv[:cut], argv[cut + 1 :]
    args = build_parser().parse_args(argv)
    if overrides and args.command != "launch":
        raise UserError(f"`tradelab pod {args.command}` takes no train overrides after `--`")
    if args.command == "launch":
        return _launch(args, overrides)
    if args.command == "logs":
        return _logs(args)
    sdk()
    client = RunPodAPI(api_key_from_env(), api_base(args.api_url))
    if args.command == "status":
        return _status(client, args)
    return _stop(client, args)


def check_train_args(train_args: list[str]) -> None:
    """Refuse here what `tradelab train` would refuse on the pod, before a GPU is rented for it.

    The same split and compose check as `tradelab train` (Hydra flags such as -m pass through unchecked);
    the pod trains from --ref, which is assumed to accept this checkout's config keys.
    """
    from tradelab_jax.training.compose import check_overrides, split_argv

    flags, overrides = split_argv(train_args)
    check_overrides(overrides, multirun=any(f in ("-m", "--multirun") for f in flags))


def build_spec(args: argparse.Namespace, overrides: list[str], *, strict: bool = True) -> PodSpec:
    """The pod request; ``strict=False`` (a dry-run) turns missing bucket or credentials into warnings."""
    import re

    name = args.name or f"tradelab-{utc_timestamp()}"
    check_id(name, "pod name")
    if not re.match(_IMAGE, args.image):
        raise UserError(
            f"invalid --image {args.image!r}: use a container image reference like {DEFAULT_IMAGE}"
        )
    if not re.match(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,99}$", args.gpu):
        raise UserError(f"invalid --gpu {args.gpu!r}: use a RunPod GPU type id like {DEFAULT_GPU!r}")
    for flag, value, low in (("--gpu-count", args.gpu_count, 1), ("--volume-gb", args.volume_gb, 0)):
        if value < low:
            raise UserError(f"{flag} must be at least {low}, got {value}")
    if args.container_disk_gb < 10:
        raise UserError(
            f"--container-disk-gb must be at least 10 (JAX's CUDA wheels), got {args.container_disk_gb}"
        )
    if args.jax_extra and not re.match(r"^[a-z0-9_-]+$", args.jax_extra):
        raise UserError(f"invalid --jax-extra {args.jax_extra!r}: use a pip extra name such as cuda12")
    for override in overrides:
        if "\0" in override:
            raise UserError("a train override contains a NUL byte, which no command line can carry")
    repo_url, repo_warnings = repo_url_or_origin(args.repo_url, strict=strict)
    if repo_url != REPO_PLACEHOLDER:
        check_repo(repo_url, args.ref)
    s3, warnings = _s3_settings(args, strict=strict)
    warnings = repo_warnings + warnings
    missing = [] if strict else missing_aws_credentials(args.aws_credentials)
    if missing:
        warnings.append(missing_aws_message(missing))
    extra = {}
    for item in args.env:
        key, sep, value = item.partition("=")
        if not sep:
            raise UserError(f"invalid --env {item!r}: use KEY=VALUE")
        extra[key] = value
    extra["TRADELAB_POD_NAME"] = name
    script = render_script(
        ScriptSpec(repo_url, args.ref, args.jax_extra, tuple(overrides), "/workspace", args.on_exit)
    )
    env, secret_keys = pod_env(
        s3=s3,
        aws_credentials=args.aws_credentials,
        extra=extra,
        script=script,
        strict=strict,
        pod_api_key=args.pod_api_key,
    )
    return PodSpec(
        name=name,
        image=args.image,
        gpu_type=args.gpu,
        gpu_count=args.gpu_count,
        cloud_type=args.cloud,
        volume_gb=args.volume_gb,
        container_disk_gb=args.container_disk_gb,
        volume_mount_path="/workspace",
        env=env,
        script=script,
        secret_keys=secret_keys,
        warnings=tuple(warnings),
        source=f"{repo_url} at {args.ref}",
    )


def _s3_settings(args: argparse.Namespace, *, strict: bool) -> tuple[dict[str, str], list[str]]:
    """The pod pushes with the same bucket/prefix/endpoint rules as `tradelab archive` (validated here).

    Without a bucket a real launch is refused; a dry-run shows a placeholder and says so.
    """
    from tradelab_jax.archive.config import ENV_BUCKET, file_defaults, spec_from

    config = file_defaults()
    has_bucket = bool(args.bucket or os.environ.get(ENV_BUCKET) or config.get("bucket"))
    if has_bucket or strict:
        spec = spec_from(args.bucket, args.prefix, args.endpoint_url, config=config)
        bucket, warnings = spec.bucket, []
    else:  # a valid stand-in name, so that the prefix and endpoint are still checked
        spec = spec_from("bucket-not-set", args.prefix, args.endpoint_url, config=config)
        bucket = placeholder(ENV_BUCKET)
        warnings = [f"no S3 bucket given for the pod's push: a real launch needs --bucket or {ENV_BUCKET}"]
    values = (bucket, spec.prefix.rstrip("/"), spec.endpoint_url or "")
    return dict(zip(S3_NAMES, values, strict=True)), warnings


def _launch(args: argparse.Namespace, overrides: list[str]) -> int:
    check_train_args(overrides)
    spec = build_spec(args, overrides, strict=not args.dry_run)
    check_interpolated(spec.sdk_kwargs(), spec.secret_keys)
    if args.dry_run:
        return _dry_run(spec, args.api_url)
    client = RunPodAPI(api_key_from_env(), api_base(args.api_url))
    pod = client.create(spec.sdk_kwargs(), spec.secret_keys)
    if not pod.get("id"):
        raise UserError("RunPod accepted the request but returned no pod id; check the RunPod console")
    if args.json:
        print(json.dumps(pod, indent=2))
        return 0
    print(f"launched pod {pod['id']} ({spec.name}, {args.gpu_count}x {args.gpu}, {args.image})")
    print(f"  code:      {spec.source}")
    print(f"  follow it: tradelab pod status {pod['id']} | tradelab pod logs {pod['id']}")
    print(f"  stop it:   tradelab pod stop {pod['id']}")
    return 0


def _dry_run(spec: PodSpec, api_url: str | None) -> int:
    """Print the request, secrets masked. Only submitting needs the SDK; with it, its exact HTTP requests."""
    client = RunPodAPI(api_key_from_env(required=False), api_base(api_url))
    kwargs = spec.sdk_kwargs(masked=True)
    if sdk_installed():  # built by the SDK's own functions, byte for byte what a launch sends
        shown: object = [client.shown_request(q) for q in deploy_queries(kwargs)]
        note = "runpod.create_pod sends these two requests: a gpuTypes check, then the deploy mutation."
    else:
        shown = {"runpod.create_pod": kwargs}
        note = (
            "the arguments of runpod.create_pod (RunPod's SDK is not installed; pip install -e '.[pods]' "
            "shows the HTTP requests it sends instead)."
        )
    print(json.dumps(shown, indent=2))
    print(f"\n# {note}\n# start-up script (TRADELAB_POD_SCRIPT, base64 above):", file=sys.stderr)
    print(spec.script, file=sys.stderr)
    for warning in spec.warnings:  # last, so that they are not scrolled away by the script
        print(f"warning: {warning}", file=sys.stderr)
    return 0


def _row(pod: dict) -> dict:
    runtime = pod.get("runtime") or {}
    machine = pod.get("machine") or {}
    return {
        "id": pod.get("id"),
        "name": pod.get("name"),
        "status": pod.get("desiredStatus"),
        "running": bool(runtime),
        "gpu": f"{pod.get('gpuCount') or '?'}x {machine.get('gpuDisplayName') or '?'}",
        "cost_per_hr": pod.get("costPerHr"),
        "uptime_s": runtime.get("uptimeInSeconds", pod.get("uptimeSeconds")),
        "image": pod.get("imageName"),
    }


def _status(client: RunPodAPI, args: argparse.Namespace) -> int:
    if args.pod_id:
        check_id(args.pod_id, "pod id")
        pod = client.pod(args.pod_id)
        if not pod:
            raise UserError(
                f"no pod {args.pod_id!r} in this RunPod account: `tradelab pod status` lists them"
            )
        rows = [_row(pod)]
    else:
        rows = [_row(p) for p in client.pods()]
    if args.json:
        print(json.dumps(rows if not args.pod_id else rows[0], indent=2))
        return 0
    if not rows:
        print("no pods")
        return 0
    table = [("POD ID", "NAME", "STATUS", "GPU", "$/HR", "UPTIME")]
    for r in rows:
        uptime = f"{int(r['uptime_s'])}s" if r["uptime_s"] is not None else "-"
        table.append(
            (str(r["id"]), str(r["name"]), str(r["status"]), r["gpu"], str(r["cost_per_hr"]), uptime)
        )
    widths = [max(len(row[i]) for row in table) for i in range(len(table[0]))]
    for row in table:
        print("  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip())
    return 0


def _stop(client: RunPodAPI, args: argparse.Namespace) -> int:
    check_id(args.pod_id, "pod id")
    if args.terminate:
        client.terminate(args.pod_id)
        print(f"terminated pod {args.pod_id}")
    else:
        state = client.stop(args.pod_id)
        print(f"stopped pod {args.pod_id} ({state.get('desiredStatus', 'EXITED')})")
    return 0


def _logs(args: argparse.Namespace) -> int:
    from tradelab_jax.archive.client import is_missing, make_client, s3_errors
    from tradelab_jax.archive.config import spec_from

    check_id(args.pod_id, "pod id")
    if args.tail < 0:
        raise UserError(f"--tail must be 0 (everything) or a positive number of lines, got {args.tail}")
    spec = spec_from(args.bucket, args.prefix, args.endpoint_url)
    key = spec.pod_log_key(args.pod_id)
    from botocore.exceptions import ClientError

    with s3_errors(spec):
        try:
            body = make_client(spec).get_object(Bucket=spec.bucket, Key=key)["Body"].read()
        except ClientError as err:
            if not is_missing(err):
                raise
            raise UserError(
                f"no log for pod {args.pod_id} at {spec.url(key)} yet: the pod uploads it every 30 s once "
                "the project is installed (earlier output is in the RunPod console)"
            ) from None
    lines = body.decode("utf-8", errors="replace").splitlines()
    for line in lines[-args.tail :] if args.tail else lines:
        print(line)
    return 0
