"""Credentials are used, never shown or stored: no secret in output, logs, manifests or local files."""

from __future__ import annotations

import logging

from tradelab_jax.cli import main


def test_no_secret_in_outputs_manifests_or_logs(
    s3, run_factory, fake_secrets, tmp_path, capsys, caplog, monkeypatch
):
    spec, client = s3
    access_key, secret = fake_secrets
    caplog.set_level(logging.DEBUG)
    run = run_factory(tmp_path / "outputs", "20261126T170000Z_sec", {"metrics.jsonl": b"{}\n"})
    assert main(["archive", "push", "-v", str(run)]) == 0
    assert main(["archive", "list"]) == 0
    assert main(["archive", "list", "--json"]) == 0
    monkeypatch.setenv("TRADELAB_OUTPUTS", str(tmp_path / "restored"))
    assert main(["archive", "pull", "-v", "20261126T170000Z_sec"]) == 0
    monkeypatch.setenv("TRADELAB_S3_BUCKET", "no-such-bucket-here")
    assert main(["archive", "list"]) == 2  # an error path too

    captured = capsys.readouterr()
    assert secret not in caplog.text  # botocore's own DEBUG log names the key id (not secret), never the key
    texts = [captured.out, captured.err]
    for obj in client.list_objects_v2(Bucket=spec.bucket)["Contents"]:
        texts.append(client.get_object(Bucket=spec.bucket, Key=obj["Key"])["Body"].read().decode("latin-1"))
        head = client.head_object(Bucket=spec.bucket, Key=obj["Key"])
        texts.append(repr(head.get("Metadata")))
    texts += [p.read_bytes().decode("latin-1") for p in tmp_path.rglob("*") if p.is_file()]
    for text in texts:
        assert secret not in text
        assert access_key not in text
