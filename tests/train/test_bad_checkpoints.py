"""The bad-checkpoint corpus (issue 12 item 6): `tradelab train run.resume=DIR` and `tradelab episode
--policy DIR` refuse a damaged checkpoint, a broken latest.json or another run's checkpoint in one sentence
naming the file (exit 2, no traceback), and a refused resume leaves the run as it was."""

from __future__ import annotations

import hashlib
import json
import random
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tradelab_jax import cli, runs

from .helpers import TINY_GYMNAX

DATASET = "binance_btcusdt_1m_2025-10"
TINY_TRADING = [
    f"data.id={DATASET}", "env.episode_length=8", "agent.num_envs=2", "agent.num_steps=16",
    "agent.total_timesteps=128", "agent.num_minibatches=1", "agent.update_epochs=1",
    "network.hidden_sizes=[8]", "run.chunk_updates=2", "run.progress=false", "run.print_summary=false",
]


def _cancelled(where: Path, overrides: list[str]) -> Path:
    """A real run stopped after its first chunk (update 2 of 4 or 8): cancelled, so resumable."""
    from tradelab_jax.training import session

    from .test_config_errors import _compose

    plain = _compose([*overrides, "run.eval=false"])
    assert session.train_config(plain, where, should_stop=lambda update: update >= 2)["status"] == "cancelled"
    return where


@pytest.fixture(scope="module")
def sources(tmp_path_factory) -> dict[str, Path]:
    """The run under test (CartPole, hidden [16]) and two other runs whose checkpoints it must refuse."""
    root = tmp_path_factory.mktemp("sources")
    return {
        "cartpole": _cancelled(root / "cartpole", TINY_GYMNAX),
        "hidden8": _cancelled(root / "hidden8", [*TINY_GYMNAX, "network.hidden_sizes=[8]"]),
        "trading": _cancelled(root / "trading", TINY_TRADING),
    }


def _ckpt(run_dir: Path) -> Path:
    return run_dir / runs.CHECKPOINT_DIR / "ckpt_000000002.msgpack"


def _final_ckpt(run_dir: Path) -> Path:
    return run_dir / runs.CHECKPOINT_DIR / "ckpt_000000008.msgpack"


def _latest(run_dir: Path) -> Path:
    return run_dir / runs.CHECKPOINT_DIR / runs.LATEST_CHECKPOINT


def _edit_latest(run_dir: Path, **changes) -> None:
    meta = json.loads(_latest(run_dir).read_text())
    meta.update(changes)
    _latest(run_dir).write_text(json.dumps({k: v for k, v in meta.items() if v is not None}))


def _legacy(run_dir: Path, _sources=None) -> None:
    """latest.json as written before it recorded the checkpoint's size and sha256."""
    _edit_latest(run_dir, bytes=None, sha256=None)


def _flip_bit(run_dir: Path, _sources=None) -> None:
    data = bytearray(_ckpt(run_dir).read_bytes())
    data[len(data) // 2] ^= 0x10
    _ckpt(run_dir).write_bytes(bytes(data))


def _truncate(run_dir: Path, _sources=None) -> None:
    data = _ckpt(run_dir).read_bytes()
    _ckpt(run_dir).write_bytes(data[: len(data) // 3])


def _random_bytes(run_dir: Path, _sources=None) -> None:
    size = _ckpt(run_dir).stat().st_size
    _ckpt(run_dir).write_bytes(random.Random(12).randbytes(size))  # same size: only the sha256 can tell


def _other_runs(name: str):
    def swap(run_dir: Path, sources: dict[str, Path]) -> None:
        """Another run's checkpoint and its own, consistent latest.json (its sha256 matches)."""
        shutil.rmtree(run_dir / runs.CHECKPOINT_DIR)
        shutil.copytree(sources[name] / runs.CHECKPOINT_DIR, run_dir / runs.CHECKPOINT_DIR)
    return swap


def _no_file_field(run_dir: Path, _sources=None) -> None:
    _edit_latest(run_dir, file=None)


# (case, corruption, what the one error line must say: the file and what is wrong)
CORPUS = [
    ("truncated", _truncate, r"ckpt_000000002\.msgpack is damaged: it holds 1,\d{3} bytes, latest\.json "
                             r"recorded \d+ \(truncated"),
    ("random bytes", _random_bytes, r"ckpt_000000002\.msgpack is damaged: its sha256 is not the one "
                                    r"latest\.json recorded"),
    ("empty", lambda d, _: _ckpt(d).write_bytes(b""), r"ckpt_000000002\.msgpack is empty \(0 bytes\)"),
    ("flipped bit", _flip_bit, r"ckpt_000000002\.msgpack is damaged: its sha256 is not the one latest\.json"),
    ("latest.json not JSON", lambda d, _: _latest(d).write_text('{"file": "ckpt_0000'),
     r"checkpoints/latest\.json is not valid JSON \("),
    ("latest.json without file", _no_file_field, r"checkpoints/latest\.json names no checkpoint: it has no "
                                                 r"\"file\" field"),
    ("latest.json names a missing file", lambda d, _: _ckpt(d).unlink(),
     r"checkpoints/latest\.json names ckpt_000000002\.msgpack, which is not in .*/checkpoints"),
    ("latest.json names a file elsewhere", lambda d, _: _edit_latest(d, file="../config.yaml"),
     r"checkpoints/latest\.json names '\.\./config\.yaml' at update 2; expected ckpt_<update:09d>"),
    ("legacy, truncated", lambda d, _: (_legacy(d), _truncate(d)),
     r"ckpt_000000002\.msgpack is not a readable checkpoint \(.*\)"),
    ("legacy, random bytes", lambda d, _: (_legacy(d), _random_bytes(d)),
     r"ckpt_000000002\.msgpack (is not a readable checkpoint|does not match this run's training state)"),
    ("another run's network", _other_runs("hidden8"),
     r"ckpt_000000002\.msgpack does not match this run's training state: params/params/actor/Dense_0/\w+ is "
     r"float32\[.*8\] in the checkpoint, float32\[.*16\] here"),
    ("another run's env and observation", _other_runs("trading"),
     r"ckpt_000000002\.msgpack does not match this run's training state \(.*EnvState"),
]


def _corrupt(case, sources: dict[str, Path], dest: Path) -> Path:
    shutil.copytree(sources["cartpole"], dest)
    case[1](dest, sources)
    return dest


def _snapshot(run_dir: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run_dir)): p.read_bytes() for p in sorted(run_dir.rglob("*")) if p.is_file()}


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr, stderr
    errors = [line for line in stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, stderr
    return errors[0]


@pytest.mark.parametrize("case", CORPUS, ids=[c[0] for c in CORPUS])
def test_resume_refuses_a_bad_checkpoint_in_one_line_and_leaves_the_run_as_it_was(case, sources, tmp_path,
                                                                                   scaled):
    run_dir = _corrupt(case, sources, tmp_path / "run")
    before = _snapshot(run_dir)
    proc = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "train", f"run.resume={run_dir}"],
                          capture_output=True, text=True, timeout=scaled(300))
    assert proc.returncode == 2, proc.stderr
    line = _one_error_line(proc.stderr)
    assert str(run_dir) in line and re.search(case[2], line), line
    assert _snapshot(run_dir) == before  # status (cancelled, resumable), metrics and checkpoint untouched
    assert runs.read_status(run_dir)["status"] == "cancelled"


def test_a_checkpoint_written_before_latest_json_recorded_its_sha256_still_resumes(sources, tmp_path, scaled):
    run_dir = shutil.copytree(sources["cartpole"], tmp_path / "legacy")
    _legacy(run_dir)
    proc = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "train", f"run.resume={run_dir}"],
                          capture_output=True, text=True, timeout=scaled(300))
    assert proc.returncode == 0, proc.stderr
    assert runs.read_status(run_dir)["status"] == "done"
    meta = json.loads(_latest(run_dir).read_text())  # the resume's own checkpoints record it again
    assert meta["update"] == 8
    assert meta["sha256"] == hashlib.sha256(_final_ckpt(run_dir).read_bytes()).hexdigest()


def test_latest_json_records_the_size_and_sha256_of_the_file_it_names(sources):
    meta = json.loads(_latest(sources["cartpole"]).read_text())
    data = _ckpt(sources["cartpole"]).read_bytes()
    assert meta["file"] == _ckpt(sources["cartpole"]).name
    assert meta["bytes"] == len(data) and meta["sha256"] == hashlib.sha256(data).hexdigest()


EPISODE_CORPUS = [c for c in CORPUS if c[0] in ("truncated", "flipped bit", "legacy, truncated",
                                                 "latest.json not JSON")]


@pytest.mark.parametrize("case", [*EPISODE_CORPUS, ("another run's network", _other_runs("cartpole"),
                                                    r"does not match the network its config\.yaml builds for "
                                                    r"this episode's observation \(\d+,\): .* "
                                                    r"float32\[(4,)?16\] in the checkpoint")],
                         ids=[*(c[0] for c in EPISODE_CORPUS), "another run's network"])
def test_episode_policy_refuses_the_same_corpus_in_one_line(case, sources, tmp_path, capsys):
    run_dir = shutil.copytree(sources["trading"], tmp_path / "run")
    case[1](run_dir, sources)
    argv = ["episode", "--policy", str(run_dir), "--split", "test", "--episode-length", "50",
            "--out", str(tmp_path / "episode")]
    assert cli.main(argv) == 2
    line = _one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: --policy {run_dir}: ") and re.search(case[2], line), line
    assert not (tmp_path / "episode" / "summary.json").exists()


def test_episode_policy_reads_an_intact_checkpoint(sources, tmp_path):
    """The control for the corpus above: the same run, undamaged, replays."""
    out = tmp_path / "episode"
    argv = ["episode", "--policy", str(sources["trading"]), "--split", "test", "--episode-length", "50",
            "--out", str(out)]
    assert cli.main(argv) == 0
    assert json.loads((out / "summary.json").read_text())["policy"] == str(sources["trading"])
