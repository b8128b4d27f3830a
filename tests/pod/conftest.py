"""A loopback server speaking RunPod's GraphQL API (as the SDK calls it), recording every request."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

API_KEY = "rpTESTkey-0123456789-DO-NOT-LEAK"
AWS_SECRET = "awsTESTsecret/DO-NOT-LEAK+xyz"


class FakeRunPod:
    """Answers podFindAndDeployOnDemand, pod, myself.pods, podStop and podTerminate like RunPod does."""

    def __init__(self):
        self.requests: list[dict] = []
        self.pods: dict[str, dict] = {}
        self.fail_with: str | None = None

    def answer(self, headers, body) -> tuple[int, dict]:
        self.requests.append({"headers": dict(headers), "body": body})
        if headers.get("Authorization") != f"Bearer {API_KEY}":
            return 401, {"errors": [{"message": "Unauthorized"}]}
        if self.fail_with:
            return 200, {"errors": [{"message": self.fail_with}], "data": None}
        query, variables = body["query"], body.get("variables") or {}
        if "podFindAndDeployOnDemand" in query:
            spec = variables["input"]
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
                "runtime": None,
                "uptimeSeconds": 0,
                "lastStatusChange": "Rented by User",
            }
            return 200, {"data": {"podFindAndDeployOnDemand": self.pods[pod_id]}}
        if "podStop" in query:
            pod = self.pods[variables["input"]["podId"]]
            pod["desiredStatus"] = "EXITED"
            return 200, {"data": {"podStop": {"id": pod["id"], "desiredStatus": "EXITED"}}}
        if "podTerminate" in query:
            self.pods.pop(variables["input"]["podId"], None)
            return 200, {"data": {"podTerminate": None}}
        if "myself" in query:
            return 200, {"data": {"myself": {"pods": list(self.pods.values())}}}
        if "pod(" in query:
            return 200, {"data": {"pod": self.pods.get(variables["input"]["podId"])}}
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
