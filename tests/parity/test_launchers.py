"""The cluster launcher configs compose, and the SLURM one renders the sbatch script it means to.

The local launcher runs real jobs in tests/parity/test_runs.py; SLURM itself is not available here, so
this checks what can be checked without a cluster: Hydra composes `hydra/launcher=slurm`, submitit accepts
every parameter, and the sbatch header asks for what the config says.
"""

from __future__ import annotations

import os

import submitit  # from hydra-submitit-launcher, a dependency of the cluster launchers
from omegaconf import OmegaConf

from tradelab_jax import paths


def _launcher(*overrides: str) -> dict:
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    from tradelab_jax.training import compose as tl_compose

    tl_compose.register()  # the trainer's config schemas and run-directory resolvers
    GlobalHydra.instance().clear()
    try:
        with initialize_config_dir(config_dir=str(paths.conf_dir()), version_base="1.3"):
            cfg = compose("config", overrides=list(overrides), return_hydra_config=True)
            return OmegaConf.to_container(cfg.hydra.launcher, resolve=False)
    finally:
        GlobalHydra.instance().clear()


def test_local_launcher_is_submitit_local_one_task_per_job():
    launcher = _launcher("hydra/launcher=local")
    assert launcher["_target_"].endswith("submitit_launcher.LocalLauncher")
    assert launcher["tasks_per_node"] == 1 and launcher["nodes"] == 1
    assert launcher["submitit_folder"] == "${hydra.sweep.dir}/.submitit/%j"


def test_slurm_launcher_renders_an_sbatch_script(tmp_path, monkeypatch):
    launcher = _launcher("hydra/launcher=slurm", "hydra.launcher.partition=gpu", "hydra.launcher.account=lab",
                         "hydra.launcher.timeout_min=30")
    assert launcher["_target_"].endswith("submitit_launcher.SlurmLauncher")
    assert launcher["gpus_per_node"] == 1 and launcher["tasks_per_node"] == 1
    # submitit refuses to build a SLURM executor without `srun` on PATH: give it a stand-in.
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "srun").write_text("#!/bin/sh\nexit 0\n")
    (fake / "srun").chmod(0o755)
    monkeypatch.setenv("PATH", f"{fake}{os.pathsep}{os.environ['PATH']}")
    # The parameter mapping of hydra_submitit_launcher's BaseSubmititLauncher.launch.
    from hydra_plugins.hydra_submitit_launcher.config import BaseQueueConf

    base = set(OmegaConf.structured(BaseQueueConf).keys())
    executor = submitit.AutoExecutor(folder=tmp_path / "sub", cluster="slurm",
                                     slurm_max_num_timeout=launcher["max_num_timeout"])
    params = {k if k in base else f"slurm_{k}": v for k, v in launcher.items()
              if k not in ("submitit_folder", "max_num_timeout", "_target_")}
    params["name"] = "tradelab_train"
    executor.update_parameters(**params)  # raises on any parameter submitit does not know
    script = executor._executor._make_submission_file_text("python -m tradelab_jax.train", "uid")
    for line in ("--partition=gpu", "--account=lab", "--gpus-per-node=1", "--ntasks-per-node=1",
                 "--time=30", "--cpus-per-task=8", "--mem=64GB"):
        assert f"#SBATCH {line}\n" in script, line
    assert "export PYTHONUNBUFFERED=1" in script
