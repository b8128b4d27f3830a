"""`tradelab bench env` runs on tiny sizes and emits valid JSON (no timing is asserted)."""

from __future__ import annotations

import json

import pytest

from tradelab_jax import bench, cli
from tradelab_jax.bench.env import format_table


def test_bench_env_json(capsys):
    # --cpu-devices 1: never change the device count of the test process
    code = bench.main(["env", "--envs", "1,3", "--steps", "4", "--numpy-steps", "30", "--json",
                       "--cpu-devices", "1", "--dataset", "binance_btcusdt_1m_2025-10"])
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["benchmark"] == "env" and result["num_features"] == 2
    assert [r["envs"] for r in result["jax"]] == [1, 3]
    for row in result["jax"]:
        assert row["steps"] == 4 and row["steps_per_s"] > 0 and row["compile_s"] > 0
        assert row["speedup_vs_numpy"] > 0
    assert result["numpy"]["steps"] == 30
    assert "numpy" in format_table(result) and "jax" in format_table(result)


def test_both_key_modes_run():
    import jax

    from tradelab_jax.bench.env import make_rollout
    from tradelab_jax.env import make

    env, params = make("binance_btcusdt_1m_2025-10", episode_length=5)
    for keys in ("hash", "split"):
        checksum = make_rollout(env, 4, 12, keys=keys)(jax.random.split(jax.random.key(0), 1), params)
        assert checksum.shape == (1,) and bool(jax.numpy.isfinite(checksum).all())


def test_bench_usage_and_errors(capsys):
    assert bench.main([]) == 0
    assert "env" in capsys.readouterr().out
    assert cli.main(["bench", "nope"]) == 2
    assert "unknown bench subcommand" in capsys.readouterr().err
    assert cli.main(["bench", "env", "--envs", "0"]) == 2
    assert "--envs" in capsys.readouterr().err


@pytest.mark.parametrize("envs", ["a,b", ""])
def test_bad_envs(envs):
    from tradelab_jax.bench.env import _parse_envs
    from tradelab_jax.errors import UserError

    with pytest.raises(UserError):
        _parse_envs(envs)
