"""A moto S3 server on loopback for the archive tests, with fake credentials and a fresh bucket per test."""

from __future__ import annotations

import itertools
import json
import logging
from collections import Counter
from pathlib import Path

import pytest

SECRET = "tradelabTESTsecret/DO-NOT-LEAK+0123456789abcdefXYZ"
ACCESS_KEY = "AKIATRADELABTEST0001"
_bucket_numbers = itertools.count()


@pytest.fixture(scope="session")
def moto_endpoint() -> str:
    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    yield f"http://{host}:{port}"
    server.stop()


@pytest.fixture
def aws_env(monkeypatch, tmp_path):
    """Fake credentials through the standard chain; nothing from the host's ~/.aws or an instance role."""
    for name in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN", "TRADELAB_S3_PREFIX"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", ACCESS_KEY)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-aws-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-aws-credentials"))


@pytest.fixture
def s3(moto_endpoint, aws_env, monkeypatch, tmp_path):
    """(spec, client) for a new bucket; TRADELAB_S3_* and TRADELAB_OUTPUTS point at it and a temp folder."""
    from tradelab_jax.archive.client import make_client
    from tradelab_jax.archive.config import spec_from

    bucket = f"tradelab-test-{next(_bucket_numbers)}"
    monkeypatch.setenv("TRADELAB_S3_BUCKET", bucket)
    monkeypatch.setenv("TRADELAB_S3_ENDPOINT_URL", moto_endpoint)
    monkeypatch.setenv("TRADELAB_OUTPUTS", str(tmp_path / "outputs"))
    spec = spec_from(multipart_threshold_mib=5, part_size_mib=5)
    client = make_client(spec)
    client.create_bucket(Bucket=bucket)
    return spec, client


class CallCounter(Counter):
    """Counts S3 operations a client sends (``counter['UploadPart']``), via botocore's event hooks."""

    def __init__(self, client):
        super().__init__()
        client.meta.events.register("before-call.s3", self._seen)

    def _seen(self, model, **_):
        self[model.name] += 1


def make_run(outputs: Path, run_id: str, files: dict[str, bytes], status: str = "done") -> Path:
    run = outputs / run_id
    run.mkdir(parents=True, exist_ok=True)
    (run / "status.json").write_text(json.dumps({"status": status}))
    (run / "config.yaml").write_text(f"tag: {run_id.split('/')[-1]}\n")
    for rel, data in files.items():
        path = run / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    return run


def pseudo_random_bytes(n: int, seed: int = 0) -> bytes:
    import random

    return random.Random(seed).randbytes(n)


@pytest.fixture
def run_factory():
    return make_run


@pytest.fixture
def call_counter():
    return CallCounter


@pytest.fixture
def random_bytes():
    return pseudo_random_bytes


@pytest.fixture
def fake_secrets() -> tuple[str, str]:
    """(access key id, secret access key) that aws_env puts in the environment."""
    return ACCESS_KEY, SECRET
