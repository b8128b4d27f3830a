"""`tradelab pod launch` refuses before renting what would fail on the pod, and `--dry-run` needs only
what printing the request needs: no SDK, no keys, no bucket (placeholders and warnings instead)."""

from __future__ import annotations

import json
import re
import shlex
import sys
from pathlib import Path

import pytest

from tradelab_jax.cli import main
from tradelab_jax.pod import spec as pod_spec
from tradelab_jax.pod.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
AWS_KEYS = ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")
ORIGIN = "https://github.com/someone/tradelab_jax.git"


def _error_line(capsys) -> str:
    out = capsys.readouterr()
    err = out.err.strip()
    assert "Traceback" not in err and err.startswith("error: ") and "\n" not in err, err
    assert out.out == ""  # no request printed
    return err


def _warnings(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.startswith("warning: ")]


def _shown_env(stdout: str) -> dict[str, str]:
    """The pod environment in a dry-run's stdout: the SDK's deploy mutation, or create_pod's arguments."""
    shown = json.loads(stdout)
    if isinstance(shown, dict):
        return shown["runpod.create_pod"]["env"]
    query = shown[1]["body"]["query"]
    return dict(re.findall(r'\{ key: "([^"]*)", value: "([^"]*)" \}', query))


def _commands(path: Path) -> list[list[str]]:
    """Every `tradelab pod ...` command in ``path``: lines of its code blocks and inline code spans with
    arguments (a bare `tradelab pod stop` in prose names the command rather than running it)."""
    found, in_block = [], False
    for line in path.read_text().splitlines():
        if line.lstrip().startswith("```"):
            in_block = not in_block
        elif in_block and line.strip().startswith("tradelab pod "):
            found.append(shlex.split(line, comments=True))
        elif not in_block:
            spans = [shlex.split(span) for span in re.findall(r"`(tradelab pod [^`]*)`", line)]
            found += [argv for argv in spans if len(argv) > 3]
    return found


# ---------------------------------------------------------------------------------------------------------
# 1. The train overrides get `tradelab train`'s own config check before anything is built or sent


@pytest.mark.parametrize("dry_run", [True, False])
@pytest.mark.parametrize(
    ("train_args", "needle"),
    [
        (["ppo.lr=3e-4", "tag=pod_demo"], "unknown config key 'ppo'"),  # docs/pods.md's old example
        (["agent.lr=fast"], "agent.lr"),
        (["-m", "agent.lr=3e-4,fast"], "agent.lr"),  # every value of a sweep is checked
        (["-m", "seed=0,1", "ppo.lr=1"], "unknown config key 'ppo'"),
        (["seed=0,1"], "-m"),  # Hydra refuses a sweep without -m only when the job starts
    ],
)
def test_overrides_train_would_refuse_are_refused_before_renting(
    fake_runpod, launch_env, train_args, needle, dry_run, capsys
):
    argv = ["pod", "launch", *(["--dry-run"] if dry_run else []), "--", *train_args]
    assert main(argv) == 2
    assert needle in _error_line(capsys)
    assert fake_runpod.requests == []


def test_hydra_flags_pass_through_and_only_overrides_are_checked(fake_runpod, launch_env, capsys):
    argv = ["pod", "launch", "--dry-run", "--", "-m", "seed=0,1", "agent.lr=3e-4,1e-3", "run.tag=pod_demo"]
    assert main(argv) == 0
    assert "\ntradelab train -m seed=0,1 agent.lr=3e-4,1e-3 run.tag=pod_demo\n" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------
# 2. AWS credentials: never an empty value; a launch refuses, a dry-run warns; secrets are always masked


def test_without_aws_credentials_dry_run_warns_and_launch_refuses(
    fake_runpod, launch_env, monkeypatch, capsys
):
    for key in AWS_KEYS:
        monkeypatch.delenv(key)
    assert main(["pod", "launch", "--dry-run", "--", "seed=1"]) == 0
    out = capsys.readouterr()
    env = _shown_env(out.out)
    for key in AWS_KEYS:
        assert env[key] == f"<{key} not set>"  # not "": that would fail the pod's push after training
    [warning] = _warnings(out.err)
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set" in warning

    assert main(["pod", "launch", "--", "seed=1"]) == 2
    err = _error_line(capsys)
    assert "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are not set" in err
    assert "--aws-credentials runpod-secret" in err
    assert fake_runpod.requests == []

    # Choosing no credentials is allowed and sends none.
    assert main(["pod", "launch", "--aws-credentials", "none", "--dry-run", "--", "seed=1"]) == 0
    out = capsys.readouterr()
    assert _warnings(out.err) == [] and not set(AWS_KEYS) & set(_shown_env(out.out))


def test_dry_run_without_the_sdk_shows_create_pod_arguments_masked(
    fake_runpod, launch_env, monkeypatch, secrets, capsys
):
    monkeypatch.setitem(sys.modules, "runpod", None)  # `import runpod` raises ImportError
    monkeypatch.setenv("AWS_SESSION_TOKEN", "sessionTOKEN-DO-NOT-LEAK")
    assert main(["pod", "launch", "--dry-run", "--name", "tradelab-dry", "--", "seed=1"]) == 0
    out = capsys.readouterr()
    kwargs = json.loads(out.out)["runpod.create_pod"]
    assert kwargs["name"] == "tradelab-dry" and kwargs["gpu_type_id"] == "NVIDIA GeForce RTX 4090"
    assert kwargs["env"]["TRADELAB_S3_BUCKET"] == "lab-runs"
    for key in (*AWS_KEYS, "AWS_SESSION_TOKEN"):
        assert kwargs["env"][key] == "***"
    for text in (out.out, out.err):
        for secret in (secrets["api_key"], secrets["aws_secret"], "AKIAPODTEST000001", "sessionTOKEN"):
            assert secret not in text
    assert "pip install -e '.[pods]'" in out.err and _warnings(out.err) == []
    assert fake_runpod.requests == []


# ---------------------------------------------------------------------------------------------------------
# 3. Repository URL and bucket: what a fresh clone has


def test_repo_url_defaults_to_the_checkouts_https_origin(
    fake_runpod, launch_env, monkeypatch, checkout, capsys
):
    monkeypatch.delenv("TRADELAB_REPO_URL")
    checkout(ORIGIN)
    assert main(["pod", "launch", "--dry-run", "--", "seed=1"]) == 0
    assert f"remote add origin {ORIGIN}\n" in capsys.readouterr().err
    assert main(["pod", "launch", "--", "seed=1"]) == 0
    assert f"code:      {ORIGIN} at main" in capsys.readouterr().out  # a launch says where the code is from
    other = "https://example.org/other.git"
    assert main(["pod", "launch", "--repo-url", other, "--dry-run", "--", "seed=1"]) == 0
    assert f"remote add origin {other}\n" in capsys.readouterr().err  # the flag wins


@pytest.mark.parametrize(
    ("origin", "derived"),
    [
        ("git@github.com:someone/tradelab_jax.git", "https://github.com/someone/tradelab_jax.git"),
        ("ssh://git@gitlab.example.org:2222/team/tradelab_jax.git", "https://gitlab.example.org/team/tradelab_jax.git"),
        ("git+ssh://git@bitbucket.org/team/tradelab_jax", "https://bitbucket.org/team/tradelab_jax"),
        ("https://someone:ghp_SECRET@github.com/someone/x.git", "https://github.com/someone/x.git"),
    ],
)
def test_an_ssh_origin_gives_its_https_form(fake_runpod, launch_env, monkeypatch, checkout, origin, derived,
                                            capsys):
    monkeypatch.delenv("TRADELAB_REPO_URL")
    checkout(origin)
    assert pod_spec.https_from_origin(origin) == derived
    assert main(["pod", "launch", "--dry-run", "--", "seed=1"]) == 0
    out = capsys.readouterr()
    assert f"remote add origin {derived}\n" in out.err and "ghp_SECRET" not in out.out + out.err
    [note] = [w for w in _warnings(out.err) if "--repo-url not given" in w]
    assert derived in note
    assert main(["pod", "launch", "--", "seed=1"]) == 0
    assert f"code:      {derived} at main" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("origin", "git", "needle"),
    [
        (None, True, "no repository to install on the pod: pass --repo-url"),
        ("/home/me/src/tradelab_jax", True, "has no https:// form a pod can clone"),  # a local clone
        ("file:///srv/git/tradelab_jax.git", True, "has no https:// form a pod can clone"),
        (ORIGIN, False, "no repository to install on the pod: pass --repo-url"),  # no git on PATH
    ],
)
def test_without_a_usable_origin_dry_run_shows_a_placeholder_and_launch_refuses(
    fake_runpod, launch_env, monkeypatch, checkout, origin, git, needle, capsys
):
    monkeypatch.delenv("TRADELAB_REPO_URL")
    checkout(origin, git=git)
    assert main(["pod", "launch", "--dry-run", "--", "seed=1"]) == 0
    out = capsys.readouterr()
    assert f"remote add origin '{pod_spec.REPO_PLACEHOLDER}'\n" in out.err
    [warning] = [w for w in _warnings(out.err) if "--repo-url" in w]
    assert needle in warning
    assert main(["pod", "launch", "--", "seed=1"]) == 2
    err = _error_line(capsys)
    assert needle in err and "--repo-url" in err
    assert fake_runpod.requests == []


def test_an_installed_package_does_not_ask_git(tmp_path, checkout):
    checkout(ORIGIN)  # a git on PATH that would answer
    assert pod_spec.checkout_origin(tmp_path) == ""  # no .git here: git would find an enclosing repo


def test_without_a_bucket_dry_run_shows_a_placeholder_and_launch_refuses(
    fake_runpod, launch_env, monkeypatch, capsys
):
    from tradelab_jax.archive import config as archive_config

    monkeypatch.delenv("TRADELAB_S3_BUCKET")
    monkeypatch.setattr(archive_config, "file_defaults", lambda path=None: {})  # whatever conf/ says
    assert main(["pod", "launch", "--dry-run", "--", "seed=1"]) == 0
    out = capsys.readouterr()
    env = _shown_env(out.out)
    assert env["TRADELAB_S3_BUCKET"] == "<TRADELAB_S3_BUCKET not set>" and env["TRADELAB_S3_PREFIX"] == "team"
    [warning] = _warnings(out.err)
    assert "--bucket or TRADELAB_S3_BUCKET" in warning
    assert main(["pod", "launch", "--dry-run", "--prefix", "../x", "--", "seed=1"]) == 2
    assert "invalid S3 prefix" in _error_line(capsys)  # the rest of the S3 settings is still checked
    assert main(["pod", "launch", "--", "seed=1"]) == 2
    assert "no S3 bucket given" in _error_line(capsys)
    assert fake_runpod.requests == []


# ---------------------------------------------------------------------------------------------------------
# The documented commands


def test_readme_pod_line_works_in_a_fresh_clone(fresh_clone, capsys):
    [argv] = _commands(ROOT / "README.md")
    assert argv[:3] == ["tradelab", "pod", "launch"] and "--dry-run" in argv
    assert main(argv[1:]) == 0
    out = capsys.readouterr()
    kwargs = json.loads(out.out)["runpod.create_pod"]  # the SDK is not installed
    assert kwargs["env"]["TRADELAB_S3_BUCKET"] == "<TRADELAB_S3_BUCKET not set>"
    assert "remote add origin https://github.com/example/tradelab_jax.git\n" in out.err
    warnings = _warnings(out.err)
    assert len(warnings) == 2 and "--bucket" in warnings[0] and "AWS_SECRET_ACCESS_KEY" in warnings[1]


def test_every_pod_command_in_the_docs_is_valid(fake_runpod, launch_env, capsys):
    commands = _commands(ROOT / "docs" / "pods.md") + _commands(ROOT / "README.md")
    launches = [argv for argv in commands if argv[2] == "launch"]
    assert len(launches) >= 3 and any("run.tag=pod_demo" in argv for argv in launches)
    for argv in commands:
        if argv[2] == "launch":  # the train overrides are checked; nothing is sent
            dry = argv if "--dry-run" in argv else [*argv[:3], "--dry-run", *argv[3:]]
            assert main(dry[1:]) == 0, f"{shlex.join(argv)}: {capsys.readouterr().err[-300:]}"
        else:
            build_parser().parse_args(argv[2:])  # argparse exits on an unknown flag or a missing argument
    assert fake_runpod.requests == []
