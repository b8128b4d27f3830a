"""Packed sweeps keep their own files (packed.json, .hydra/); a re-push of nothing writes nothing; push
refuses a path that is neither a run, a sweep nor the outputs tree."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from tradelab_jax.cli import main

SWEEP = "multirun/20261126T154101Z_pk"
PACKED = b'{"points": [{"dir": "0", "seed": 0}, {"dir": "1", "seed": 1}], "keys": ["seed"]}'


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def _make_sweep(outputs: Path, run_factory) -> Path:
    for n in (0, 1):
        run_factory(outputs, f"{SWEEP}/{n}", {"metrics.jsonl": f'{{"point": {n}}}\n'.encode()})
    sweep = outputs / SWEEP
    (sweep / "packed.json").write_bytes(PACKED)
    (sweep / ".hydra").mkdir()
    (sweep / ".hydra/config.yaml").write_bytes(b"sweep: {seed: [0, 1]}\n")
    return sweep


def _manifest(spec, client, run_id: str) -> dict:
    key = f"runs/{run_id}/archive_manifest.json"
    return json.loads(client.get_object(Bucket=spec.bucket, Key=key)["Body"].read())


def test_sweep_files_are_archived_and_a_sweep_pulls_whole(s3, run_factory, tmp_path, capsys, monkeypatch):
    spec, client = s3
    sweep = _make_sweep(tmp_path / "outputs", run_factory)

    assert main(["archive", "push", str(tmp_path / "outputs" / "multirun")]) == 0
    out = capsys.readouterr().out
    assert f"pushed {SWEEP}/0" in out and f"pushed {SWEEP}/1" in out
    assert f"pushed {SWEEP} (sweep files)" in out
    manifest = _manifest(spec, client, SWEEP)
    assert manifest["kind"] == "sweep" and manifest["points"] == ["0", "1"] and manifest["status"] == "done"
    by_path = {e["path"]: e for e in manifest["files"]}
    assert sorted(by_path) == [".hydra/config.yaml", "packed.json"]  # the points are runs of their own
    assert by_path["packed.json"]["sha256"] == hashlib.sha256(PACKED).hexdigest()

    assert main(["archive", "list", "--json"]) == 0
    rows = {r["id"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows[SWEEP]["kind"] == "sweep" and rows[SWEEP]["points"] == [f"{SWEEP}/0", f"{SWEEP}/1"]
    assert rows[SWEEP]["files"] == 2 + 2 * 3  # its own files plus each point's status, config, metrics
    assert rows[f"{SWEEP}/0"]["kind"] == "run"
    assert main(["archive", "list"]) == 0
    table = capsys.readouterr().out.splitlines()
    assert table[1].split()[:4] == [SWEEP, "sweep:", "2", "points"]

    restored = tmp_path / "restored"
    monkeypatch.setenv("TRADELAB_OUTPUTS", str(restored))
    assert main(["archive", "pull", SWEEP]) == 0
    assert _tree(restored / SWEEP) == _tree(sweep)
    out = capsys.readouterr().out
    assert out.index(f"pulled {SWEEP}/1") < out.index(f"pulled {SWEEP} (sweep files)")  # sweep files last


def test_pushing_one_point_archives_its_sweep_and_pulling_it_brings_packed_json(
    s3, run_factory, tmp_path, capsys, monkeypatch
):
    sweep = _make_sweep(tmp_path / "outputs", run_factory)
    assert main(["archive", "push", str(sweep / "0")]) == 0
    assert f"pushed {SWEEP} (sweep files)" in capsys.readouterr().out

    restored = tmp_path / "restored"
    monkeypatch.setenv("TRADELAB_OUTPUTS", str(restored))
    assert main(["archive", "pull", f"{SWEEP}/0"]) == 0
    assert (restored / SWEEP / "packed.json").read_bytes() == PACKED
    assert (restored / SWEEP / ".hydra/config.yaml").is_file()
    assert _tree(restored / SWEEP / "0") == _tree(sweep / "0")
    assert not (restored / SWEEP / "1").exists()  # only the point asked for (and its sweep's files)


def test_sweep_archived_by_older_code_pulls_its_points_with_a_note(
    s3, run_factory, tmp_path, capsys, monkeypatch
):
    from tradelab_jax.archive.ops import push_run

    spec, client = s3
    sweep = _make_sweep(tmp_path / "outputs", run_factory)
    for n in ("0", "1"):  # what the previous code archived: the points only, no sweep manifest
        push_run(client, spec, sweep / n, f"{SWEEP}/{n}")
    restored = tmp_path / "restored"
    monkeypatch.setenv("TRADELAB_OUTPUTS", str(restored))
    assert main(["archive", "pull", SWEEP]) == 0
    captured = capsys.readouterr()
    assert _tree(restored / SWEEP / "1") == _tree(sweep / "1")
    assert "no archived sweep files" in captured.err and "push the sweep folder again" in captured.err


def test_conflict_in_one_point_stops_a_sweep_pull_before_anything_is_written(
    s3, run_factory, tmp_path, capsys, monkeypatch
):
    outputs = tmp_path / "outputs"
    sweep = _make_sweep(outputs, run_factory)
    assert main(["archive", "push", str(sweep)]) == 0
    (sweep / "1" / "metrics.jsonl").write_bytes(b"local edit\n")
    (sweep / "packed.json").unlink()
    capsys.readouterr()
    assert main(["archive", "pull", SWEEP]) == 2
    assert "--force" in capsys.readouterr().err
    assert not (sweep / "packed.json").exists()
    assert main(["archive", "pull", SWEEP, "--force"]) == 0
    assert (sweep / "packed.json").read_bytes() == PACKED


def test_repush_of_nothing_changed_writes_nothing(s3, run_factory, tmp_path, capsys, monkeypatch):
    import tradelab_jax.archive.ops as ops

    spec, client = s3
    outputs = tmp_path / "outputs"
    run = run_factory(outputs, "20261126T120000Z_same", {"metrics.jsonl": b"{}\n"})
    _make_sweep(outputs, run_factory)
    assert main(["archive", "push", str(run), str(outputs / SWEEP)]) == 0
    before = {i: _manifest(spec, client, i) for i in ("20261126T120000Z_same", SWEEP, f"{SWEEP}/0")}
    capsys.readouterr()

    monkeypatch.setattr(ops, "utc_now", lambda: "2099-01-01T00:00:00Z")  # a later push, were one written
    assert main(["archive", "push", str(run), str(outputs / SWEEP)]) == 0
    out = capsys.readouterr().out
    assert "pushed" not in out
    assert "unchanged 20261126T120000Z_same -> s3://" in out and "nothing written" in out
    assert f"unchanged {SWEEP} (sweep files)" in out
    for run_id, manifest in before.items():
        assert _manifest(spec, client, run_id) == manifest  # pushed_at and all: not rewritten

    # A change is still pushed, and only then is the manifest rewritten.
    (run / "metrics.jsonl").write_bytes(b"{}\n{}\n")
    assert main(["archive", "push", str(run)]) == 0
    assert "pushed 20261126T120000Z_same" in capsys.readouterr().out
    assert _manifest(spec, client, "20261126T120000Z_same")["pushed_at"] == "2099-01-01T00:00:00Z"


def test_push_refuses_a_folder_outside_the_outputs_tree_without_walking_it(
    s3, run_factory, tmp_path, capsys, monkeypatch
):
    import tradelab_jax.archive.cli as archive_cli

    spec, client = s3
    run_factory(tmp_path / "outputs", "20261126T120000Z_mine", {})
    run_factory(tmp_path / "audit" / "outputs", "20261126T120000Z_other", {})  # an unrelated run below

    def no_walk(root):
        raise AssertionError(f"walked {root}")

    monkeypatch.setattr(archive_cli, "find_runs", no_walk)
    for target in (tmp_path, tmp_path / "audit"):  # an ancestor of the outputs root; an unrelated tree
        assert main(["archive", "push", str(target)]) == 2
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "\n" not in err and "Traceback" not in err
        assert "push accepts a run folder" in err and "outside the outputs root" not in err
    assert "Contents" not in client.list_objects_v2(Bucket=spec.bucket)


def test_prune_of_a_sweep_keeps_its_points(s3, run_factory, tmp_path):
    from tradelab_jax.archive.ops import push_run, push_sweep

    spec, client = s3
    sweep = _make_sweep(tmp_path / "outputs", run_factory)
    push_run(client, spec, sweep / "0", f"{SWEEP}/0")
    push_sweep(client, spec, sweep, SWEEP)
    (sweep / ".hydra/config.yaml").unlink()
    res = push_sweep(client, spec, sweep, SWEEP, prune=True)
    assert res.pruned == [".hydra/config.yaml"]
    keys = {o["Key"] for o in client.list_objects_v2(Bucket=spec.bucket)["Contents"]}
    assert f"runs/{SWEEP}/0/metrics.jsonl" in keys and f"runs/{SWEEP}/packed.json" in keys
