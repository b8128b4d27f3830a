"""One trading run, and one packed sweep, are composed once and load and checksum their dataset exactly once.

Before the run plan, a run loaded (and sha256-verified) its dataset 4 + S times: for the training split,
each evaluation split, and each point's eval_summary.json. Counting the lake's own reader and hasher shows
the bars are now read once and every file of the dataset hashed once, however many splits and points.
"""

from __future__ import annotations

import pytest

from tradelab_jax import train
from tradelab_jax.data import lake as lake_module
from tradelab_jax.data import loader
from tradelab_jax.data.lake import Lake
from tradelab_jax.training import envs

DATASET = "binance_btcusdt_1m_2025-10"  # the smaller embedded dataset: evaluation over it takes seconds
TINY = [
    f"data.id={DATASET}", "agent.num_envs=2", "agent.num_steps=16", "agent.total_timesteps=64",
    "agent.update_epochs=1", "agent.num_minibatches=2", "network.hidden_sizes=[8]", "env.episode_length=32",
    "run.chunk_updates=2", "run.progress=false", "run.print_summary=false",
]


@pytest.fixture
def counted(monkeypatch):
    from hydra._internal.config_loader_impl import ConfigLoaderImpl

    calls = {"read_bars": 0, "sha256": 0, "compose": 0}
    read_bars, sha256_file = loader.read_bars, lake_module.sha256_file
    load_configuration = ConfigLoaderImpl.load_configuration

    def counting_load_configuration(self, *args, **kwargs):
        calls["compose"] += 1
        return load_configuration(self, *args, **kwargs)

    def counting_read_bars(*args, **kwargs):
        calls["read_bars"] += 1
        return read_bars(*args, **kwargs)

    def counting_sha256(*args, **kwargs):
        calls["sha256"] += 1
        return sha256_file(*args, **kwargs)

    monkeypatch.setattr(loader, "read_bars", counting_read_bars)
    monkeypatch.setattr(lake_module, "sha256_file", counting_sha256)
    # Hydra's own config loader: both its compose API and @hydra.main compose through it.
    monkeypatch.setattr(ConfigLoaderImpl, "load_configuration", counting_load_configuration)
    envs._DATASETS.clear()  # a fresh process as far as the dataset cache is concerned
    yield calls
    envs._DATASETS.clear()


@pytest.mark.parametrize("extra", [[], ["sweep.seed=[0,1]", "sweep.env.risk_pct=[0.005,0.02]"]],
                         ids=["single_run", "packed_sweep_of_4"])
def test_a_run_is_composed_once_and_reads_and_checksums_its_dataset_once(extra, counted, outputs):
    files = len(Lake.at(None).read_manifest(DATASET)["files"])
    assert train.main([*TINY, *extra, f"run.outputs={outputs}"]) == 0
    summaries = list(outputs.rglob("eval_summary.json"))
    assert len(summaries) == (4 if extra else 1)  # trained and evaluated on val and test
    assert counted["read_bars"] == 1
    assert counted["sha256"] == files
    assert counted["compose"] == 1
