"""Whether a launch writes a single run directory or a packed one under ``multirun/`` is the run plan's rule
(``plan.point_axes``: folds and ``sweep.*`` axes), applied by the Hydra resolver of ``hydra.run.dir``."""

from __future__ import annotations

import pytest
from hydra import compose, initialize_config_dir

from tradelab_jax import paths
from tradelab_jax.training import compose as tl_compose
from tradelab_jax.training.plan import plan_run, point_axes


@pytest.mark.parametrize("overrides, packed", [
    ([], False),
    (["sweep.seed=[0,1]"], True),
    (["sweep.env.risk_pct=[0.005,0.01]"], True),
    (["cv=walk_forward"], True),
    (["cv=purged_kfold", "sweep.seed=[0,1]"], True),
])
def test_the_run_directory_is_packed_exactly_when_the_plan_has_axes(overrides, packed, tmp_path):
    tl_compose.register()
    with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
        cfg = compose("config", overrides=[*overrides, f"run.outputs={tmp_path}"])
    plain = tl_compose.to_plain(cfg)
    where = tl_compose._run_dir(str(tmp_path), "t", None, None, cfg.sweep, cfg.cv)
    assert ("multirun" in where.split("/")) is packed
    assert bool(point_axes(plain)) is packed
    assert plan_run(plain, tmp_path / "x").packed is packed
