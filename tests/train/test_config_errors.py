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


def test_cli_prints_one_error_line_and_exits_2(outputs, scaled):
    proc = subprocess.run(
        [sys.executable, "-m", "tradelab_jax.cli", "train", "agent.lrr=1", f"run.outputs={outputs}"],
        capture_output=True, text=True, timeout=scaled(120),
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == [lines[0]] and lines[0].startswith("error: unknown config key 'agent.lrr'")
    assert "Traceback" not in proc.stderr


def test_help_lists_only_real_group_options(outputs, scaled):
    proc = subprocess.run(
        [sys.executable, "-m", "tradelab_jax.cli", "train", "--help", f"run.outputs={outputs}"],
        capture_output=True, text=True, timeout=scaled(120),
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    groups = text.split("== Configuration groups ==", 1)[1].split("== Config ==", 1)[0]
    listed = dict(line.split(": ", 1) for line in groups.splitlines() if ": " in line)
    assert "schema" not in groups  # the ConfigStore schemas are no options of any group
    assert listed["agent"] == "ppo"
    # The shipped datasets, plus whatever a user added to the repo's lake (every lake dataset is an option).
    assert {"binance_btcusdt_1m", "binance_btcusdt_1m_2025-10"} <= set(listed["data"].split(", "))
    assert listed["env"] == "gymnax, trading"
    assert listed["network"] == "mlp"
    assert listed["run"] == "default"
    assert not [g for g in listed if g.startswith("schema")]


def test_schema_names_are_not_group_options(outputs):
    with pytest.raises(UserError, match=r"unknown agent option 'ppo_schema'; valid options: ppo$"):
        train.main(["agent=ppo_schema", f"run.outputs={outputs}"])
    with pytest.raises(UserError, match=r"unknown env option 'run_schema'; valid options: gymnax, trading$"):
        train.main(["env=run_schema", f"run.outputs={outputs}"])


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("env.risk_pct=2", "invalid env.risk_pct=2.0: expected a fraction in (0, 1]"),
        ("env.taker_fee=-0.5", "invalid env.taker_fee"),
        ("env.stop_loss_bps=-5", "invalid env.stop_loss_bps"),
        ("env.order_type=stop", "order_type"),
        ("env.position_buckets=[]", "position_buckets"),
        ("env.episode_length=0", "episode_length"),
        ("env.window=0", "invalid env.window=0"),
        ("agent.num_envs=0", "invalid agent.num_envs=0: expected a whole number in [1, 65536]"),
        ("agent.num_minibatches=3", "not divisible by agent.num_minibatches=3"),
        ("agent.total_timesteps=100", "agent.total_timesteps=100 is less than one update"),
        ("agent.lr=-1", "invalid agent.lr=-1.0: expected a positive learning rate"),
        ("agent.gamma=1.5", "invalid agent.gamma=1.5: expected a discount in [0, 1]"),
        ("agent.gae_lambda=-0.1", "invalid agent.gae_lambda"),
        ("agent.clip_eps=0", "invalid agent.clip_eps"),
        ("network.activation=foo", "invalid network.activation 'foo'; valid:"),
        ("network.hidden_sizes=[64,0]", "network.hidden_sizes"),
        ("run.eval_splits=[foo]", "invalid run.eval_splits entry 'foo': use any of train, val, test"),
        ("run.chunk_updates=0", "invalid run.chunk_updates=0"),
        ("sweep.env.risk_pct=[0.01,3]", "invalid env.risk_pct=3.0"),
        ("sweep.agent.gamma=[0.9,2]", "invalid agent.gamma=2.0"),
        ("features=nope", "nope"),
    ],
)
def test_values_that_cannot_train_are_refused_before_any_directory(override, expected, outputs):
    with pytest.raises(UserError) as info:
        train.main([override, f"run.outputs={outputs}"])
    message = str(info.value)
    assert expected in message
    assert "\n" not in message
    assert not outputs.exists()


def test_gymnax_env_id_is_checked_before_any_directory(outputs):
    with pytest.raises(UserError, match=r"unknown gymnax env.id 'Nope-v1'; valid: .*CartPole-v1"):
        train.main(["env=gymnax", "env.id=Nope-v1", f"run.outputs={outputs}"])
    assert not outputs.exists()


def test_unknown_dataset_is_a_data_error_before_any_directory(outputs):
    with pytest.raises(UserError) as info:
        train.main(["data.id=nope", f"run.outputs={outputs}"])
    assert info.value.exit_code == 3
    assert "no dataset 'nope'" in str(info.value) and "binance_btcusdt_1m" in str(info.value)
    assert not outputs.exists()


def test_a_mistyped_resume_path_is_refused_and_not_created(tmp_path):
    typo = tmp_path / "typo_resume_dir"
    with pytest.raises(UserError, match=r"run.resume=.* is not a run directory \(.* does not exist\)"):
        train.main([f"run.resume={typo}"])
    assert not typo.exists()


def test_run_dir_holding_a_finished_run_is_refused_naming_run_dir(tmp_path):
    from tradelab_jax import runs

    done = tmp_path / "done_run"
    done.mkdir()
    runs.write_status(done, status="done", progress=1.0)
    before = sorted(p.name for p in done.iterdir())
    with pytest.raises(UserError, match=r"run.dir=.* already holds a run \(done\); choose another run.dir"):
        train.main([f"run.dir={done}"])
    assert sorted(p.name for p in done.iterdir()) == before  # nothing written into it


def test_value_error_on_the_cli_is_one_line_exit_2_without_traceback(outputs, scaled):
    proc = subprocess.run(
        [sys.executable, "-m", "tradelab_jax.cli", "train", "env.risk_pct=2", f"run.outputs={outputs}"],
        capture_output=True, text=True, timeout=scaled(120),
    )
    assert proc.returncode == 2, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert lines == ["error: invalid env.risk_pct=2.0: expected a fraction in (0, 1]"], proc.stderr
    assert not outputs.exists()


def test_large_maker_rebate_warns_but_is_allowed(capsys):
    from tradelab_jax.training.validate import check_config

    plain = _compose(["env.maker_fee=-0.001"])
    check_config(plain)
    assert "warning: env.maker_fee=-0.001 is a rebate of 0.1000% per fill" in capsys.readouterr().err
    check_config(_compose(["env.maker_fee=-0.0001"]))
    assert capsys.readouterr().err == ""


def test_a_cancelled_run_names_its_directory_and_how_to_resume_it(tmp_path, scaled):
    from .helpers import TINY_GYMNAX

    run_dir = tmp_path / "cut"
    run_dir.mkdir()
    (run_dir / "CANCEL").touch()  # seen after the first chunk
    proc = subprocess.run(
        [sys.executable, "-m", "tradelab_jax.cli", "train", *TINY_GYMNAX, f"run.dir={run_dir}"],
        capture_output=True, text=True, timeout=scaled(180),
    )
    assert proc.returncode == 130, proc.stderr
    assert f"training {run_dir}: 8 updates of 32 env steps, compiling" in proc.stderr
    assert (f"cancelled after update 2; the last checkpoint is kept. Continue with: tradelab train "
            f"run.resume={run_dir}") in proc.stderr


def _compose(overrides):
    from hydra import compose, initialize_config_dir

    from tradelab_jax import paths
    from tradelab_jax.training import compose as tl_compose

    tl_compose.register()
    with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
        return tl_compose.to_plain(compose("config", overrides=overrides))


def test_a_sweep_without_multirun_is_refused_in_one_sentence(outputs):
    with pytest.raises(UserError, match=r"'seed=0,1' lists several values: add -m .* sweep.seed=\[...\]"):
        train.main(["seed=0,1", f"run.outputs={outputs}"])
    assert not outputs.exists()


@pytest.mark.parametrize(("override", "key"), [("+foo=1", "'foo'"), ("+env.fee=0.1", "'env.fee'")])
def test_keys_added_with_plus_that_nothing_reads_are_refused(override, key, outputs):
    with pytest.raises(UserError, match=rf"unknown config key {key} \(added with \+\?\); valid keys there"):
        train.main([override, f"run.outputs={outputs}"])
    assert not outputs.exists()


def test_resume_refuses_a_done_run_and_names_ignored_overrides(tmp_path, scaled):
    from tradelab_jax import runs
    from tradelab_jax.training import session

    from .helpers import TINY_GYMNAX

    plain = _compose([*TINY_GYMNAX, "run.eval=false"])
    cut = tmp_path / "cut"
    assert session.train_config(plain, cut, should_stop=lambda update: update >= 2)["status"] == "cancelled"
    launch_record = {p.name: p.read_bytes() for p in (tmp_path / "cut").glob(".hydra/*")}
    cmd = [sys.executable, "-m", "tradelab_jax.cli", "train", f"run.resume={cut}", "agent.lr=0.5",
           "run.progress=false"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=scaled(180))
    assert proc.returncode == 0, proc.stderr
    assert ("warning: a resume continues the run's saved config.yaml, so these overrides are ignored: "
            "agent.lr=0.5") in proc.stderr
    assert runs.read_status(cut)["status"] == "done" and runs.read_config(cut)["agent"]["lr"] == 2.5e-4
    assert {p.name: p.read_bytes() for p in cut.glob(".hydra/*")} == launch_record  # not rewritten
    with pytest.raises(UserError, match=r"is done \(trained and evaluated\); nothing to resume"):
        train.main([f"run.resume={cut}"])



def test_spot_costs_preset_composes_and_validates():
    from tradelab_jax.training.validate import check_config

    plain = _compose(["experiment=spot_costs"])
    env = plain["env"]
    assert (env["maker_fee"], env["taker_fee"], env["slippage_bps"]) == (0.001, 0.001, 2.0)
    assert env["order_type"] == "market" and env["max_leverage"] == 1.0
    assert plain["run"]["tag"] == "spot_costs"
    check_config(plain)
