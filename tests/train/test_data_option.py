"""A dataset imported into the lake is a ``data=`` option like the shipped ones (issue 11, item 4)."""

from __future__ import annotations

import pytest

from tradelab_jax.cli import main as cli_main
from tradelab_jax.errors import UserError
from tradelab_jax.training import compose

SHARED_5M = "binance_spot_btcusdt_5m_2024-12-31_2026-02-19/btcusdt_5m.parquet"


@pytest.fixture
def lake_with_an_import(tmp_path, shared_data, monkeypatch):
    lake = tmp_path / "lake"
    rc = cli_main(["data", "import", str(shared_data / SHARED_5M), "--exchange", "binance", "--symbol",
                   "BTC/USDT", "--timeframe", "5m", "--dataset-id", "my_btc_5m", "--lake", str(lake)])
    assert rc == 0
    monkeypatch.setenv("TRADELAB_LAKE", str(lake))
    return lake


def _plain(overrides):
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tradelab_jax import paths

    compose.register()
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
            return compose.to_plain(hydra_compose("config", overrides=overrides))
    finally:
        GlobalHydra.instance().clear()


def test_an_imported_dataset_is_a_data_option(lake_with_an_import):
    compose.check_overrides(["data=my_btc_5m"], multirun=False)  # composes and checks (manifest found)
    data = _plain(["data=my_btc_5m"])["data"]
    assert {k: data[k] for k in ("id", "lake", "start", "end")} == {"id": "my_btc_5m", "lake": None,
                                                                  "start": None, "end": None}
    assert "my_btc_5m" in compose.group_options("data")


def test_an_unknown_data_option_names_the_lakes_datasets_and_data_id(lake_with_an_import):
    with pytest.raises(UserError) as info:
        compose.check_overrides(["data=my_btc_5n"], multirun=False)
    message = str(info.value)
    assert message.startswith("unknown data option 'my_btc_5n'; valid options: ")
    assert "my_btc_5m" in message and "binance_btcusdt_1m" in message
    assert message.endswith("a dataset of another lake: data.id=<id> data.lake=<folder>")
