"""Config errors fail at compose time with one clear sentence, before anything compiles."""

from __future__ import annotations

import subprocess
import sys

import pytest

from tradelab_jax import train
from tradelab_jax.errors import UserError


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("agent.lrr=0.1", "unknown config key 'agent.lrr'; valid keys there: name, total_timesteps"),
        ("agent.lr=fast", "invalid value for agent.lr"),
        ("env.risk_pct=abc", "invalid value for env.risk_pct"),
        ("env=foo", "unknown env option 'foo'; valid options: gymnax, trading"),
        ("sweep.env.window=[1,2]", "sweep.env.window cannot be swept"),
        ("run.tag=../evil", "invalid run.tag"),
    ],
)
def test_compose_errors_are_one_sentence(override, expected, outputs):
    with pytest.raises(UserError) as info:
        train.main([override, f"run.outputs={outputs}"])
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert not outputs.exists()  # refused before any run directory was made


def test_multirun_values_are_each_checked(outputs):
    with pytest.raises(UserError, match=r"invalid value for agent\.lr"):
        train.main(["-m", "agent.lr=0.1,oops", f"run.outputs={outputs}"])


def test_sweep_error_names_the_sweepable_keys(outputs):
    with pytest.raises(UserError) as info:
        train.main(["sweep.agent.num_envs=[2,4]", f"run.outputs={outputs}"])
    assert "sweepable keys: seed, env.risk_pct" in str(info.value)
    assert "agent.lr" in str(info.value)


def test_cli_prints_one_error_line_and_exits_2(outputs):
    proc = subprocess.run(
        [sys.executable, "-m", "tradelab_jax.cli", "train", "agent.lrr=1", f"run.outputs={outputs}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: unknown config key 'agent.lrr'")
    assert "Traceback" not in proc.stderr


def test_help_lists_only_real_group_options(outputs):
    proc = subprocess.run(
        [sys.executable, "-m", "tradelab_jax.cli", "train", "--help", f"run.outputs={outputs}"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    groups = text.split("== Configuration groups ==", 1)[1].split("== Config ==", 1)[0]
    listed = dict(line.split(": ", 1) for line in groups.splitlines() if ": " in line)
    assert "schema" not in groups  # the ConfigStore schemas are no options of any group
    assert listed["agent"] == "ppo"
    assert listed["data"] == "binance_btcusdt_1m, binance_btcusdt_1m_2025-10"
    assert listed["env"] == "gymnax, trading"
    assert listed["network"] == "mlp"
    assert listed["run"] == "default"
    assert not [g for g in listed if g.startswith("schema")]


def test_schema_names_are_not_group_options(outputs):
    with pytest.raises(UserError, match=r"unknown agent option 'ppo_schema'; valid options: ppo$"):
        train.main(["agent=ppo_schema", f"run.outputs={outputs}"])
    with pytest.raises(UserError, match=r"unknown env option 'run_schema'; valid options: gymnax, trading$"):
        train.main(["env=run_schema", f"run.outputs={outputs}"])
