"""The launch form: every field typed and range-checked, sweeps packed, nothing injected."""

from __future__ import annotations

import dataclasses
import re
import shlex

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from tradelab_jax.errors import UserError
from tradelab_jax.knobs import AGENT_KNOBS, ALL_KNOBS, ENV_KNOBS
from tradelab_jax.ui import forms

CHOICES = forms.Choices(
    datasets=(
        forms.Dataset("binance_btcusdt_1m", "BTC 1m"),
        forms.Dataset("binance_btcusdt_1m_2025-10", "Oct"),
        forms.Dataset("broken_ds", "broken", ok=False),
        forms.Dataset("lake_only", "no conf file"),
    ),
    feature_sets=("default", "full"),
    defaults={
        "num_minibatches": 4,
        "risk_pct": 0.01,
        "stop_loss_bps": 50.0,
        "order_type": "limit",
        "position_buckets": [-1.0, 0.0, 1.0],
        "total_timesteps": 4096,
        "num_envs": 4,
        "num_steps": 128,
        "chunk_updates": 10,
        "seeds": 0,
        "tag": "ui",
        "dataset": "binance_btcusdt_1m",
        "features": "default",
    },
    data_configs=("binance_btcusdt_1m", "binance_btcusdt_1m_2025-10"),
)
# A generated override: a known key, '=', then a number, a bool, a name or a list of numbers.
SAFE_OVERRIDE = re.compile(
    r"^(data|features|seed|data\.id|env\.[a-z_]+|agent\.[a-z_]+|run\.(tag|chunk_updates)|sweep\.(seed|env\.[a-z_]+)"
    r"|data\.split\.(train|val)|data\.(start|end)|cv|cv\.[a-z_]+)"
    r"=([A-Za-z0-9_.-]+|\[[0-9eE.+,-]+\]|'\d{4}-\d{2}-\d{2}(T\d{2}:\d{2})?')$"
)


def values(**changes):
    return {**forms.initial_values(CHOICES), **changes}


def test_defaults_make_a_single_run_with_every_field_as_an_override():
    plan, errors = forms.parse_form(values(), CHOICES)
    assert errors == {} and plan.points == 1 and not plan.packed
    assert plan.overrides == (
        "data=binance_btcusdt_1m",
        "features=default",
        "env.risk_pct=0.01",
        "env.stop_loss_bps=50.0",
        "env.order_type=limit",
        "env.trailing_stop=false",
        "env.position_buckets=[-1.0,0.0,1.0]",
        "agent.total_timesteps=4096",
        "agent.num_envs=4",
        "agent.num_steps=128",
        "run.chunk_updates=10",
        "seed=0",
        "run.tag=ui",
    )


def test_several_values_become_one_packed_sweep():
    plan, errors = forms.parse_form(
        values(
            risk_pct="0.005, 0.01 0.02",
            stop_loss_bps="25,50",
            seeds="0, 1",
            maker_fee="-0.0001",
            taker_fee="0.001",
            order_type="market",
            trailing_stop=True,
            dataset="lake_only",
            features="full",
        ),
        CHOICES,
    )
    assert errors == {}
    assert plan.points == 12 and plan.axes == {
        "seed": [0, 1],
        "env.risk_pct": [0.005, 0.01, 0.02],
        "env.stop_loss_bps": [25.0, 50.0],
    }
    o = plan.overrides
    assert "sweep.env.risk_pct=[0.005,0.01,0.02]" in o and "sweep.env.stop_loss_bps=[25.0,50.0]" in o
    assert "sweep.seed=[0,1]" in o and not any(x.startswith(("seed=", "env.risk_pct=")) for x in o)
    assert {
        "env.maker_fee=-0.0001",
        "env.taker_fee=0.001",
        "env.order_type=market",
        "env.trailing_stop=true",
        "data.id=lake_only",
        "features=full",
    } <= set(o)


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("risk_pct", "nan", "not allowed"),
        ("risk_pct", "1e999", "not a finite number"),
        ("risk_pct", "", "is empty"),
        ("risk_pct", "0.01, 0.01", "twice"),
        ("risk_pct", "0.01,env.max_leverage=100", "not allowed"),
        ("risk_pct", "${oc.env:HOME}", "not allowed"),
        ("risk_pct", "0.01]", "not allowed"),
        ("maker_fee", "0.01 0.02", "single value"),
        ("taker_fee", "'0.1'", "not allowed"),
        ("total_timesteps", "1.5", "whole numbers"),
        ("total_timesteps", "100", "less than one update"),
        ("chunk_updates", "", "is empty"),
        ("seeds", "1, 1", "twice"),
        ("seeds", "0.5", "whole numbers"),
        ("tag", "", "experiment tag"),
        ("tag", "my run", "experiment tag"),
        ("tag", "a=b", "experiment tag"),
        ("tag", "-m", "experiment tag"),
        ("tag", "x,run.dir=/etc", "experiment tag"),
        ("tag", "../../etc", "experiment tag"),
        ("tag", "'quoted'", "experiment tag"),
        ("dataset", "broken_ds", "not in the lake"),
        ("dataset", "../data", "not in the lake"),
        ("features", "../../secrets", "not a file in conf/features"),
    ],
)
def test_invalid_text_is_refused_with_a_sentence_naming_the_field(field, value, needle):
    plan, errors = forms.parse_form(values(**{field: value}), CHOICES)
    assert plan is None and set(errors) == {field}, errors
    assert needle in errors[field]


def knob_sentence(key, value):
    """What the knob table says of ``value`` (the sentence the CLI prints after ``error:``)."""
    with pytest.raises(UserError) as refused:
        ALL_KNOBS[key].check(value)
    return str(refused.value)


@pytest.mark.parametrize(
    ("field", "text", "key", "typed"),
    [
        ("risk_pct", "0", "env.risk_pct", 0.0),
        ("risk_pct", "1.5", "env.risk_pct", 1.5),
        ("risk_pct", "0.005, 2", "env.risk_pct", 2.0),  # one bad value of a sweep
        ("stop_loss_bps", "-5", "env.stop_loss_bps", -5.0),
        ("stop_loss_bps", "10000", "env.stop_loss_bps", 10000.0),
        ("maker_fee", "1", "env.maker_fee", 1.0),
        ("taker_fee", "-0.001", "env.taker_fee", -0.001),
        ("order_type", "stop", "env.order_type", "stop"),
        ("order_type", "limit env.x=1", "env.order_type", "limit env.x=1"),
        ("trailing_stop", "true", "env.trailing_stop", "true"),
        ("position_buckets", "1", "env.position_buckets", [1.0]),
        ("position_buckets", "-1, 0, 0", "env.position_buckets", [-1.0, 0.0, 0.0]),
        ("position_buckets", "-20, 20", "env.position_buckets", [-20.0, 20.0]),
        ("total_timesteps", "0", "agent.total_timesteps", 0),
        ("num_envs", "0", "agent.num_envs", 0),
        ("num_envs", "70000", "agent.num_envs", 70000),
        ("num_steps", "-1", "agent.num_steps", -1),
        ("chunk_updates", "0", "run.chunk_updates", 0),
        ("seeds", "-1", "seed", -1),
        ("seeds", "0, 99999999999", "seed", 99999999999),
    ],
)
def test_a_value_out_of_a_knobs_range_gets_the_knob_tables_sentence(field, text, key, typed):
    plan, errors = forms.parse_form(values(**{field: text}), CHOICES)
    assert plan is None and set(errors) == {field}, errors
    assert errors[field] == knob_sentence(key, typed)
    assert errors[field].endswith("expected " + ALL_KNOBS[key].valid)


@pytest.mark.parametrize(
    ("field", "text", "override"),
    [
        ("position_buckets", "1", "env.position_buckets=[1]"),
        ("position_buckets", "0.5, 0.5", "env.position_buckets=[0.5,0.5]"),
        ("position_buckets", "-20, 20", "env.position_buckets=[-20,20]"),
        ("seeds", "-1", "seed=-1"),
        ("risk_pct", "2", "env.risk_pct=2"),
        ("num_envs", "0", "agent.num_envs=0"),
    ],
)
def test_the_form_refuses_what_the_cli_refuses_with_the_same_sentence(field, text, override):
    """``tradelab train <override>`` (its config checks, without training) and the form, side by side."""
    from tradelab_jax.training import compose

    compose.register()
    with pytest.raises(UserError) as cli:
        compose.check_overrides([override])
    _, errors = forms.parse_form(values(**{field: text}), CHOICES)
    assert errors == {field: str(cli.value)}


def test_a_batch_that_does_not_split_into_minibatches_is_refused():
    plan, errors = forms.parse_form(values(num_envs="3", num_steps="5"), CHOICES)
    assert plan is None and "divisible by agent.num_minibatches=4" in errors["num_envs"]


@pytest.mark.parametrize(
    ("total", "envs", "steps", "minibatches"),
    [(100, 4, 128, 4), (511, 4, 128, 4), (4096, 3, 5, 4), (4096, 4, 128, 3), (512, 4, 128, 4),
     (4096, 2, 6, 4)],
)
def test_the_budget_check_is_the_trainers(total, envs, steps, minibatches):
    """The form and runner.ppo_spec call one rule (knobs.num_updates); both refuse the same budgets with
    the same sentence."""
    from tradelab_jax.training.runner import ppo_spec

    agent = {"total_timesteps": total, "num_envs": envs, "num_steps": steps, "update_epochs": 4,
             "num_minibatches": minibatches, "anneal_lr": True, "normalize_advantages": True}
    try:
        ppo_spec({"agent": agent, "network": {"hidden_sizes": [64, 64], "activation": "tanh"}})
        trainer = None
    except UserError as err:
        trainer = str(err)
    choices = dataclasses.replace(CHOICES, defaults={**CHOICES.defaults, "num_minibatches": minibatches})
    form = dict(total_timesteps=str(total), num_envs=str(envs), num_steps=str(steps))
    _, errors = forms.parse_form(values(**form), choices)
    assert list(errors.values()) == ([trainer] if trainer else [])


def test_the_defaults_are_the_knob_tables():
    bare = forms.Choices(datasets=(forms.Dataset("d", "d"),), feature_sets=("default",))
    for choices in (bare, forms.load_choices()):
        plan, errors = forms.parse_form(forms.initial_values(choices), choices)
        assert errors == {}
        typed = dict(o.split("=", 1) for o in plan.overrides)
        for key in ("env.risk_pct", "env.stop_loss_bps", "env.order_type", "agent.total_timesteps",
                    "agent.num_envs", "agent.num_steps", "run.chunk_updates", "seed"):
            knob = ALL_KNOBS[key]
            assert knob.check(typed[key]) == knob.check(knob.default), key
        buckets = ENV_KNOBS["position_buckets"]
        assert buckets.check(yaml.safe_load(typed["env.position_buckets"])) == buckets.default
        assert typed["env.trailing_stop"] == str(ENV_KNOBS["trailing_stop"].default).lower()
        assert "env.maker_fee" not in typed and "env.taker_fee" not in typed  # blank: the config's own


def test_a_huge_sweep_is_refused():
    big = ", ".join(str(i) for i in range(300))
    plan, errors = forms.parse_form(values(seeds=big), CHOICES)
    assert plan is None and "at most 256" in errors["risk_pct"]


text_fields = (
    "risk_pct",
    "stop_loss_bps",
    "maker_fee",
    "taker_fee",
    "position_buckets",
    "total_timesteps",
    "num_envs",
    "num_steps",
    "chunk_updates",
    "seeds",
    "tag",
    *forms.SPLIT_FIELDS,
    *(f for f in forms.CV_FIELDS if f not in ("cv", "cv_mode")),
)


@settings(max_examples=300, deadline=None)
@given(field=st.sampled_from(text_fields), text=st.text(max_size=40))
def test_no_text_can_produce_an_override_outside_the_safe_grammar(field, text):
    plan, errors = forms.parse_form(values(**{field: text}), CHOICES)
    if plan is None:
        assert field in errors or errors
        return
    for override in plan.overrides:
        assert SAFE_OVERRIDE.match(override), override
    assert len(plan.overrides) == len({o.split("=", 1)[0] for o in plan.overrides})


def test_preview_is_the_shell_quoted_command_with_the_run_dir():
    plan, _ = forms.parse_form(values(risk_pct="0.005, 0.01"), CHOICES)
    text = forms.preview(plan, "/o/multirun/20250101T000000Z_ui")
    command = "\n".join(ln for ln in text.splitlines() if not ln.startswith("#"))
    assert command.startswith("tradelab train \\\n  data=binance_btcusdt_1m \\\n")
    assert shlex.split(command.replace(" \\\n", " "))[2:] == [
        *plan.overrides,
        "run.dir=/o/multirun/20250101T000000Z_ui",
    ]
    assert "one packed sweep: 2 runs" in text
    assert "fix the fields" in forms.preview(None)


def test_run_dir_override_quotes_unusual_paths_for_hydra():
    assert forms.run_dir_override("/tmp/out/x_y") == "run.dir=/tmp/out/x_y"
    assert forms.run_dir_override("/tmp/my runs/it's") == "run.dir='/tmp/my runs/it\\'s'"


def test_the_real_choices_come_from_the_lake_and_conf():
    choices = forms.load_choices()
    assert "binance_btcusdt_1m" in choices.dataset_ids() and "default" in choices.feature_sets
    label = next(d.label for d in choices.datasets if d.id == "binance_btcusdt_1m")
    assert "2025-05-20" in label and "2025-08-18" in label
    plan, errors = forms.parse_form(forms.initial_values(choices), choices)
    assert errors == {} and plan is not None


def test_the_trainer_composes_what_the_form_produces(tmp_path):
    """The overrides are valid for the real Hydra config (compose and config checks only: no training)."""
    from tradelab_jax.training import compose

    choices = forms.load_choices()
    plan, errors = forms.parse_form(
        {
            **forms.initial_values(choices),
            "risk_pct": "0.005, 0.01",
            "seeds": "0, 1",
            "maker_fee": "0.0001",
            "trailing_stop": True,
            "order_type": "market",
        },
        choices,
    )
    assert errors == {}
    compose.register()
    compose.check_overrides([*plan.overrides, forms.run_dir_override(tmp_path / "multirun" / "x_ui")])


# ---------------------------------------------------------------------------------------------------------
# The "Advanced" section and the experiment preset


def test_the_advanced_section_holds_every_other_env_and_ppo_knob():
    on_form = {f.knob.key for n, f in forms.FIELD_TABLE.items() if f.knob and n not in forms.ADVANCED}
    keys = {f"env.{k}" for k in ENV_KNOBS} | {f"agent.{k}" for k in AGENT_KNOBS}
    assert {forms.FIELD_TABLE[n].knob.key for n in forms.ADVANCED} == keys - on_form
    assert "slippage_bps" in forms.ADVANCED and "lr" in forms.ADVANCED
    # Each starts blank, so a launch with the defaults passes none of them.
    assert all(forms.initial_values(CHOICES)[n] == "" for n in forms.ADVANCED)


@pytest.mark.parametrize(
    ("field", "text", "override"),
    [
        ("slippage_bps", "2", "env.slippage_bps=2.0"),
        ("lr", "3e-4", "agent.lr=0.0003"),
        ("update_epochs", "8", "agent.update_epochs=8"),
        ("reward", "pnl", "env.reward=pnl"),
        ("random_start", "false", "env.random_start=false"),
    ],
)
def test_an_advanced_value_becomes_its_override(field, text, override):
    plan, errors = forms.parse_form(values(**{field: text}), CHOICES)
    assert errors == {} and override in plan.overrides
    base, _ = forms.parse_form(values(), CHOICES)
    assert set(plan.overrides) - set(base.overrides) == {override}


@pytest.mark.parametrize(
    ("field", "text", "key"),
    [("slippage_bps", "-1", "env.slippage_bps"), ("gamma", "1.5", "agent.gamma"),
     ("reward", "sharpe", "env.reward"), ("anneal_lr", "maybe", "agent.anneal_lr")],
)
def test_a_bad_advanced_value_gets_the_knob_tables_sentence(field, text, key):
    plan, errors = forms.parse_form(values(**{field: text}), CHOICES)
    assert plan is None and list(errors) == [field]
    knob = ALL_KNOBS[key]
    assert errors[field].startswith(f"invalid {key}=") and errors[field].endswith(f"expected {knob.valid}")
    typed = text if knob.kind in ("bool", "choice") else float(text)
    with pytest.raises(UserError) as cli:
        knob.check(typed)
    assert str(cli.value) == errors[field]


def test_num_minibatches_from_the_advanced_section_drives_the_budget_check():
    plan, errors = forms.parse_form(values(num_minibatches="3"), CHOICES)  # 4 x 128 = 512 is not divisible
    assert plan is None and "agent.num_minibatches=3" in errors["num_envs"]


def test_the_experiment_preset_reaches_the_launched_argv(outputs, make_queue):
    choices = dataclasses.replace(CHOICES, experiments=("demo", "spot_costs"))
    plan, errors = forms.parse_form(values(experiment="spot_costs", slippage_bps="3"), choices)
    assert errors == {} and plan.overrides[0] == "experiment=spot_costs"
    # Fields left at their start value leave the preset's (spot_costs trades market orders); the tag and a
    # changed value are kept.
    assert not any(o.startswith(("env.order_type=", "env.risk_pct=")) for o in plan.overrides)
    assert "env.slippage_bps=3.0" in plan.overrides and "run.tag=ui" in plan.overrides
    job = make_queue().submit(plan)
    assert job.argv[2:-1] == list(plan.overrides) and "experiment=spot_costs" in job.argv
    mine = values(experiment="spot_costs", order_type="market", risk_pct="0.02")
    changed, _ = forms.parse_form(mine, choices)
    assert {"env.order_type=market", "env.risk_pct=0.02"} <= set(changed.overrides)
    none, _ = forms.parse_form(values(experiment="none"), choices)
    assert not any(o.startswith("experiment=") for o in none.overrides)
    bad, errs = forms.parse_form(values(experiment="nope"), choices)
    assert bad is None and errs["experiment"].endswith("valid: none, demo, spot_costs")


def test_the_real_presets_compose_with_advanced_values(tmp_path):
    from tradelab_jax.training import compose

    choices = forms.load_choices()
    assert {"spot_costs", "demo"} <= set(choices.experiments)
    plan, errors = forms.parse_form(
        {**forms.initial_values(choices), "experiment": "spot_costs", "slippage_bps": "3", "gamma": "0.9",
         "anneal_lr": "false"},
        choices,
    )
    assert errors == {}
    compose.register()
    compose.check_overrides([*plan.overrides, forms.run_dir_override(tmp_path / "x_ui")])


# ---------------------------------------------------------------------------------------------------------
# Splits and cross-validation


@pytest.mark.parametrize(
    "changes, expected",
    [
        ({}, ()),
        ({"data_start": "2025-10-01", "data_end": "2025-10-20T12:00"},
         ("data.start='2025-10-01'", "data.end='2025-10-20T12:00'")),
        ({"split_train": "0.6", "split_val": "0.2"}, ("data.split.train=0.6", "data.split.val=0.2")),
        ({"cv": "walk_forward", "cv_folds": "3", "cv_embargo_bars": "10", "cv_test": "0.1",
          "cv_train": "2000", "cv_mode": "rolling"},
         ("cv=walk_forward", "cv.folds=3", "cv.embargo_bars=10", "cv.test=0.1", "cv.train=2000",
          "cv.mode=rolling")),
        ({"cv": "purged_kfold", "cv_folds": "4"}, ("cv=purged_kfold", "cv.folds=4")),
    ],
)
def test_split_and_cv_fields_become_the_clis_overrides(changes, expected):
    plan, errors = forms.parse_form(values(**changes), CHOICES)
    assert errors == {}
    new = [o for o in plan.overrides if o.split("=")[0].startswith(("data.s", "data.e", "cv"))]
    assert tuple(new) == expected


@pytest.mark.parametrize(
    "changes, field, needle",
    [
        ({"data_start": "01/10/2025"}, "data_start", "data.start must be a UTC date like 2025-10-01"),
        ({"data_start": "2025-13-01"}, "data_start", "data.start"),
        ({"split_train": "0.5, 0.6"}, "split_train", "data.split.train takes a single value, got 2"),
        ({"split_train": "${oops}"}, "split_train", "may only hold numbers"),
        ({"cv_folds": "3"}, "cv_folds", "cv.folds sets up cross-validation folds; choose cv=walk_forward"),
        ({"cv": "purged_kfold", "cv_test": "0.1"}, "cv_test", "cv.test is a walk-forward setting"),
        ({"cv": "walk_forward", "cv_test": "-3"}, "cv_test",
         "cv.test must be a number of bars (int >= 1) or a fraction in (0, 1), got -3"),
        ({"cv": "walk_forward", "cv_folds": "2.5"}, "cv_folds", "cv.folds must be whole numbers"),
        ({"cv": "kfold"}, "cv", "invalid cv.kind 'kfold'"),
    ],
)
def test_a_bad_split_or_cv_value_is_one_sentence_under_its_field(changes, field, needle):
    plan, errors = forms.parse_form(values(**changes), CHOICES)
    assert plan is None and list(errors) == [field] and needle in errors[field]


@pytest.mark.parametrize(
    "changes, field, overrides",
    [
        ({"split_train": "1.5"}, "split_train", ["data.split.train=1.5"]),
        ({"split_train": "0.9", "split_val": "0.2"}, "split_val",
         ["data.split.train=0.9", "data.split.val=0.2"]),
        ({"data_start": "2025-10-20", "data_end": "2025-10-10"}, "data_end",
         ["data.start='2025-10-20'", "data.end='2025-10-10'"]),
        ({"cv": "walk_forward", "cv_folds": "1"}, "cv_folds", ["cv=walk_forward", "cv.folds=1"]),
        ({"cv": "walk_forward", "cv_mode": "expanding", "cv_train": "500"}, "cv_train",
         ["cv=walk_forward", "cv.mode=expanding", "cv.train=500"]),
    ],
)
def test_split_and_cv_refusals_are_the_trainers_sentences(changes, field, overrides):
    """The form's sentence is the one the trainer's own validation prints for the same overrides."""
    from tradelab_jax.training import compose

    compose.register()
    with pytest.raises(UserError) as cli:
        compose.check_overrides(["data.id=binance_btcusdt_1m_2025-10", *overrides])
    _, errors = forms.parse_form(values(**changes), CHOICES)
    assert errors == {field: str(cli.value)}


def test_the_trainer_composes_the_split_and_cv_overrides():
    from tradelab_jax.training import compose

    choices = forms.load_choices()
    plan, errors = forms.parse_form({**forms.initial_values(choices), "data_start": "2025-10-02",
                                     "split_train": "0.6", "cv": "purged_kfold", "cv_folds": "3",
                                     "cv_embargo_bars": "5"}, choices)
    assert errors == {}
    compose.register()
    compose.check_overrides(["data.id=binance_btcusdt_1m_2025-10", *plan.overrides[1:]])
