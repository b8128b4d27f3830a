"""What a training pod is: a :class:`PodSpec` and the start-up script it runs.

The start-up script travels base64-encoded in the ``TRADELAB_POD_SCRIPT`` environment variable and the
container's start command only decodes and runs it, so no user value is ever parsed by RunPod's
start-command splitting or by a shell: every value placed in the script goes through ``shlex.quote``.
Base64 also keeps the overrides out of the GraphQL text that RunPod's SDK builds by pasting values.
"""

from __future__ import annotations

import base64
import os
import re
import shlex
import subprocess
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tradelab_jax import paths
from tradelab_jax.errors import UserError

DEFAULT_IMAGE = "python:3.12-slim-bookworm"
DEFAULT_GPU = "NVIDIA GeForce RTX 4090"
CHECKOUT = paths.REPO_ROOT  # whose `origin` remote is the default repository (tests point it elsewhere)
SCRIPT_ENV = "TRADELAB_POD_SCRIPT"
MASK = "***"

# The container's start command: decode the script from the environment and run it with bash. It holds
# no double quote or backslash: the SDK pastes it between double quotes into the GraphQL text.
DOCKER_ARGS = (
    f"bash -c 'printenv {SCRIPT_ENV} | base64 -d > /tmp/tradelab-pod.sh && exec bash /tmp/tradelab-pod.sh'"
)

AWS_SECRET_NAMES = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN")
AWS_PLAIN_NAMES = ("AWS_REGION", "AWS_DEFAULT_REGION")
S3_NAMES = ("TRADELAB_S3_BUCKET", "TRADELAB_S3_PREFIX", "TRADELAB_S3_ENDPOINT_URL")
_ENV_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,127}$")
_GIT_REF = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._/-]{0,199}$")


@dataclass(frozen=True)
class PodSpec:
    """Everything ``runpod.create_pod`` is asked for; ``secret_keys`` name env values to mask."""

    name: str
    image: str
    gpu_type: str
    gpu_count: int
    cloud_type: str
    volume_gb: int
    container_disk_gb: int
    volume_mount_path: str
    env: tuple[tuple[str, str], ...]
    script: str
    secret_keys: frozenset[str] = field(default_factory=frozenset)
    # What a real launch would refuse, shown by a dry-run as placeholder values plus these sentences.
    warnings: tuple[str, ...] = ()
    source: str = ""  # "<repo url> at <ref>", for the launch message (the URL may be the origin default)

    def sdk_kwargs(self, *, masked: bool = False) -> dict[str, Any]:
        """The keyword arguments of ``runpod.create_pod``; ``masked`` hides secret values."""
        env = {k: MASK if masked and k in self.secret_keys and v else v for k, v in self.env}
        return {
            "name": self.name,
            "image_name": self.image,
            "gpu_type_id": self.gpu_type,
            "cloud_type": self.cloud_type,
            "gpu_count": self.gpu_count,
            "volume_in_gb": self.volume_gb,
            "container_disk_in_gb": self.container_disk_gb,
            "docker_args": DOCKER_ARGS,
            "volume_mount_path": self.volume_mount_path,
            "env": env,
        }


@dataclass(frozen=True)
class ScriptSpec:
    """The static pieces of the start-up script."""

    repo_url: str
    ref: str
    jax_extra: str
    overrides: tuple[str, ...]
    workspace: str = "/workspace"
    on_exit: str = "stop"  # stop | terminate | sleep
    log_every_s: int = 30


def placeholder(name: str) -> str:
    """The value a dry-run shows for a setting that a real launch requires but is not set here."""
    return f"<{name} not set>"


def checkout_origin(root: Path | None = None) -> str:
    """``git remote get-url origin`` of this checkout, or '' (no git, not a checkout, no origin)."""
    root = CHECKOUT if root is None else root
    if not (root / ".git").exists():  # an installed package: git would find whatever repo encloses it
        return ""
    try:
        proc = subprocess.run(
            ["git", "remote", "get-url", "origin"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return proc.stdout.strip() if proc.returncode == 0 else ""


def pod_can_clone(url: str) -> bool:
    """A pod has no SSH key or git credentials: only an https:// URL without a user in it can work."""
    try:
        parsed = urllib.parse.urlsplit(url)
    except ValueError:
        return False
    return (
        parsed.scheme == "https"
        and bool(parsed.hostname)
        and "@" not in parsed.netloc
        and parsed.path.strip("/") != ""
        and not re.search(r"\s", url)
    )


# ``git@host:owner/repo.git`` (scp-like) and ``ssh://[user@]host[:port]/owner/repo.git`` (also git+ssh://).
_SCP_LIKE = re.compile(r"^[\w.-]+@(?P<host>[\w.-]+):(?P<path>[^\s:]\S*)$")
REPO_PLACEHOLDER = "<REPO_URL: pass --repo-url>"


def https_from_origin(origin: str) -> str:
    """The https:// URL a pod can clone for a remote URL, or '' when none can be derived.

    Common SSH forms map to the same host and path over https (GitHub, GitLab, Bitbucket and most hosts
    serve both); credentials in an https URL are dropped (a pod gets no token); a local path or file://
    remote names no public repository.
    """
    if pod_can_clone(origin):
        return origin
    match = _SCP_LIKE.match(origin)
    if match:
        candidate = f"https://{match['host']}/{match['path'].lstrip('/')}"
    else:
        try:
            parsed = urllib.parse.urlsplit(origin)
        except ValueError:
            return ""
        if parsed.scheme not in ("ssh", "git+ssh", "git", "https", "http") or not parsed.hostname:
            return ""
        candidate = f"https://{parsed.hostname}{parsed.path}"
    return candidate if pod_can_clone(candidate) else ""


def repo_url_or_origin(repo_url: str, *, strict: bool = True) -> tuple[str, list[str]]:
    """``(url, warnings)``: ``repo_url`` (--repo-url / $TRADELAB_REPO_URL), else the https form of this
    checkout's origin (:func:`https_from_origin`). Without either a launch is refused; a dry run
    (``strict=False``) shows :data:`REPO_PLACEHOLDER` and a warning instead."""
    if repo_url:
        return repo_url, []
    origin = checkout_origin()
    derived = https_from_origin(origin) if origin else ""
    if derived:
        note = [] if derived == origin else [
            f"--repo-url not given: the pod installs from {derived}, the https form of this checkout's "
            f"origin {_redact_url(origin)!r}"]
        return derived, note
    why = (
        f" (this checkout's origin {_redact_url(origin)!r} has no https:// form a pod can clone)"
        if origin
        else ""
    )
    message = (f"no repository to install on the pod{why}: pass --repo-url (an https:// git URL of this "
               "project) or set TRADELAB_REPO_URL")
    if strict:
        raise UserError(message)
    return REPO_PLACEHOLDER, [message]


def check_repo(repo_url: str, ref: str) -> None:
    if not repo_url:
        raise UserError(
            "no repository to install on the pod: pass --repo-url (an https:// git URL of this project) "
            "or set TRADELAB_REPO_URL"
        )
    has_credentials = re.match(r"^[a-z+]+://[^/]*@", repo_url) is not None
    if has_credentials or not re.match(r"^(https://|ssh://|git@)\S+$", repo_url):
        raise UserError(
            f"invalid --repo-url {_redact_url(repo_url)!r}: use an https:// or ssh:// git URL without "
            "credentials in it (a private repository needs a pre-built image instead)"
        )
    if not _GIT_REF.match(ref) or ".." in ref:
        raise UserError(
            f"invalid --ref {ref!r}: use a branch, tag or commit id (letters, digits, '.', '_', '/', '-')"
        )


def _redact_url(url: str) -> str:
    return re.sub(r"//[^/@]*@", "//***@", url)


def render_script(s: ScriptSpec) -> str:
    """The bash script the pod runs: install the project at a ref, train, push the runs, then stop."""
    q = shlex.quote
    ws = s.workspace
    train = " ".join(["tradelab", "train", *map(q, s.overrides)])
    on_exit = {
        "stop": 'tradelab pod stop "$POD" || runpodctl stop pod "$POD" || true',
        "terminate": 'tradelab pod stop --terminate "$POD" || runpodctl remove pod "$POD" || true',
        "sleep": "true",
    }[s.on_exit]
    return f"""#!/usr/bin/env bash
# Generated by `tradelab pod launch`: install tradelab_jax, train, push the runs to S3, then {s.on_exit}.
set -uo pipefail
WS={q(ws)}
mkdir -p "$WS"
LOG="$WS/tradelab-pod.log"
exec > >(tee -a "$LOG") 2>&1
say() {{ echo "[tradelab-pod $(date -u +%Y-%m-%dT%H:%M:%SZ)] $*"; }}
if [ -e "$WS/.tradelab-done" ]; then
  say "this pod already finished its run (container restarted); idling"
  exec sleep infinity
fi
say installing tradelab_jax from {q(s.repo_url)} at {q(s.ref)}
set -e
if ! command -v git >/dev/null; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends git ca-certificates
fi
SRC="$WS/tradelab_jax"
if [ ! -d "$SRC/.git" ]; then
  git init -q "$SRC"
  git -C "$SRC" remote add origin {q(s.repo_url)}
fi
git -C "$SRC" fetch -q --depth 1 origin {q(s.ref)}
git -C "$SRC" checkout -q --force FETCH_HEAD
python3 -m venv "$WS/venv"
. "$WS/venv/bin/activate"
pip install -q --upgrade pip
pip install -q -e "$SRC[pods]" {q(f"jax[{s.jax_extra}]") if s.jax_extra else ""}
set +e
export TRADELAB_OUTPUTS="$WS/outputs"
mkdir -p "$TRADELAB_OUTPUTS"
python -m tradelab_jax.pod.logship "$LOG" --every {int(s.log_every_s)} &
SHIP=$!
touch "$WS/.tradelab-train-start"
say "training"
cd "$SRC"
{train}
rc=$?
say "training exited with $rc; pushing runs to S3"
tradelab archive push --newer-than "$WS/.tradelab-train-start" --allow-running
push_rc=$?
say "push exited with $push_rc"
kill "$SHIP" 2>/dev/null
python -m tradelab_jax.pod.logship "$LOG" --once
touch "$WS/.tradelab-done"
POD="${{RUNPOD_POD_ID:-}}"
if [ -n "$POD" ]; then
  say "{s.on_exit} pod $POD"
  {on_exit}
fi
exec sleep infinity
"""


def encode_script(script: str) -> str:
    return base64.b64encode(script.encode()).decode()


def missing_aws_credentials(aws_credentials: str, environ: Mapping[str, str] | None = None) -> list[str]:
    """The AWS variables ``--aws-credentials env`` copies to the pod that this environment lacks."""
    environ = os.environ if environ is None else environ
    if aws_credentials != "env":
        return []
    return [k for k in AWS_SECRET_NAMES[:2] if not environ.get(k)]


def missing_aws_message(missing: list[str]) -> str:
    verb = "is" if len(missing) == 1 else "are"
    return (
        f"the pod needs S3 credentials to push its run, but {' and '.join(missing)} {verb} not set: "
        "export AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (ideally a key limited to the archive "
        "bucket), or pass --aws-credentials runpod-secret"
    )


def pod_env(
    *,
    s3: Mapping[str, str],
    aws_credentials: str,
    extra: Mapping[str, str],
    script: str,
    environ: Mapping[str, str] | None = None,
    strict: bool = True,
    pod_api_key: str = "none",
) -> tuple[tuple[tuple[str, str], ...], frozenset[str]]:
    """The pod's environment and which keys are secret.

    AWS credentials are taken by reference: ``env`` copies them from this process's environment at launch
    time; ``runpod-secret`` passes ``{{ RUNPOD_SECRET_<name> }}`` references that RunPod fills in itself,
    so the keys never pass through this machine; ``none`` passes nothing (the push at the end will fail).
    Missing ``env`` credentials are refused when ``strict``, else (a dry-run) shown as placeholders.
    """
    environ = os.environ if environ is None else environ
    env: dict[str, str] = {}
    secret: set[str] = set()
    for key, value in extra.items():
        if not _ENV_KEY.match(key):
            raise UserError(
                f"invalid --env name {key!r}: use letters, digits and '_', not starting with a digit"
            )
        env[key] = value
    env.update({k: v for k, v in s3.items() if v})
    if aws_credentials == "env":
        missing = missing_aws_credentials(aws_credentials, environ)
        if missing and strict:
            raise UserError(missing_aws_message(missing))
        for key in AWS_SECRET_NAMES:
            if environ.get(key):
                env[key] = environ[key]
                secret.add(key)
            elif key in missing:  # never an empty value: the pod's push would fail after training
                env[key] = placeholder(key)
    elif aws_credentials == "runpod-secret":
        for key in AWS_SECRET_NAMES[:2]:
            env[key] = "{{ RUNPOD_SECRET_" + key.lower() + " }}"
    if pod_api_key == "runpod-secret":  # lets the script stop its own pod when training ends
        env["RUNPOD_API_KEY"] = "{{ RUNPOD_SECRET_runpod_api_key }}"
    for key in AWS_PLAIN_NAMES:
        if environ.get(key):
            env.setdefault(key, environ[key])
    env[SCRIPT_ENV] = encode_script(script)
    return tuple(env.items()), frozenset(secret)
