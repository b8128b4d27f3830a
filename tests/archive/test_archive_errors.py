"""User errors are one sentence, exit code 2, no traceback; pulls neither clobber nor trust bad data."""

from __future__ import annotations

import json
import socket

import pytest

from tradelab_jax.cli import main
from tradelab_jax.errors import UserError

RUN = "20261126T160000Z_err"


def _error_line(capsys) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err
    assert err.startswith("error: ") and "\n" not in err, err
    return err


def test_missing_bucket_names_the_flag_and_variable(aws_env, monkeypatch, capsys):
    monkeypatch.delenv("TRADELAB_S3_BUCKET", raising=False)
    assert main(["archive", "list"]) == 2
    err = _error_line(capsys)
    assert "--bucket" in err and "TRADELAB_S3_BUCKET" in err


def test_bucket_that_does_not_exist(s3, capsys):
    assert main(["archive", "list", "--bucket", "no-such-bucket-here"]) == 2
    assert "does not exist" in _error_line(capsys)


@pytest.mark.parametrize("bad", ["../etc", "a/../../b", "/abs", "a//b", ".hidden", "a b"])
def test_invalid_run_ids_are_refused(s3, bad, capsys):
    assert main(["archive", "pull", bad]) == 2
    assert "invalid run id" in _error_line(capsys)


def test_unknown_run_id_points_at_list(s3, capsys):
    assert main(["archive", "pull", "20990101T000000Z_nope"]) == 2
    assert "tradelab archive list" in _error_line(capsys)


def test_no_credentials_says_what_to_set(s3, monkeypatch, capsys):
    monkeypatch.delenv("AWS_ACCESS_KEY_ID")
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY")
    assert main(["archive", "list"]) == 2
    err = _error_line(capsys)
    assert "AWS_ACCESS_KEY_ID" in err and "AWS_PROFILE" in err


def test_unreachable_endpoint_is_one_sentence(aws_env, monkeypatch, capsys):
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    monkeypatch.setenv("TRADELAB_S3_BUCKET", "tradelab-test-x")
    assert main(["archive", "list", "--endpoint-url", f"http://127.0.0.1:{port}"]) == 2
    err = _error_line(capsys)
    assert "cannot reach the S3 endpoint" in err and str(port) in err


@pytest.mark.parametrize("status", ["running", "queued"])
def test_unfinished_run_is_not_pushed_without_allow_running(s3, run_factory, tmp_path, capsys, status):
    run = run_factory(tmp_path / "outputs", RUN, {"metrics.jsonl": b"{}\n"}, status=status)
    assert main(["archive", "push", str(run)]) == 2
    assert "--allow-running" in _error_line(capsys)
    assert main(["archive", "push", str(run), "--allow-running"]) == 0


def test_run_dir_outside_outputs_needs_a_run_id(s3, run_factory, tmp_path, capsys):
    run = run_factory(tmp_path / "elsewhere", "x", {"a": b"1"})
    assert main(["archive", "push", str(run)]) == 2
    assert "--run-id" in _error_line(capsys)
    assert main(["archive", "push", str(run), "--run-id", "imported_x"]) == 0


def test_pull_never_overwrites_a_different_local_run_without_force(s3, run_factory, tmp_path, capsys):
    outputs = tmp_path / "outputs"
    run = run_factory(outputs, RUN, {"metrics.jsonl": b"archived\n"})
    assert main(["archive", "push", RUN]) == 0  # a run id under the outputs root works as RUN_DIR
    (run / "metrics.jsonl").write_bytes(b"local edit\n")
    capsys.readouterr()
    assert main(["archive", "pull", RUN]) == 2
    assert "--force" in _error_line(capsys)
    assert (run / "metrics.jsonl").read_bytes() == b"local edit\n"
    assert main(["archive", "pull", RUN, "--force"]) == 0
    assert (run / "metrics.jsonl").read_bytes() == b"archived\n"


def test_corrupted_object_is_detected_and_nothing_written(s3, run_factory, tmp_path):
    from tradelab_jax.archive.ops import pull_run, push_run
    from tradelab_jax.archive.transfer import IntegrityError

    spec, client = s3
    run = run_factory(tmp_path / "outputs", RUN, {"metrics.jsonl": b"good\n"})
    push_run(client, spec, run, RUN)
    client.put_object(Bucket=spec.bucket, Key=f"runs/{RUN}/metrics.jsonl", Body=b"evil\n")
    dest_root = tmp_path / "restored"
    with pytest.raises(IntegrityError, match="does not match the archive manifest"):
        pull_run(client, spec, RUN, dest_root)
    assert not (dest_root / RUN / "metrics.jsonl").exists()
    assert not [p for p in dest_root.rglob("*") if p.is_file() and p.name.endswith(".tmp")]


def test_manifest_with_traversal_paths_is_refused(s3, tmp_path):
    from tradelab_jax.archive.config import MANIFEST_FORMAT
    from tradelab_jax.archive.ops import pull_run

    spec, client = s3
    manifest = {
        "format": MANIFEST_FORMAT,
        "files": [{"path": "../../escape.txt", "size": 1, "sha256": "0" * 64}],
    }
    client.put_object(Bucket=spec.bucket, Key=f"runs/{RUN}/archive_manifest.json", Body=json.dumps(manifest))
    with pytest.raises(UserError, match="unsafe path"):
        pull_run(client, spec, RUN, tmp_path / "outputs")
    assert not (tmp_path / "escape.txt").exists()


def test_bad_flags_are_user_errors(aws_env, monkeypatch):
    from tradelab_jax.archive.config import spec_from

    with pytest.raises(UserError, match="invalid S3 bucket name"):
        spec_from(bucket="Bad_Bucket")
    with pytest.raises(UserError, match="invalid S3 prefix"):
        spec_from(bucket="ok-bucket", prefix="a/../b")
    with pytest.raises(UserError, match="at least 5"):
        spec_from(bucket="ok-bucket", part_size_mib=1)
    assert spec_from(bucket="ok-bucket", prefix="/team/lab/").run_prefix("r1") == "team/lab/runs/r1/"
