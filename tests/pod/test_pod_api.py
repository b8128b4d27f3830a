"""`tradelab pod` through RunPod's Python SDK, against a loopback server speaking RunPod's GraphQL API."""

from __future__ import annotations

import base64
import json
import os
import socket
import sys

import pytest

from tradelab_jax.cli import main
from tradelab_jax.pod.spec import DOCKER_ARGS

OVERRIDES = [
    "ppo.lr=3e-4",
    'tag=a"b; echo }} mutation { podTerminate(input: {podId: "x"}) }',
    'name=$(touch /tmp/x) `id` \\" \n podStop',
]


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and err.startswith("error: ") and "\n" not in err, err
    return err


def test_launch_goes_through_the_sdk_and_injects_nothing(
    fake_runpod, launch_env, unchecked_overrides, secrets, capsys
):
    argv = [
        "pod",
        "launch",
        "--name",
        "tradelab-test",
        "--gpu",
        "NVIDIA A40",
        "--gpu-count",
        "2",
        "--",
        *OVERRIDES,
    ]
    assert main(argv) == 0
    out = capsys.readouterr()
    assert "launched pod pod0001" in out.out
    # runpod.create_pod: a gpuTypes check, then one deploy mutation, each one operation with one field
    assert [r["op"] for r in fake_runpod.requests] == ["gpuTypes", "podFindAndDeployOnDemand"]
    check, req = fake_runpod.requests
    assert check["args"] == {"input": {"id": "NVIDIA A40"}}
    assert req["headers"]["Authorization"] == f"Bearer {secrets['api_key']}"
    assert req["headers"]["User-Agent"].startswith("RunPod-Python-SDK/")  # sent by the SDK's client
    assert set(req["body"]) == {"query"} and req["ops"][0]["type"] == "mutation"
    for word in ("podTerminate", "podStop", "$(", "`"):
        assert word not in req["body"]["query"]  # the overrides are only inside the base64 script
    spec = req["args"]["input"]
    assert spec["name"] == "tradelab-test" and spec["gpuTypeId"] == "NVIDIA A40" and spec["gpuCount"] == 2
    assert spec["imageName"] == "python:3.12-slim-bookworm" and spec["volumeMountPath"] == "/workspace"
    assert spec["cloudType"] == "ALL" and spec["volumeInGb"] == 20 and spec["containerDiskInGb"] == 30
    assert spec["dockerArgs"] == DOCKER_ARGS
    env = {e["key"]: e["value"] for e in spec["env"]}
    assert env["TRADELAB_S3_BUCKET"] == "lab-runs" and env["TRADELAB_S3_PREFIX"] == "team"
    assert env["AWS_SECRET_ACCESS_KEY"] == secrets["aws_secret"]  # the pod needs it to push
    assert "RUNPOD_API_KEY" not in env  # the account key never goes to the pod
    script = base64.b64decode(env["TRADELAB_POD_SCRIPT"]).decode()
    assert (
        'tradelab train ppo.lr=3e-4 \'tag=a"b; echo }} mutation { podTerminate(input: {podId: "x"}) }\''
        in (script)
    )
    assert "'name=$(touch /tmp/x) `id` \\\" \n podStop'" in script  # quoted whole, newline included
    assert list(fake_runpod.pods) == ["pod0001"]
    for text in (out.out, out.err):
        assert secrets["api_key"] not in text and secrets["aws_secret"] not in text


def test_dry_run_prints_the_exact_sdk_requests_with_secrets_masked(
    fake_runpod, launch_env, unchecked_overrides, secrets, capsys
):
    argv = ["pod", "launch", "--name", "tradelab-dry", "--", *OVERRIDES]
    assert main([*argv[:4], "--dry-run", *argv[4:]]) == 0
    out = capsys.readouterr()
    assert fake_runpod.requests == []  # nothing was sent
    shown = json.loads(out.out)
    assert len(shown) == 2
    for request in shown:
        assert request["headers"]["Authorization"] == "Bearer ***"
        assert request["url"] == f"{fake_runpod.url}/graphql"
    for text in (out.out, out.err):
        assert secrets["api_key"] not in text and secrets["aws_secret"] not in text
    assert "tradelab train ppo.lr=3e-4" in out.err  # the decoded start-up script, for reading

    assert main(argv) == 0
    for request, sent in zip(shown, fake_runpod.requests, strict=True):
        query = sent["body"]["query"]
        for secret in (secrets["aws_secret"], os.environ["AWS_ACCESS_KEY_ID"]):
            query = query.replace(f'value: "{secret}"', 'value: "***"')
        assert request["body"] == {"query": query}  # byte for byte what the SDK sent, bar masked values
        assert request["headers"]["User-Agent"] == sent["headers"]["User-Agent"]


def test_status_stop_and_terminate(fake_runpod, launch_env, capsys):
    assert main(["pod", "launch", "--", "seed=1"]) == 0
    assert main(["pod", "launch", "--", "seed=2"]) == 0
    capsys.readouterr()
    assert main(["pod", "status", "pod0001", "--json"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["id"] == "pod0001" and row["status"] == "RUNNING" and row["gpu"] == "1x RTX 4090"
    assert main(["pod", "status"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split()[:2] == ["POD", "ID"] and len(table) == 3
    assert main(["pod", "stop", "pod0001"]) == 0
    assert "EXITED" in capsys.readouterr().out
    assert fake_runpod.requests[-1]["op"] == "podStop"
    assert fake_runpod.requests[-1]["args"] == {"input": {"podId": "pod0001"}}
    assert main(["pod", "stop", "--terminate", "pod0002"]) == 0
    assert fake_runpod.requests[-1]["op"] == "podTerminate"
    assert "pod0002" not in fake_runpod.pods
    assert main(["pod", "status", "pod0002"]) == 2
    assert "no pod 'pod0002'" in _error_line(capsys)


def test_missing_api_key_names_the_variable(fake_runpod, launch_env, monkeypatch, capsys):
    monkeypatch.delenv("RUNPOD_API_KEY")
    assert main(["pod", "status"]) == 2
    assert "RUNPOD_API_KEY" in _error_line(capsys)
    assert fake_runpod.requests == []


def test_rejected_key_and_api_errors_are_one_sentence(fake_runpod, launch_env, monkeypatch, capsys):
    monkeypatch.setenv("RUNPOD_API_KEY", "wrong-key")
    assert main(["pod", "status"]) == 2
    assert "rejected the API key" in _error_line(capsys)
    monkeypatch.setenv("RUNPOD_API_KEY", "rpTESTkey-0123456789-DO-NOT-LEAK")
    fake_runpod.fail_with = "There are no longer any instances available with the requested specifications."
    assert main(["pod", "launch", "--", "seed=1"]) == 2
    assert "no longer any instances available" in _error_line(capsys)


def test_unreachable_api_is_one_sentence(launch_env, monkeypatch, capsys):
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("RUNPOD_API_KEY", "k")
    assert main(["pod", "status", "--api-url", f"http://127.0.0.1:{port}"]) == 2
    assert "cannot reach the RunPod API" in _error_line(capsys)


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["pod", "status", "--api-url", "http://api.example.com"], "plain http"),
        (["pod", "stop", "../x"], "invalid pod id"),
        (
            ["pod", "launch", "--repo-url", "https://user:tok@github.com/x/y.git", "--", "seed=1"],
            "without credentials",
        ),
        (["pod", "launch", "--ref", "main;rm", "--", "seed=1"], "invalid --ref"),
        (["pod", "launch", "--image", "bad image", "--", "seed=1"], "invalid --image"),
        (["pod", "launch", "--env", "NOEQUALS", "--", "seed=1"], "KEY=VALUE"),
        (["pod", "status", "--", "seed=1"], "takes no train overrides"),
        (["pod", "launch", "--env", 'X=a"b', "--", "seed=1"], "cannot be sent to RunPod"),
        (["pod", "launch", "--env", "X=a\\b", "--", "seed=1"], "cannot be sent to RunPod"),
        (["pod", "launch", "--env", "X=a\nb", "--", "seed=1"], "cannot be sent to RunPod"),
        (["pod", "launch", "--env", "X=a\nb", "--dry-run", "--", "seed=1"], "cannot be sent to RunPod"),
        (["pod", "launch", "--gpu", 'A40" }', "--", "seed=1"], "invalid --gpu"),
        (["pod", "stop", 'p"x'], "invalid pod id"),
    ],
)
def test_bad_input_is_refused_before_any_request(fake_runpod, launch_env, argv, needle, capsys):
    assert main(argv) == 2
    err = _error_line(capsys)
    assert needle in err and "tok" not in err
    assert fake_runpod.requests == []


def test_launch_without_aws_credentials_says_what_to_set(fake_runpod, launch_env, monkeypatch, capsys):
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert main(["pod", "launch", "--", "seed=1"]) == 2
    assert "AWS_SECRET_ACCESS_KEY" in _error_line(capsys)
    assert main(["pod", "launch", "--aws-credentials", "runpod-secret", "--", "seed=1"]) == 0
    env = {e["key"]: e["value"] for e in fake_runpod.requests[-1]["args"]["input"]["env"]}
    assert env["AWS_SECRET_ACCESS_KEY"] == "{{ RUNPOD_SECRET_aws_secret_access_key }}"


def test_missing_repo_url(fake_runpod, launch_env, monkeypatch, checkout, capsys):
    monkeypatch.delenv("TRADELAB_REPO_URL")
    checkout(None)  # a checkout without an origin remote
    assert main(["pod", "launch", "--", "seed=1"]) == 2
    assert "--repo-url" in _error_line(capsys)


def test_secret_that_cannot_be_sent_is_named_not_shown(fake_runpod, launch_env, monkeypatch, capsys):
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", 'sec"ret-DO-NOT-LEAK')
    assert main(["pod", "launch", "--", "seed=1"]) == 2
    err = _error_line(capsys)
    assert "AWS_SECRET_ACCESS_KEY" in err and "DO-NOT-LEAK" not in err
    assert fake_runpod.requests == []


def test_unknown_gpu_type_is_one_sentence(fake_runpod, launch_env, capsys):
    assert main(["pod", "launch", "--gpu", "NVIDIA Imaginary 9000", "--", "seed=1"]) == 2
    assert "no GPU type 'NVIDIA Imaginary 9000'" in _error_line(capsys)
    assert [r["op"] for r in fake_runpod.requests] == ["gpuTypes"] and fake_runpod.pods == {}


def test_api_url_flag_reaches_the_sdk_for_this_call_only(fake_runpod, launch_env, monkeypatch, capsys):
    monkeypatch.setenv("RUNPOD_API_BASE_URL", "https://api.invalid")
    assert main(["pod", "status", "--api-url", fake_runpod.url]) == 0
    assert [r["op"] for r in fake_runpod.requests] == ["myself"]
    assert os.environ["RUNPOD_API_BASE_URL"] == "https://api.invalid"
    import runpod

    assert runpod.api_key != "rpTESTkey-0123456789-DO-NOT-LEAK"  # the key is set for the call only


def test_missing_sdk_says_how_to_install_it(fake_runpod, launch_env, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "runpod", None)
    for argv in (["pod", "status"], ["pod", "launch", "--", "seed=1"]):
        assert main(argv) == 2
        assert "pip install -e '.[pods]'" in _error_line(capsys)
    assert fake_runpod.requests == []  # (a dry-run needs no SDK: test_pod_dry_run.py)
