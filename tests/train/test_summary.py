"""The evaluation summary a user reads: eval_summary.json's split facts and policy descriptions, and the
table `print_summary` prints after training."""

from __future__ import annotations

import io
import json
import re

import numpy as np
import pandas as pd
import pytest

from tradelab_jax import data, episode, runs, train
from tradelab_jax.training.session import print_summary

from .helpers import only_child

DATASET = "binance_btcusdt_1m_2025-10"  # the smaller embedded dataset: a quick evaluation


def _row(**overrides):
    row = {"steps": 19605, "final_equity": 10150.0, "total_return": 0.015, "annual_return": 0.4,
           "sharpe": 1.25, "sortino": 1.8, "max_drawdown": 0.031, "calmar": 12.9, "trades": 812,
           "round_trips": 300, "win_rate": 0.52, "turnover": 80.0, "fees_paid": 123.45, "stops_hit": 12,
           "exposure": 0.66, "terminated": False}
    return {**row, **overrides}


def _summary(**agent):
    return {"run": {"seed": 0}, "splits": {"test": {
        "bars": 19605, "first_bar": "2025-08-05T00:00:00Z", "last_bar": "2025-08-18T18:27:00Z",
        "asset_return": 0.0179,
        "agent": _row(**agent),
        "buy_and_hold": _row(total_return=-0.2, steps=700, terminated=True, sharpe=None),
        "flat": _row(total_return=0.0, trades=0, fees_paid=0.0, exposure=0.0, sharpe=None, win_rate=None),
        "random": _row(total_return=-0.5, calmar=-0.0001),
    }}, "policies": {"buy_and_hold": "always bucket index 4 (target +1 risk units), sized by RiskGuard"}}


def _printed(summary) -> list[str]:
    stream = io.StringIO()
    print_summary([summary], stream=stream)
    return stream.getvalue().splitlines()


def test_huge_values_keep_the_columns_separated_and_aligned():
    # A maker-fee rebate compounding over a split: once printed as `18206002154516.3008  832.7761 ...
    # 0.9956-184192283829075968.0000`, the last two columns run together.
    lines = _printed(_summary(total_return=1.82060021545163e13, sharpe=832.7761, calmar=-1.84192283829076e17,
                              final_equity=1.8e17, fees_paid=-4.2e16, win_rate=0.9956))
    header, titles, *rows = lines[:6]
    assert header == "test split (19,605 bars, asset +1.79%) - agent vs baselines:"
    assert titles.split() == ["policy", "steps", "terminated", "total_return", "sharpe", "sortino",
                              "max_drawdown", "calmar", "trades", "win_rate", "fees_paid", "exposure"]
    agent = rows[0].split()
    assert agent == ["agent", "19,605", "no", "1.82e+15%", "832.78", "1.80", "3.10%", "-1.84e+17", "812",
                     "99.56%", "-4.20e+16", "66.00%"]
    # Every column ends at the same character in every row: right-aligned under its title.
    ends = [m.end() for m in re.finditer(r"\S+", titles)]
    for row in rows:
        assert [m.end() for m in re.finditer(r"\S+", row)][1:] == ends[1:], row
        assert len(row.split()) == len(ends)


def test_steps_and_kill_switch_are_shown_per_policy():
    lines = _printed(_summary())
    bh = next(line for line in lines if line.strip().startswith("buy_and_hold "))
    assert bh.split()[1:4] == ["700", "yes", "-20.00%"]
    flat = next(line for line in lines if line.strip().startswith("flat "))
    assert flat.split()[4] == "-" and flat.split()[9] == "-"  # undefined sharpe and win rate
    assert any("kill switch" in line for line in lines)
    assert "  buy_and_hold: always bucket index 4 (target +1 risk units), sized by RiskGuard" in lines


def test_a_summary_from_before_asset_return_still_prints():
    old = _summary()
    del old["splits"]["test"]["asset_return"]
    for policy in ("agent", "buy_and_hold", "flat", "random"):
        del old["splits"]["test"][policy]["terminated"]
    del old["policies"]
    lines = _printed(old)
    assert lines[0] == "test split (19,605 bars) - agent vs baselines:"
    assert lines[2].split()[2] == "-"


def test_eval_summary_has_the_asset_return_kill_switch_and_unambiguous_policies(tmp_path):
    outputs = tmp_path / "outputs"
    assert train.main([
        f"data.id={DATASET}", "agent.num_envs=2", "agent.num_steps=16", "agent.total_timesteps=64",
        "agent.num_minibatches=1", "agent.update_epochs=1", "network.hidden_sizes=[8]", "run.chunk_updates=2",
        "run.progress=false", "run.print_summary=false", f"run.outputs={outputs}", "run.tag=summary",
        "seed=1",
    ]) == 0
    run_dir = only_child(outputs)
    summary = runs.read_eval_summary(run_dir)
    telemetry = pd.read_parquet(run_dir / runs.TELEMETRY_FILE)
    assert "terminated" not in telemetry.columns  # the policy's flag, not a per-step column

    # The plain asset over the split: the same number `tradelab episode` reports for a policy that trades
    # the whole split (flat never meets the kill switch).
    assert episode.main(["--dataset", DATASET, "--split", "test", "--policy", "flat",
                         "--out", str(tmp_path / "flat")]) == 0
    flat_episode = json.loads((tmp_path / "flat" / "summary.json").read_text())
    test = summary["splits"]["test"]
    assert test["asset_return"] == flat_episode["asset_return"]
    close = np.asarray(data.load(DATASET).bars["close"], float)
    for split, table in summary["splits"].items():
        # Close of the last traded bar (telemetry's close is bar t+1's) / close at the first decision bar.
        rows = telemetry[(telemetry["split"] == split) & (telemetry["policy"] == "flat")]
        expected = rows["close"].iloc[-1] / close[rows["t"].iloc[0]] - 1
        assert table["asset_return"] == pytest.approx(expected, rel=1e-12, abs=1e-15)
        for policy in ("agent", "buy_and_hold", "flat", "random"):
            row = table[policy]
            assert isinstance(row["terminated"], bool)
            assert row["steps"] < table["bars"] if row["terminated"] else row["steps"] == table["bars"]
        assert table["flat"]["terminated"] is False

    # Descriptions name bucket indices, the values telemetry's `action` holds.
    policies = summary["policies"]
    assert policies["buy_and_hold"].startswith("always bucket index 4 (target +1 risk units)")
    assert "RiskGuard" in policies["buy_and_hold"] and "asset_return" in policies["buy_and_hold"]
    assert policies["flat"] == "always bucket index 2 (target +0 risk units)"
    actions = telemetry.groupby("policy")["action"].unique()
    assert list(actions["buy_and_hold"]) == [4] and list(actions["flat"]) == [2]

    # The table printed after training carries the asset, steps and the kill-switch flag. Printed here rather
    # than captured from train.main: with capsys active, Hydra's logging setup closes absl's log handler,
    # which then closes the stream it was bound to when absl was imported (pytest's own stderr capture).
    printed = "\n".join(_printed(summary))
    assert re.search(rf"test split \({test['bars']:,} bars, asset [+-]\S+%\) - agent vs baselines:", printed)
    assert " steps " in printed and " terminated " in printed


def test_sweep_points_are_headed_by_their_values_and_end_in_one_table():
    import io

    from tradelab_jax.training.session import point_label, print_summary

    def summary(ret):
        row = {"steps": 10, "terminated": False, "total_return": ret, "sharpe": 1.5, "max_drawdown": 0.02,
               "trades": 3, "exposure": 0.5}
        return {"run": {}, "splits": {"test": {"bars": 10, "agent": row}}, "policies": {}}

    labels = [point_label({"seed": s, "env.risk_pct": r}) for s in (0, 1) for r in (0.005, 0.01)]
    stream = io.StringIO()
    print_summary([summary(0.01 * i) for i in range(4)], stream=stream, labels=labels)
    text = stream.getvalue()
    assert "[2] seed=1 env.risk_pct=0.005 test split (10 bars) - agent vs baselines:" in text
    table = text.split("sweep of 4 points - the agent on the test split:\n", 1)[1].splitlines()
    assert table[0].split() == ["point", "values", "total_return", "sharpe", "max_drawdown", "trades",
                                "exposure"]
    assert table[3].split() == ["[2]", "seed=1", "env.risk_pct=0.005", "2.00%", "1.50", "2.00%", "3",
                                "50.00%"]
    assert "the best of 2 configurations is flattered by the choice itself" in table[-1]
    # Seeds (and folds) are no choice: a seeds-only sweep has one configuration and no such caution.
    stream = io.StringIO()
    print_summary([summary(0.01), summary(0.02)], stream=stream,
                  labels=[point_label({"fold": 0, "seed": 0}), point_label({"fold": 0, "seed": 1})])
    assert "sweep of 2 points" in stream.getvalue() and "flattered" not in stream.getvalue()
