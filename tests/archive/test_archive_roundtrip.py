"""Push, list and pull through the real CLI against moto's S3 server on loopback."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tradelab_jax.cli import main

MiB = 1024 * 1024


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_push_list_pull_roundtrip(s3, run_factory, random_bytes, tmp_path, capsys, monkeypatch):
    spec, client = s3
    outputs = tmp_path / "outputs"
    files = {
        "metrics.jsonl": b'{"step": 1}\n',
        "eval_summary.json": b"{}",
        "checkpoints/step_000100/params.msgpack": random_bytes(200_000, seed=1),
        ".hydra/overrides.yaml": b"- lr=0.001\n",
        "empty.txt": b"",
    }
    run = run_factory(outputs, "20261126T120000Z_demo", files)
    sweep_child = run_factory(outputs, "multirun/20261126T130000Z_sweep/3", {"metrics.jsonl": b"{}\n"})
    (run / ".metrics.jsonl.abc.tmp").write_bytes(b"half-written")  # an atomic writer's temp file

    assert main(["archive", "push", str(run), str(sweep_child.parent.parent)]) == 0
    out = capsys.readouterr().out
    assert "pushed 20261126T120000Z_demo -> s3://" in out
    assert "pushed multirun/20261126T130000Z_sweep/3" in out

    assert main(["archive", "list", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["id"] for r in rows] == ["20261126T120000Z_demo", "multirun/20261126T130000Z_sweep/3"]
    assert rows[0]["status"] == "done" and rows[0]["files"] == 7
    assert main(["archive", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[0].split() == ["RUN", "ID", "STATUS", "FILES", "SIZE", "PUSHED", "AT"]
    assert table[1].startswith("20261126T120000Z_demo")

    key = "runs/20261126T120000Z_demo/archive_manifest.json"
    manifest = json.loads(client.get_object(Bucket=spec.bucket, Key=key)["Body"].read())
    by_path = {e["path"]: e for e in manifest["files"]}
    assert ".metrics.jsonl.abc.tmp" not in by_path
    for rel, data in _tree(run).items():
        if rel.endswith(".tmp"):
            continue
        assert by_path[rel]["sha256"] == hashlib.sha256(data).hexdigest()
        assert by_path[rel]["size"] == len(data) and by_path[rel]["uploaded_at"]

    # Pull into a fresh outputs root: the same relative id and the same bytes.
    restored = tmp_path / "restored"
    monkeypatch.setenv("TRADELAB_OUTPUTS", str(restored))
    assert main(["archive", "pull", "20261126T120000Z_demo", "multirun/20261126T130000Z_sweep/3"]) == 0
    expected = {k: v for k, v in _tree(run).items() if not k.endswith(".tmp")}
    assert _tree(restored / "20261126T120000Z_demo") == expected
    assert _tree(restored / "multirun/20261126T130000Z_sweep/3") == _tree(sweep_child)
    # Pulling again finds everything in place and downloads nothing.
    capsys.readouterr()
    assert main(["archive", "pull", "20261126T120000Z_demo"]) == 0
    assert "0 downloaded" in capsys.readouterr().out


def test_multipart_upload_and_verified_pull(s3, run_factory, random_bytes, tmp_path, call_counter):
    from tradelab_jax.archive.ops import get_manifest, pull_run, push_run

    spec, client = s3
    calls = call_counter(client)
    big = random_bytes(12 * MiB + 123, seed=2)
    run = run_factory(tmp_path / "outputs", "20261126T140000Z_big", {"checkpoints/big.bin": big})

    res = push_run(client, spec, run, "20261126T140000Z_big")
    assert "checkpoints/big.bin" in res.uploaded
    assert calls["CreateMultipartUpload"] == 1 and calls["UploadPart"] == 3  # 5 + 5 + 2 MiB
    assert calls["CompleteMultipartUpload"] == 1
    files = get_manifest(client, spec, "20261126T140000Z_big")["files"]
    entry = {e["path"]: e for e in files}["checkpoints/big.bin"]
    assert entry["parts"] == 3 and entry["part_size"] == 5 * MiB and entry["etag"].endswith("-3")
    head = client.head_object(Bucket=spec.bucket, Key="runs/20261126T140000Z_big/checkpoints/big.bin")
    assert head["Metadata"]["sha256"] == hashlib.sha256(big).hexdigest()

    pulled = pull_run(client, spec, "20261126T140000Z_big", tmp_path / "elsewhere")
    assert (pulled.dest / "checkpoints/big.bin").read_bytes() == big
