"""A loopback server speaking RunPod's GraphQL API as the SDK calls it, recording every request.

RunPod's SDK sends ``{"query": "<GraphQL text>"}`` with every value pasted into the text. The server parses
that text with a small GraphQL parser (strings with escapes, numbers, enums, lists, objects), so a value
that escaped its string literal would show up as a parse error or as an extra operation in the record.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

API_KEY = "rpTESTkey-0123456789-DO-NOT-LEAK"
AWS_SECRET = "awsTESTsecret/DO-NOT-LEAK+xyz"
GPU_TYPES = {"NVIDIA GeForce RTX 4090", "NVIDIA A40"}

_TOKEN = re.compile(
    r'(?P<ws>[\s,\ufeff]+|#[^\n]*)|(?P<str>"(?:[^"\\\n]|\\.)*")|(?P<num>-?\d+(?:\.\d+)?)'
    r"|(?P<name>[_A-Za-z][_0-9A-Za-z]*)|(?P<punct>[{}()\[\]:!$=@|&]|\.\.\.)"
)


class GraphQLSyntaxError(ValueError):
    pass


def _tokens(text: str) -> list[tuple[str, str]]:
    out, pos = [], 0
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if not m:
            raise GraphQLSyntaxError(f"unexpected character {text[pos]!r} at {pos}")
        pos = m.end()
        if m.lastgroup != "ws":
            out.append((m.lastgroup, m.group()))
    return out


def parse_graphql(text: str) -> list[dict]:
    """Operations of a document: ``[{"type", "name", "fields": [{"name", "args", "fields"}]}]``."""
    toks = _tokens(text)
    i = 0

    def peek(value=None):
        return i < len(toks) and (value is None or toks[i][1] == value)

    def take(value=None):
        nonlocal i
        if i >= len(toks) or (value is not None and toks[i][1] != value):
            got = toks[i][1] if i < len(toks) else "end of text"
            raise GraphQLSyntaxError(f"expected {value or 'a token'}, got {got!r}")
        i += 1
        return toks[i - 1]

    def value():
        kind, tok = take()
        if kind == "str":
            return json.loads(tok)  # GraphQL string escapes are JSON's
        if kind == "num":
            return float(tok) if "." in tok else int(tok)
        if tok == "[":
            items = []
            while not peek("]"):
                items.append(value())
            take("]")
            return items
        if tok == "{":
            obj = {}
            while not peek("}"):
                key = take()[1]
                take(":")
                obj[key] = value()
            take("}")
            return obj
        if kind == "name":
            return {"true": True, "false": False, "null": None}.get(tok, tok)  # enums as names
        raise GraphQLSyntaxError(f"unexpected {tok!r}")

    def selection():
        take("{")
        fields = []
        while not peek("}"):
            name = take()[1]
            args = {}
            if peek("("):
                take("(")
                while not peek(")"):
                    key = take()[1]
                    take(":")
                    args[key] = value()
                take(")")
            fields.append({"name": name, "args": args, "fields": selection() if peek("{") else []})
        take("}")
        return fields

    ops = []
    while i < len(toks):
        op_type = take()[1]
        if op_type not in {"query", "mutation"}:
            raise GraphQLSyntaxError(f"unexpected {op_type!r}")
        name = take()[1] if toks[i][0] == "name" else None
        ops.append({"type": op_type, "name": name, "fields": selection()})
    return ops


class FakeRunPod:
    """Answers gpuTypes, podFindAndDeployOnDemand, pod, myself.pods, podStop and podTerminate."""

    def __init__(self):
        self.requests: list[dict] = []
        self.pods: dict[str, dict] = {}
        self.fail_with: str | None = None

    def deploys(self) -> list[dict]:
        return [r for r in self.requests if r["op"] == "podFindAndDeployOnDemand"]

    def answer(self, headers, body) -> tuple[int, dict]:
        record = {"headers": dict(headers), "body": body, "op": None, "args": None, "ops": None}
        self.requests.append(record)
        if headers.get("Authorization") != f"Bearer {API_KEY}":
            return 401, {"errors": [{"message": "Unauthorized"}]}
        if self.fail_with:
            return 200, {"errors": [{"message": self.fail_with}], "data": None}
        try:
            ops = parse_graphql(body["query"])
        except GraphQLSyntaxError as err:
            return 400, {"errors": [{"message": f"Syntax Error: {err}"}]}
        record["ops"] = ops
        if len(ops) != 1 or len(ops[0]["fields"]) != 1:  # the SDK sends one operation with one field
            return 400, {"errors": [{"message": "more than one operation: injected GraphQL"}]}
        [op] = ops
        [field] = op["fields"]
        record["op"], record["args"] = field["name"], field["args"]
        args = field["args"]
        if field["name"] == "gpuTypes":
            gpu = args["input"]["id"]
            return 200, {"data": {"gpuTypes": [{"id": gpu, "displayName": gpu}] if gpu in GPU_TYPES else []}}
        if field["name"] == "podFindAndDeployOnDemand" and op["type"] == "mutation":
            spec = args["input"]
            pod_id = f"pod{len(self.pods) + 1:04d}"
            self.pods[pod_id] = {
                "id": pod_id,
                "name": spec["name"],
                "imageName": spec["imageName"],
                "desiredStatus": "RUNNING",
                "gpuCount": spec["gpuCount"],
                "costPerHr": 0.69,
                "machine": {"gpuDisplayName": "RTX 4090", "podHostId": f"{pod_id}-host"},
                "machineId": "m1",
                "env": [f"{e['key']}={e['value']}" for e in spec["env"]],
                "runtime": None,
                "uptimeSeconds": 0,
                "lastStatusChange": "Rented by User",
            }
            return 200, {"data": {"podFindAndDeployOnDemand": self.pods[pod_id]}}
        if field["name"] == "podStop" and op["type"] == "mutation":
            pod = self.pods[args["input"]["podId"]]
            pod["desiredStatus"] = "EXITED"
            return 200, {"data": {"podStop": {"id": pod["id"], "desiredStatus": "EXITED"}}}
        if field["name"] == "podTerminate" and op["type"] == "mutation":
            self.pods.pop(args["input"]["podId"], None)
            return 200, {"data": {"podTerminate": None}}
        if field["name"] == "myself":
            return 200, {"data": {"myself": {"pods": list(self.pods.values())}}}
        if field["name"] == "pod":
            return 200, {"data": {"pod": self.pods.get(args["input"]["podId"])}}
        return 400, {"errors": [{"message": "unknown operation"}]}


@pytest.fixture
def fake_runpod(monkeypatch):
    state = FakeRunPod()

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("Content-Length", 0))
            body = json.loads(self.rfile.read(length))
            assert self.path == "/graphql"
            code, payload = state.answer(self.headers, body)
            data = json.dumps(payload).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    monkeypatch.setenv("RUNPOD_API_BASE_URL", f"http://{host}:{port}")
    monkeypatch.setenv("RUNPOD_API_KEY", API_KEY)
    state.url = f"http://{host}:{port}"
    yield state
    server.shutdown()
    thread.join()


@pytest.fixture
def launch_env(monkeypatch, tmp_path):
    """S3 settings and AWS credentials a launch copies into the pod."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAPODTEST000001")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", AWS_SECRET)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.setenv("TRADELAB_S3_BUCKET", "lab-runs")
    monkeypatch.setenv("TRADELAB_S3_PREFIX", "team")
    monkeypatch.delenv("TRADELAB_S3_ENDPOINT_URL", raising=False)
    monkeypatch.setenv("TRADELAB_REPO_URL", "https://github.com/example/tradelab_jax.git")


@pytest.fixture
def unchecked_overrides(monkeypatch):
    """Skip the local `tradelab train` config check: the transport must be safe for any override at all."""
    from tradelab_jax.pod import cli

    monkeypatch.setattr(cli, "check_train_args", lambda train_args: None)


@pytest.fixture
def checkout(monkeypatch, tmp_path):
    """``checkout(origin)``: a checkout whose ``git remote get-url origin`` prints ``origin`` (a stub git on
    PATH); ``None`` for a checkout without an origin remote; ``git=False`` for a machine without git."""
    from tradelab_jax.pod import spec

    def make(origin: str | None, *, git: bool = True) -> Path:
        root = tmp_path / "clone"
        (root / ".git").mkdir(parents=True, exist_ok=True)
        monkeypatch.setattr(spec, "CHECKOUT", root)
        bin_dir = tmp_path / "git-bin"
        bin_dir.mkdir(exist_ok=True)
        if git:
            no_origin = "echo \"error: No such remote 'origin'\" >&2; exit 2"
            answer = f"echo {shlex.quote(origin)}" if origin else no_origin
            (bin_dir / "git").write_text(
                f'#!/bin/sh\n[ "$*" = "remote get-url origin" ] || exit 99\n{answer}\n'
            )
            (bin_dir / "git").chmod(0o755)
            monkeypatch.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ['PATH']}")
        else:
            monkeypatch.setenv("PATH", str(bin_dir))  # nothing on PATH, git included
        return root

    return make


@pytest.fixture
def fresh_clone(monkeypatch, checkout):
    """A new user's shell in a fresh https clone: no TRADELAB_* or AWS settings, no RunPod key or SDK."""
    for name in (
        "TRADELAB_REPO_URL",
        "TRADELAB_REPO_REF",
        "TRADELAB_S3_BUCKET",
        "TRADELAB_S3_PREFIX",
        "TRADELAB_S3_ENDPOINT_URL",
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "RUNPOD_API_KEY",
        "RUNPOD_API_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setitem(sys.modules, "runpod", None)  # `import runpod` raises ImportError
    checkout("https://github.com/example/tradelab_jax.git")


@pytest.fixture
def secrets() -> dict[str, str]:
    return {"api_key": API_KEY, "aws_secret": AWS_SECRET}


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()
