"""The pod's log goes to S3 (logship, run on the pod) and comes back with `tradelab pod logs`."""

from __future__ import annotations

import contextlib

import pytest

from tradelab_jax.cli import main


@pytest.fixture
def s3_env(moto_endpoint, monkeypatch, tmp_path):
    import boto3

    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIALOGTEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "log-secret")
    monkeypatch.setenv("AWS_DEFAULT_REGION", "us-east-1")
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("TRADELAB_S3_BUCKET", "pod-logs-test")
    monkeypatch.setenv("TRADELAB_S3_PREFIX", "lab")
    monkeypatch.setenv("TRADELAB_S3_ENDPOINT_URL", moto_endpoint)
    client = boto3.session.Session().client("s3", endpoint_url=moto_endpoint)
    with contextlib.suppress(client.exceptions.BucketAlreadyOwnedByYou):
        client.create_bucket(Bucket="pod-logs-test")
    return client


def test_logship_then_pod_logs(s3_env, monkeypatch, tmp_path, capsys):
    from tradelab_jax.pod import logship

    log = tmp_path / "tradelab-pod.log"
    log.write_text("".join(f"line {i}\n" for i in range(10)))
    monkeypatch.setenv("RUNPOD_POD_ID", "podLOG1")
    assert logship.main([str(log), "--once"]) == 0
    body = s3_env.get_object(Bucket="pod-logs-test", Key="lab/pods/podLOG1/pod.log")["Body"].read()
    assert body == log.read_bytes()

    assert main(["pod", "logs", "podLOG1", "--tail", "2"]) == 0
    assert capsys.readouterr().out == "line 8\nline 9\n"


def test_pod_logs_before_any_upload(s3_env, capsys):
    assert main(["pod", "logs", "podNOPE"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no log for pod podNOPE") and "Traceback" not in err
