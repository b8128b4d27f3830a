"""A packed sweep with the wandb logger in offline mode: each point's offline run directory, read record by
record (the .wandb file's own log format, parsed here with wandb's protobuf schema), holds the point's
config, one group for the sweep, every metrics.jsonl scalar at its env step and the final evaluation."""

from __future__ import annotations

import json
import struct

import pytest
from wandb.proto import wandb_internal_pb2 as pb

from tests.train.helpers import TINY_GYMNAX, only_child
from tradelab_jax import runs, tracking, train

SECRET = "fake-wandb-key-Hq55v"
BLOCK = 32768  # the leveldb-style log block of a .wandb file
HEADER = 7  # ":W&B" + magic (2 bytes) + version


def records(path):
    data = path.read_bytes()
    assert data[:4] == b":W&B"
    pos, buf = HEADER, b""
    while pos + 7 <= len(data):
        left = BLOCK - pos % BLOCK
        if left < 7:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        buf += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):  # FULL or LAST
            rec = pb.Record()
            rec.ParseFromString(buf)
            yield rec
            buf = b""


def _key(item):
    return item.key or "/".join(item.nested_key)


@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    outputs = tmp_path_factory.mktemp("outputs")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("WANDB_API_KEY", SECRET)
        mp.delenv("WANDB_MODE", raising=False)
        assert train.main([*TINY_GYMNAX, "run.loggers=[wandb]", f"run.outputs={outputs}", "run.tag=wb",
                           "sweep.seed=[0,1]"]) == 0
    return only_child(outputs / "multirun")


def test_offline_runs_hold_config_group_metrics_and_finals(sweep):
    points = sorted(p for p in sweep.iterdir() if (p / "metrics.jsonl").exists())
    assert len(points) == 2
    ids = set()
    for point in points:
        t = tracking.read_tracking(point)
        assert t["wandb_mode"] == "offline"
        ids.add(t["wandb_id"])
        (path,) = point.glob(f"wandb/offline-run-*-{t['wandb_id']}/run-{t['wandb_id']}.wandb")
        history, summary, run = {}, {}, None
        for rec in records(path):
            kind = rec.WhichOneof("record_type")
            if kind == "run":
                run = rec.run
            elif kind == "history":
                items = {_key(i): json.loads(i.value_json) for i in rec.history.item}
                for k, v in items.items():
                    if k.startswith("train/"):
                        history.setdefault(k, []).append((items["_step"], v))
            elif kind == "summary":
                summary.update({_key(i): json.loads(i.value_json) for i in rec.summary.update})
        assert run is not None and run.run_group == sweep.name and run.run_id == t["wandb_id"]
        config = {i.key: json.loads(i.value_json) for i in run.config.update}
        assert config["seed"] == config["sweep.seed"] == runs.read_config(point)["seed"]
        metrics = runs.read_metrics(point)
        keys = {k for m in metrics for k in tracking.scalars(m)}
        assert keys and {f"train/{k}" for k in keys} <= set(history)
        for k in keys:
            want = [(m["env_steps"], m[k]) for m in metrics if isinstance(m.get(k), (int, float))]
            assert [s for s, _ in history[f"train/{k}"]] == [s for s, _ in want]
            assert [v for _, v in history[f"train/{k}"]] == pytest.approx([v for _, v in want], rel=1e-6)
        ret = runs.read_eval_summary(point)["mean_episode_return"]
        assert summary["eval/mean_episode_return"] == pytest.approx(ret)
        for p in point.rglob("*"):
            if p.is_file():
                assert SECRET.encode() not in p.read_bytes(), p
    assert len(ids) == 2
