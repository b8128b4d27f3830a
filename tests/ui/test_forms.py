"""The launch form: every field typed and range-checked, sweeps packed, nothing injected."""

from __future__ import annotations

import re
import shlex

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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
    r"^(data|features|seed|data\.id|env\.[a-z_]+|agent\.[a-z_]+|run\.(tag|chunk_updates)|sweep\.(seed|env\.[a-z_]+))"
    r"=([A-Za-z0-9_.-]+|\[[0-9eE.+,-]+\])$"
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
        ("risk_pct", "0", "out of range"),
        ("risk_pct", "1.5", "(0, 1]"),
        ("risk_pct", "nan", "not allowed"),
        ("risk_pct", "1e999", "not a finite number"),
        ("risk_pct", "", "is empty"),
        ("risk_pct", "0.01, 0.01", "twice"),
        ("risk_pct", "0.01,env.max_leverage=100", "not allowed"),
        ("risk_pct", "${oc.env:HOME}", "not allowed"),
        ("risk_pct", "0.01]", "not allowed"),
        ("stop_loss_bps", "-5", "[0, 10000)"),
        ("stop_loss_bps", "10000", "out of range"),
        ("maker_fee", "0.01 0.02", "single value"),
        ("maker_fee", "1", "(-1, 1)"),
        ("taker_fee", "-0.001", "[0, 1)"),
        ("taker_fee", "'0.1'", "not allowed"),
        ("order_type", "stop", "not one of"),
        ("order_type", "limit env.x=1", "not one of"),
        ("trailing_stop", "true", "on or off"),
        ("position_buckets", "1", "at least two"),
        ("position_buckets", "-1, 0, 0", "twice"),
        ("total_timesteps", "1.5", "whole numbers"),
        ("total_timesteps", "100", "less than one update"),
        ("num_envs", "0", "out of range"),
        ("num_steps", "-1", "whole numbers"),
        ("chunk_updates", "", "is empty"),
        ("seeds", "-1", "whole numbers"),
        ("seeds", "1, 1", "twice"),
        ("seeds", "99999999999", "too large"),
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
def test_invalid_fields_are_refused_with_a_sentence_naming_the_field(field, value, needle):
    plan, errors = forms.parse_form(values(**{field: value}), CHOICES)
    assert plan is None and set(errors) == {field}, errors
    assert needle in errors[field]


def test_a_batch_that_does_not_split_into_minibatches_is_refused():
    plan, errors = forms.parse_form(values(num_envs="3", num_steps="5"), CHOICES)
    assert plan is None and "divisible by agent.num_minibatches=4" in errors["num_envs"]


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
    """The overrides are valid for the real Hydra config (compose only: no training, no JAX)."""
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
