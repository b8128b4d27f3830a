"""Re-push uploads only what changed; an interrupted multipart upload is resumed; --prune."""

from __future__ import annotations

import pytest

from tradelab_jax.archive.ops import get_manifest, pull_run, push_run

MiB = 1024 * 1024
RUN = "20261126T150000Z_inc"


def test_repush_uploads_only_changed_files(s3, run_factory, random_bytes, tmp_path, call_counter):
    spec, client = s3
    run = run_factory(
        tmp_path / "outputs",
        RUN,
        {"metrics.jsonl": b"a\n", "equity.png": b"png", "checkpoints/big.bin": random_bytes(6 * MiB, seed=3)},
    )
    push_run(client, spec, run, RUN)

    calls = call_counter(client)
    res = push_run(client, spec, run, RUN)
    assert res.uploaded == [] and len(res.unchanged) == 5
    assert calls["PutObject"] == 0 and calls["UploadPart"] == 0  # nothing changed: nothing written
    assert not res.written

    (run / "metrics.jsonl").write_bytes(b"a\nb\n")
    (run / "telemetry.parquet").write_bytes(b"new file")
    calls.clear()
    res = push_run(client, spec, run, RUN)
    assert sorted(res.uploaded) == ["metrics.jsonl", "telemetry.parquet"]
    assert calls["PutObject"] == 3 and calls["UploadPart"] == 0 and calls["CreateMultipartUpload"] == 0
    files = {e["path"]: e for e in get_manifest(client, spec, RUN)["files"]}
    assert files["telemetry.parquet"]["size"] == 8 and len(files) == 6


def test_interrupted_multipart_upload_is_resumed(s3, run_factory, random_bytes, tmp_path, call_counter):
    from tradelab_jax.archive.client import make_client

    spec, client = s3
    big = random_bytes(12 * MiB + 7, seed=4)
    run = run_factory(tmp_path / "outputs", RUN, {"a_first.txt": b"before", "checkpoints/big.bin": big})

    # Kill the first push after two of the three parts reached S3.
    flaky = make_client(spec)
    parts_sent = []

    def die_after_two(**_):
        parts_sent.append(1)
        if len(parts_sent) == 2:
            raise KeyboardInterrupt("simulated kill")

    flaky.meta.events.register("after-call.s3.UploadPart", die_after_two)
    with pytest.raises(KeyboardInterrupt):
        push_run(flaky, spec, run, RUN)
    assert get_manifest(client, spec, RUN) is None  # no manifest: the run is not archived yet
    uploads = client.list_multipart_uploads(Bucket=spec.bucket)["Uploads"]
    assert len(uploads) == 1
    listed = client.list_parts(Bucket=spec.bucket, Key=uploads[0]["Key"], UploadId=uploads[0]["UploadId"])
    assert len(listed["Parts"]) == 2

    calls = call_counter(client)
    res = push_run(client, spec, run, RUN)
    assert calls["UploadPart"] == 1 and calls["CreateMultipartUpload"] == 0  # only the missing part
    assert "a_first.txt" in res.unchanged  # it reached S3 before the kill: found by HEAD, not re-sent
    assert "checkpoints/big.bin" in res.uploaded
    assert "Uploads" not in client.list_multipart_uploads(Bucket=spec.bucket)
    pulled = pull_run(client, spec, RUN, tmp_path / "restored")
    assert (pulled.dest / "checkpoints/big.bin").read_bytes() == big


def test_resume_skips_parts_that_no_longer_match(s3, run_factory, random_bytes, tmp_path, call_counter):
    from tradelab_jax.archive.client import make_client

    spec, client = s3
    big = bytearray(random_bytes(11 * MiB, seed=5))
    run = run_factory(tmp_path / "outputs", RUN, {"big.bin": bytes(big)})
    flaky = make_client(spec)
    sent = []

    def die_after_two(**_):
        sent.append(1)
        if len(sent) == 2:
            raise KeyboardInterrupt

    flaky.meta.events.register("after-call.s3.UploadPart", die_after_two)
    with pytest.raises(KeyboardInterrupt):
        push_run(flaky, spec, run, RUN)
    big[0] ^= 0xFF  # the first part changed since the interrupted upload
    (run / "big.bin").write_bytes(bytes(big))

    calls = call_counter(client)
    push_run(client, spec, run, RUN)
    assert calls["UploadPart"] == 2  # parts 1 (changed) and 3 (missing); part 2 reused
    assert client.get_object(Bucket=spec.bucket, Key=f"runs/{RUN}/big.bin")["Body"].read() == bytes(big)


def test_prune_removes_files_the_run_no_longer_has(s3, run_factory, tmp_path):
    spec, client = s3
    run = run_factory(tmp_path / "outputs", RUN, {"checkpoints/old.bin": b"old", "keep.txt": b"k"})
    push_run(client, spec, run, RUN)
    (run / "checkpoints/old.bin").unlink()
    res = push_run(client, spec, run, RUN, prune=True)
    assert res.pruned == ["checkpoints/old.bin"]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=spec.bucket)["Contents"]}
    assert f"runs/{RUN}/checkpoints/old.bin" not in keys and f"runs/{RUN}/keep.txt" in keys
