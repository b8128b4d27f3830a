"""CPU numerics: float32 against the float64 reference, and jitted against un-jitted replays."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from tradelab_jax.env import replay
from tradelab_jax.parity import main as parity_main
from tradelab_jax.parity import tolerances
from tradelab_jax.parity import workloads as wl
from tradelab_jax.parity.checks import compare_rollouts
from tradelab_jax.parity.workloads import load_arrays

from .helpers import read_report, rows_by_name


def test_float32_is_within_tolerance_of_the_x64_reference(tmp_path, capsys):
    out = tmp_path / "parity"
    # One float32 and one float64 (JAX_ENABLE_X64) CPU worker process, side by side.
    code = parity_main(["--backends", "cpu", "--workloads", "features,rollouts", "--bars", "6000",
                        "--steps", "2000", "--out", str(out)])
    printed = capsys.readouterr().out
    assert code == 0, printed
    doc = read_report(out)
    assert doc["ok"] and [r["profile"] for r in doc["reports"]] == ["x64"]
    report = doc["reports"][0]
    assert report["meta"]["subject"]["precision"] == "float32"
    assert report["meta"]["reference"]["precision"] == "float64"
    rows = rows_by_name(report)
    # Discrete telemetry matches exactly; every continuous quantity is within its documented tolerance.
    for name in ("filled", "stop_hit", "terminated", "t", "sign(position)", "steps (episode end)"):
        assert rows[f"rollouts:{name}"]["kind"] == "discrete" and rows[f"rollouts:{name}"]["mismatches"] == 0
    assert rows["rollouts:equity"]["max_abs"] > 0  # float32 really differs from float64...
    assert rows["rollouts:equity"]["max_rel"] < 1e-4  # ...by less than the tolerance
    assert rows["features (f32 compute):zscore_30"]["max_abs"] < 2e-3
    assert rows["features (f32 compute):clv"]["tolerance"] == "report only"
    # The replays exercised what they are meant to: fills and stop exits under every combination.
    telemetry = load_arrays(out / "workers" / "cpu_float32" / "rollouts.npz")
    for combo in wl.KNOB_COMBOS:
        assert telemetry[f"{combo}.filled"].sum() > 10 and telemetry[f"{combo}.stop_hit"].sum() > 0, combo
    assert "PASS" in printed and "cpu float32  vs  cpu float64" in printed


@pytest.fixture(scope="module")
def short_bars():
    return wl.load_bars(n_bars=2000)


def test_jitted_and_unjitted_replays_agree(short_bars):
    """Discrete telemetry is bit-identical; continuous values agree within the float32 tolerances.

    They are not bit-identical: under jit XLA rewrites a division by a constant (``price * bps / 1e4``) as
    a multiplication by its rounded reciprocal, 1 ulp away from the eager division (docs/parity.md).
    """
    actions = wl.action_sequence(150)
    knobs = wl.KNOB_COMBOS["limit_trailing"]
    jitted = replay(short_bars, actions, start=wl.ROLLOUT_START, **knobs)
    again = replay(short_bars, actions, start=wl.ROLLOUT_START, **knobs)
    with jax.disable_jit():
        eager = replay(short_bars, actions, start=wl.ROLLOUT_START, **knobs)
    assert jitted["filled"].sum() > 3 and jitted["stop_hit"].sum() > 0
    for key in jitted:  # the same compiled program twice: bit for bit
        assert jitted[key].tobytes() == again[key].tobytes(), key
    as_arrays = lambda t: {f"c.{k}": np.asarray(v) for k, v in t.items()}
    rows = compare_rollouts(as_arrays(eager), as_arrays(jitted), "x64")
    assert all(r.ok for r in rows), [r for r in rows if not r.ok]
    for name in ("filled", "stop_hit", "terminated", "t", "sign(position)"):
        assert next(r for r in rows if r.name == name).mismatches == 0
    for key in wl.DISCRETE_TELEMETRY:
        assert np.array_equal(eager[key], jitted[key]), key


def test_feature_tolerances_name_every_full_feature():
    from tradelab_jax import features

    for spec in features.load_feature_set("full"):
        tol, gated = tolerances.feature_tolerance("x64", spec.name, float32_compute=True)
        assert gated == (spec.kind != "clv")
        assert tolerances._feature_kind(spec.name) == spec.kind, spec.name
        assert tol.atol > 0
