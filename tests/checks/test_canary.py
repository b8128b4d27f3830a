"""The leak canary in CI, both halves: PPO on real BTC bars exploits a leaked next-bar return (lag 0) and
gains nothing from its causal version (lag 1). Thresholds and seed spread: docs/lookahead.md."""

from __future__ import annotations

import json

import numpy as np
import pytest

from tradelab_jax import data
from tradelab_jax.checks import canary, cli
from tradelab_jax.data.lake import Lake, read_bars


def test_the_canary_dataset_holds_the_next_bars_return(tmp_path):
    """The leak is the return the step decided at t earns when filled at close[t] and marked at
    close[t+1] (docs/execution-semantics.md), written into a lake of our own, not the repo's."""
    dataset_id = canary.build_dataset(tmp_path / "lake", start_bar=1000, bars=500)
    bars = read_bars(Lake.at(tmp_path / "lake"), Lake.at(tmp_path / "lake").read_manifest(dataset_id))
    close = data.load(canary.SOURCE_DATASET).bars["close"][1000:1501]
    assert len(bars["ts"]) == 500
    np.testing.assert_array_equal(bars["close"], close[:-1])
    np.testing.assert_allclose(bars[canary.LEAK_COLUMN] * close[:-1] + close[:-1], close[1:], rtol=1e-12)
    assert canary.CANARY_ID not in Lake.at(None).ids()


def _split(agent_return, agent_sharpe, hold=0.01, random=-0.3):
    return {"agent": {"total_return": agent_return, "sharpe": agent_sharpe},
            "buy_and_hold": {"total_return": hold, "sharpe": 1.0},
            "flat": {"total_return": 0.0, "sharpe": None},
            "random": {"total_return": random, "sharpe": -50.0}}


@pytest.mark.parametrize(("lag", "agent", "ok"), [
    (0, (0.5, 100.0), True), (0, (0.15, 100.0), False), (0, (0.5, 20.0), False), (0, (0.5, None), False),
    (1, (0.05, 3.0), True), (1, (0.07, 9.0), False), (1, (-0.34, -60.0), True), (1, (-0.36, -60.0), False),
])
def test_the_verdicts_thresholds(lag, agent, ok, tmp_path):
    """Lag 0: at least 20 points of return and 30 of Sharpe above buy-and-hold (1%, 1.0); lag 1: within
    [min, max] of buy-and-hold, flat and random (1%, 0%, -30%) widened by 5 points."""
    half = canary.Half("h", lag, tmp_path, _split(*agent))
    assert half.verdict()[0] is ok


def test_both_halves_on_real_bars(tmp_path):
    """`tradelab check canary --out DIR`: exit 0, canary.json's figures are the runs' own test-split
    evaluation, the leak half far above buy-and-hold and the causal half inside the baselines' range."""
    out = tmp_path / "canary"
    assert cli.main(["canary", "--out", str(out)]) == 0
    record = json.loads((out / "canary.json").read_text())
    assert record["ok"] and record["verdict"].startswith("canary passed")
    leak, causal = record["halves"]["leak"], record["halves"]["causal"]
    for half in (leak, causal):
        test = json.loads((out / "runs" / half["run_dir"].rsplit("/", 1)[1] / "eval_summary.json")
                          .read_text())["splits"]["test"]
        assert half["agent"]["total_return"] == test["agent"]["total_return"]
        assert half["buy_and_hold"]["total_return"] == test["buy_and_hold"]["total_return"]
    hold = leak["buy_and_hold"]
    assert leak["agent"]["total_return"] >= hold["total_return"] + canary.LEAK_MIN_RETURN
    assert leak["agent"]["sharpe"] >= hold["sharpe"] + canary.LEAK_MIN_SHARPE
    baselines = [causal[p]["total_return"] for p in canary.BASELINES]
    assert min(baselines) - canary.CAUSAL_MARGIN <= causal["agent"]["total_return"]
    assert causal["agent"]["total_return"] <= max(baselines) + canary.CAUSAL_MARGIN
    assert causal["agent"]["total_return"] < leak["agent"]["total_return"] - canary.LEAK_MIN_RETURN
