"""MLflow runs read back with MlflowClient: against the local sqlite store under the outputs root (a packed
sweep with its parent run, a resumed run) and against an ``mlflow server`` on 127.0.0.1; no secret from the
environment in any output file, store file or stderr."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import urllib.request
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from tests.conftest import wait_for
from tests.train.helpers import TINY_GYMNAX, only_child
from tradelab_jax import runs, tracking, train
from tradelab_jax.tracking import mlflow as tl_mlflow

SECRETS = {"MLFLOW_TRACKING_PASSWORD": "fake-mlflow-pw-7Qx91", "WANDB_API_KEY": "fake-wandb-key-Zr83k",
           "AWS_SECRET_ACCESS_KEY": "fake-aws-secret-Lm27p"}
TINY_TRADING = [
    "agent.num_envs=2", "agent.num_steps=16", "agent.total_timesteps=64", "agent.num_minibatches=1",
    "agent.update_epochs=1", "network.hidden_sizes=[8]", "run.chunk_updates=1", "run.progress=false",
    "run.print_summary=false",
]
LOGGERS = "run.loggers=[tensorboard,mlflow]"


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    from tradelab_jax import paths
    from tradelab_jax.training import compose as tl_compose

    tl_compose.register()
    with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
        return tl_compose.to_plain(compose("config", overrides=overrides))


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """A packed 2-point trading sweep and a cancelled-then-resumed gymnax run, both in one outputs root
    (so one default store), with fake secrets in the environment."""
    from tradelab_jax.training import session

    outputs = tmp_path_factory.mktemp("outputs")
    with pytest.MonkeyPatch.context() as mp:
        for k, v in SECRETS.items():
            mp.setenv(k, v)
        mp.delenv("MLFLOW_TRACKING_URI", raising=False)
        assert train.main([*TINY_TRADING, LOGGERS, f"run.outputs={outputs}", "run.tag=mlsweep",
                           "sweep.env.risk_pct=[0.005,0.02]"]) == 0
        sweep = only_child(outputs / "multirun")
        cut = outputs / "cut"
        plain = _compose([*TINY_GYMNAX, LOGGERS, f"run.outputs={outputs}"])
        cancelled = session.train_config(plain, cut, should_stop=lambda update: update >= 2)
        assert cancelled["status"] == "cancelled"
        first_id = tracking.read_tracking(cut)["mlflow_run_id"]
        assert train.main([f"run.resume={cut}"]) == 0
    uri = tl_mlflow.tracking_uri({"run": {}}, outputs)
    return {"outputs": outputs, "sweep": sweep, "cut": cut, "first_id": first_id,
            "client": MlflowClient(tracking_uri=uri)}


def _points(sweep: Path) -> list[Path]:
    return sorted(p for p in sweep.iterdir() if p.is_dir() and (p / "metrics.jsonl").exists())


def _check_metrics(client, run_id: str, run_dir: Path) -> None:
    metrics = runs.read_metrics(run_dir)
    keys = {k for m in metrics for k in tracking.scalars(m)}
    assert metrics and keys
    for key in keys:
        hist = sorted(client.get_metric_history(run_id, f"train/{key}"), key=lambda m: (m.step, m.timestamp))
        want = [(m["env_steps"], m[key]) for m in metrics if isinstance(m.get(key), (int, float))]
        assert [h.step for h in hist] == [s for s, _ in want], key
        assert [h.value for h in hist] == pytest.approx([v for _, v in want], rel=1e-6, nan_ok=True), key


def test_sweep_points_are_runs_nested_under_one_parent(local):
    client, sweep = local["client"], local["sweep"]
    points = _points(sweep)
    assert len(points) == 2
    parent_id = tracking.read_tracking(sweep)["mlflow_run_id"]
    parent = client.get_run(parent_id)
    assert parent.info.status == "FINISHED"
    children = client.search_runs([parent.info.experiment_id],
                                  filter_string=f"tags.mlflow.parentRunId = '{parent_id}'")
    ids = {tracking.read_tracking(p)["mlflow_run_id"] for p in points}
    assert {r.info.run_id for r in children} == ids and len(ids) == 2
    for point in points:
        run_id = tracking.read_tracking(point)["mlflow_run_id"]
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED"
        config = runs.read_config(point)
        assert run.data.params["env.risk_pct"] == str(config["env"]["risk_pct"])
        assert run.data.params["agent.total_timesteps"] == str(config["agent"]["total_timesteps"])
        assert float(run.data.params["sweep.env.risk_pct"]) == config["env"]["risk_pct"]
        _check_metrics(client, run_id, point)
        summary = runs.read_eval_summary(point)
        evals = tracking.eval_scalars(summary)
        assert evals and all(run.data.metrics[k] == pytest.approx(v, nan_ok=True) for k, v in evals.items())
        assert {a.path for a in client.list_artifacts(run_id)} == {"eval_summary.json", "equity.png"}
    risks = {client.get_run(i).data.params["env.risk_pct"] for i in ids}
    assert risks == {"0.005", "0.02"}


def test_a_resumed_run_continues_its_mlflow_run(local):
    client, cut = local["client"], local["cut"]
    t = tracking.read_tracking(cut)
    assert t["mlflow_run_id"] == local["first_id"]
    assert runs.read_status(cut)["status"] == "done"
    run = client.get_run(t["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert len(client.search_runs([t["mlflow_experiment_id"]],
                                  filter_string=f"tags.`tradelab.run_dir` = '{cut}'")) == 1
    _check_metrics(client, t["mlflow_run_id"], cut)
    assert "eval/mean_episode_return" in run.data.metrics


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _up(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2) as r:
            return r.status == 200
    except OSError:
        return False


@pytest.fixture(scope="module")
def server(tmp_path_factory, scaled):
    root = tmp_path_factory.mktemp("mlflow_server")
    port = _free_port()
    mlflow_bin = Path(sys.executable).with_name("mlflow")
    proc = subprocess.Popen([str(mlflow_bin), "server", "--host", "127.0.0.1", "--port", str(port),
                             "--backend-store-uri", f"sqlite:///{root / 'server.db'}",
                             "--default-artifact-root", str(root / "artifacts"), "--workers", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _up(f"{url}/health") or proc.poll() is not None, "mlflow server up", 60)
        assert proc.poll() is None, "mlflow server exited"
        yield {"url": url, "root": root}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=scaled(20))
        except subprocess.TimeoutExpired:
            proc.kill()


def test_a_run_against_an_mlflow_server_and_no_secret_anywhere(local, server, tmp_path, scaled):
    outputs = tmp_path / "outputs"
    env = {**os.environ, **SECRETS, "MLFLOW_TRACKING_URI": server["url"]}
    proc = subprocess.run([sys.executable, "-m", "tradelab_jax.cli", "train", *TINY_GYMNAX, LOGGERS,
                           f"run.outputs={outputs}", "run.tag=srv"],
                          capture_output=True, text=True, timeout=scaled(240), env=env)
    assert proc.returncode == 0, proc.stderr
    assert "logger disabled" not in proc.stderr
    run_dir = only_child(outputs)
    t = tracking.read_tracking(run_dir)
    assert t["mlflow_tracking_uri"] == server["url"]
    client = MlflowClient(tracking_uri=server["url"])
    run = client.get_run(t["mlflow_run_id"])
    assert run.info.status == "FINISHED"
    assert run.data.params["agent.total_timesteps"] == "256"
    _check_metrics(client, t["mlflow_run_id"], run_dir)
    assert {a.path for a in client.list_artifacts(t["mlflow_run_id"])} == {"eval_summary.json"}
    # Secrets: none in the run directories, the local and the server's stores, or stderr/stdout.
    for root in (outputs, local["outputs"], server["root"]):
        files = [p for p in root.rglob("*") if p.is_file()]
        assert files
        for p in files:
            data = p.read_bytes()
            for name, value in SECRETS.items():
                assert value.encode() not in data, f"{name} found in {p}"
    for value in SECRETS.values():
        assert value not in proc.stderr and value not in proc.stdout


def test_the_recorded_uri_drops_credentials():
    assert tl_mlflow.public_uri("https://bob:s3cret@mlflow.example:5000/x") == "https://mlflow.example:5000/x"
    assert tl_mlflow.public_uri("sqlite:////tmp/a/mlflow.db") == "sqlite:////tmp/a/mlflow.db"
    assert tl_mlflow.tracking_uri({"run": {"mlflow_uri": "http://127.0.0.1:1"}}) == "http://127.0.0.1:1"
