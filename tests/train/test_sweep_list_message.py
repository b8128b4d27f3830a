"""`tradelab train sweep.seed=0` (a value where a sweep axis needs a list) is one sentence with the fix,
not OmegaConf's "int is not a ListConfig" text."""

from __future__ import annotations

import pytest

from tradelab_jax import cli


@pytest.mark.parametrize(("override", "sentence"), [
    ("sweep.seed=0", "sweep.seed=0 must be a list, e.g. sweep.seed=[0] or sweep.seed=[0,1,2]"),
    ("sweep.env.risk_pct=0.01", "sweep.env.risk_pct=0.01 must be a list, e.g. sweep.env.risk_pct=[0.01] or "
                                "sweep.env.risk_pct=[0.01,0.02]"),
])
def test_a_sweep_axis_given_one_value_says_it_must_be_a_list(override, sentence, outputs, capsys):
    assert cli.main(["train", override, f"run.outputs={outputs}"]) == 2
    assert capsys.readouterr().err.strip() == f"error: {sentence}"
    assert not outputs.exists()  # refused before any run directory was made
