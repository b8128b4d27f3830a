"""Pure pieces: S3 checksum/ETag expectations (hand-computed), run discovery, --newer-than."""

from __future__ import annotations

import base64
import hashlib
import os

from tradelab_jax.archive.config import spec_from
from tradelab_jax.archive.local import hash_file
from tradelab_jax.archive.transfer import remote_matches
from tradelab_jax.cli import main
from tradelab_jax.runs import find_runs

MiB = 1024 * 1024


def test_expected_checksums_follow_s3s_definitions(tmp_path, aws_env):
    data = bytes(range(256)) * (45 * 1024)  # 11.25 MiB -> parts of 5, 5 and 1.25 MiB
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    spec = spec_from(bucket="ok-bucket", multipart_threshold_mib=5, part_size_mib=5)
    lf = hash_file(path, "f.bin", spec.part_size_for(len(data)))
    chunks = [data[i : i + 5 * MiB] for i in range(0, len(data), 5 * MiB)]
    composite = hashlib.sha256(b"".join(hashlib.sha256(c).digest() for c in chunks)).digest()
    assert lf.parts == 3
    assert lf.expected_checksum() == base64.b64encode(composite).decode() + "-3"
    md5s = b"".join(hashlib.md5(c).digest() for c in chunks)
    assert lf.expected_etag() == hashlib.md5(md5s).hexdigest() + "-3"

    head = {"ContentLength": len(data), "ChecksumSHA256": lf.expected_checksum()}
    assert remote_matches(head, lf)
    assert remote_matches({**head, "ChecksumSHA256": base64.b64encode(composite).decode()}, lf)  # no "-N"
    assert not remote_matches({**head, "ChecksumSHA256": base64.b64encode(b"\0" * 32).decode() + "-3"}, lf)
    assert not remote_matches({**head, "ContentLength": len(data) - 1}, lf)
    assert remote_matches({"ContentLength": len(data), "ETag": f'"{lf.expected_etag()}"'}, lf)
    kms = {"ContentLength": len(data), "ETag": '"opaque"', "ServerSideEncryption": "aws:kms"}
    assert remote_matches({**kms, "Metadata": {"sha256": hashlib.sha256(data).hexdigest()}}, lf)
    assert not remote_matches(kms, lf)

    small = hash_file(path, "f.bin", None)
    assert small.expected_checksum() == base64.b64encode(hashlib.sha256(data).digest()).decode()
    assert small.expected_etag() == hashlib.md5(data).hexdigest()


def test_find_runs_stops_at_run_directories(tmp_path, run_factory):
    a = run_factory(tmp_path, "multirun/sweep/0", {"checkpoints/x/status.json": b"{}"})
    b = run_factory(tmp_path, "multirun/sweep/1", {})
    assert find_runs(tmp_path / "multirun") == [a, b]
    assert find_runs(a) == [a]


def test_push_newer_than_pushes_only_fresh_runs(s3, run_factory, tmp_path, capsys):
    outputs = tmp_path / "outputs"
    old = run_factory(outputs, "20261126T100000Z_old", {"m": b"1"})
    marker = tmp_path / "marker"
    marker.write_text("")
    past = marker.stat().st_mtime - 100
    for p in old.rglob("*"):
        os.utime(p, (past, past))
    run_factory(outputs, "multirun/20261126T110000Z_s/0", {"m": b"2"})
    assert main(["archive", "push", "--newer-than", str(marker)]) == 0
    out = capsys.readouterr().out
    assert "pushed multirun/20261126T110000Z_s/0" in out and "_old" not in out
