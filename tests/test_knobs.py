"""The knob table (tradelab_jax/knobs.py) is the only place a knob's default, range or sweepability is stated.

Everything that states one of them again must derive it from the table: these tests fail when a copy
appears (a ``.get("risk_pct", 0.01)`` fallback, a dataclass field with a literal default, a range sentence,
a hand-written list of sweepable keys) or when a derived copy disagrees (the Hydra schemas, the commented
conf/ files, ``PPOHyper``/``PPOSpec``, ``EnvParams``, the docs' tables).
"""

from __future__ import annotations

import dataclasses
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tradelab_jax import knobs
from tradelab_jax.errors import UserError

REPO = Path(__file__).resolve().parent.parent
PACKAGE = REPO / "tradelab_jax"
TABLE = PACKAGE / "knobs.py"
# Knob names that are also everyday parameter names (an indicator's window, a function's seed): a field
# or fallback with these names is not necessarily a copy of the knob, so the text scans skip them.
GENERIC = {"window", "seed"}
LITERAL = r"""(?:[-+]?(?:\d[\d_]*\.?\d*(?:[eE][-+]?\d+)?|\.\d+)|True|False|None|["'][^"']*["']|[\[(])"""


def _sources():
    for path in sorted(PACKAGE.rglob("*.py")):
        if path != TABLE:
            yield path, path.read_text(encoding="utf-8")


def _knob_names() -> list[str]:
    return sorted({k.name for k in knobs.ALL_KNOBS.values()} - GENERIC)


def test_no_default_is_written_outside_the_table():
    names = "|".join(_knob_names())
    fallback = re.compile(rf"""\.get\(\s*["']({names})["']\s*,\s*{LITERAL}""")
    field_default = re.compile(rf"^\s+({names})\s*:\s*[\w\[\]|., ]+=\s*{LITERAL}[^,]*$")
    found = []
    for path, text in _sources():
        for i, line in enumerate(text.splitlines(), 1):
            code = line.split("#", 1)[0]
            if fallback.search(code) or field_default.search(code):
                found.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert not found, "knob defaults written outside tradelab_jax/knobs.py:\n" + "\n".join(found)


def test_no_range_sentence_is_written_outside_the_table():
    # The sentences that state a specific range (generic ones such as "true or false" are not a rule).
    sentences = {k.valid for k in knobs.ALL_KNOBS.values() if re.search(r"[\d\[(]", k.valid)}
    found = [f"{path.relative_to(REPO)}: {s!r}" for path, text in _sources() for s in sorted(sentences)
             if s in text]
    assert not found, "knob ranges stated outside tradelab_jax/knobs.py:\n" + "\n".join(found)


def test_no_list_of_sweepable_knobs_is_written_outside_the_table():
    names = {k.name for k in knobs.ALL_KNOBS.values()}
    sweepable = {k.name for k in knobs.ALL_KNOBS.values() if k.sweepable} - GENERIC
    element = re.compile(r"""["'](\w+)["']\s*[,)\]]""")  # a quoted name as a list or tuple element
    found = []
    for path, text in _sources():
        for i, line in enumerate(text.splitlines(), 1):
            elements = set(element.findall(line.split("#", 1)[0]))
            # A line of knob names only (a form's field order mixes in other names) with 3+ sweepable ones.
            if elements <= names and len(elements & sweepable) >= 3:
                found.append(f"{path.relative_to(REPO)}:{i}: {line.strip()}")
    assert not found, "lists of sweepable knobs outside tradelab_jax/knobs.py:\n" + "\n".join(found)


def test_the_scans_catch_a_planted_copy():
    """The scans above can fail: a planted fallback, field default and range sentence are each found."""
    planted = PACKAGE / "_planted_copy_for_test.py"
    planted.write_text('X = cfg.get("risk_pct", 0.01)\n\n\nclass A:\n    lr: float = 3e-4\n\n\n'
                       'MSG = "a fraction in (0, 1]"\nKEYS = ("risk_pct", "maker_fee", "taker_fee")\n',
                       encoding="utf-8")
    try:
        for test in (test_no_default_is_written_outside_the_table,
                     test_no_range_sentence_is_written_outside_the_table,
                     test_no_list_of_sweepable_knobs_is_written_outside_the_table):
            with pytest.raises(AssertionError, match=r"_planted_copy_for_test\.py"):
                test()
    finally:
        planted.unlink()


def _yaml(path: Path) -> dict:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


@pytest.mark.parametrize(("conf", "group"),
                         [("conf/env/trading.yaml", "env"), ("conf/agent/ppo.yaml", "agent")])
def test_the_commented_conf_files_state_the_tables_defaults(conf, group):
    written = {k: v for k, v in _yaml(REPO / conf).items() if k not in ("defaults", "kind", "name")}
    table = {k.name: k.config_default() for k in knobs.ALL_KNOBS.values() if k.group == group}
    assert written == table


def test_the_hydra_schemas_and_the_composed_config_carry_the_tables_defaults():
    from hydra import compose, initialize_config_dir

    from tradelab_jax.training import compose as tl_compose
    from tradelab_jax.training.config import PPOConfig, SweepAgentConfig, SweepEnvConfig, TradingEnvConfig

    for schema, group in ((TradingEnvConfig, "env"), (PPOConfig, "agent")):
        defaults = {f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
                    for f in dataclasses.fields(schema) if f.name not in ("kind", "name")}
        assert defaults == {k.name: k.config_default() for k in knobs.ALL_KNOBS.values() if k.group == group}
    assert tuple(f.name for f in dataclasses.fields(SweepEnvConfig)) == knobs.SWEEPABLE_ENV
    assert tuple(f.name for f in dataclasses.fields(SweepAgentConfig)) == knobs.SWEEPABLE_AGENT
    tl_compose.register()
    with initialize_config_dir(config_dir=str(REPO / "conf"), version_base="1.3"):
        plain = tl_compose.to_plain(compose("config"))
    for key, knob in knobs.ALL_KNOBS.items():
        group, _, name = key.rpartition(".")
        assert (plain[group][name] if group else plain[name]) == knob.config_default(), key


def test_ppo_hyper_is_the_sweepable_agent_knobs_and_ppo_spec_the_static_ones():
    from tradelab_jax.agents.ppo import PPOHyper, PPOSpec

    hyper = {f.name: f.default for f in dataclasses.fields(PPOHyper)}
    assert tuple(hyper) == knobs.SWEEPABLE_AGENT
    assert hyper == {n: knobs.AGENT_KNOBS[n].default for n in knobs.SWEEPABLE_AGENT}
    spec = {f.name: f.default for f in dataclasses.fields(PPOSpec)}
    static = [n for n in knobs.STATIC_AGENT if n != "total_timesteps"]  # PPOSpec holds num_updates instead
    assert {n: spec[n] for n in static} == {n: knobs.AGENT_KNOBS[n].default for n in static}


def test_every_sweepable_env_knob_is_a_traced_env_params_leaf():
    from tradelab_jax.env import EnvParams

    leaves = {f.name for f in dataclasses.fields(EnvParams)}
    assert set(knobs.PARAM_KNOBS) <= leaves
    assert "window" not in leaves  # sets the observation shape: on the env object, never swept


@pytest.mark.parametrize("group", ["env", "agent"])
def test_the_docs_knob_tables_are_the_tables_output(group):
    text = (REPO / "docs" / "training.md").read_text(encoding="utf-8")
    begin, end = f"<!-- knobs:{group}:begin -->", f"<!-- knobs:{group}:end -->"
    assert begin in text and end in text, f"docs/training.md lacks the {group} knob table markers"
    written = text.split(begin, 1)[1].split(end, 1)[0].strip()
    assert written == knobs.markdown_table(group), (
        f"docs/training.md's {group} knob table differs from the table; paste "
        f"`python -m tradelab_jax.knobs` output between the markers")


def test_the_table_imports_no_jax():
    code = "import sys, tradelab_jax.knobs, tradelab_jax.training.config; print('jax' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


@pytest.mark.parametrize(("key", "value", "valid"), [
    ("env.risk_pct", 0.0, False), ("env.risk_pct", 1.0, True), ("env.risk_pct", 1.0000001, False),
    ("env.maker_fee", -0.0001, True), ("env.maker_fee", -1.0, False), ("env.taker_fee", -0.0001, False),
    ("env.stop_loss_bps", 0.0, True), ("env.stop_loss_bps", 1e4, False), ("env.order_type", "market", True),
    ("env.order_type", "stop", False), ("env.trailing_stop", "yes", False),
    ("env.episode_length", 1.5, False),
    ("env.position_buckets", [-1, 1], True), ("env.position_buckets", [1], False),
    ("env.position_buckets", [0.5, 0.5], False), ("env.position_buckets", [-20, 20], False),
    ("env.position_buckets", "[-1, 1]", False), ("agent.gamma", 1.0, True),
    ("agent.gamma", 1.01, False), ("agent.lr", float("nan"), False), ("agent.num_envs", 65_537, False),
    ("agent.num_envs", True, False),
    ("seed", -1, False), ("seed", 2**31 - 1, True), ("seed", 2**31, False),
])
def test_checks_accept_and_refuse_at_the_stated_bounds(key, value, valid):
    knob = knobs.ALL_KNOBS[key]
    if valid:
        knob.check(value)
    else:
        with pytest.raises(UserError, match=re.escape(f"invalid {key}=") + ".*" + re.escape(knob.valid)):
            knob.check(value)
