"""W&B runs in ``<run dir>/wandb/``: offline unless the user set ``WANDB_MODE`` (e.g. ``online``, with
``WANDB_PROJECT`` and ``WANDB_API_KEY`` in the environment; the key is read by wandb itself and never
written here). One run per point (``reinit="create_new"``, so a packed sweep's points in one process keep
their own runs); a packed sweep's points form one W&B group named after the sweep directory. The run id is
recorded in ``tracking.json`` so a resume continues the same run (``resume="allow"``)."""

from __future__ import annotations

import os
import uuid
from pathlib import Path
from typing import Any

from tradelab_jax import tracking

PROJECT = "tradelab"


def prepare(**_: Any) -> None:
    """Import wandb and start its service process (shared by the process's runs); no run, no file."""
    import wandb

    wandb.setup()


class WandbLogger:
    def __init__(self, *, config: dict[str, Any], run_dir: Path, values: dict[str, Any],
                 sweep_dir: Path | None, resume: bool, **_: Any):
        import wandb

        self.run_dir = Path(run_dir)
        known = tracking.read_tracking(self.run_dir)
        run_id = known.get("wandb_id") if resume else None
        run_id = run_id or uuid.uuid4().hex[:8]
        mode = os.environ.get("WANDB_MODE") or "offline"
        params = {k: v for k, v in tracking.flat(config).items() if v is not None}
        params.update({f"sweep.{k}": v for k, v in values.items()})
        self.run = wandb.init(mode=mode, dir=str(self.run_dir), project=os.environ.get("WANDB_PROJECT")
                              or PROJECT, group=Path(sweep_dir).name if sweep_dir is not None else None,
                              name=self.run_dir.name, id=run_id, resume="allow", config=params,
                              reinit="create_new", settings=wandb.Settings(silent=True, console="off"))
        url = getattr(self.run, "url", None) if mode == "online" else None
        tracking.write_tracking(self.run_dir, wandb_id=run_id, wandb_mode=mode,
                                **({"wandb_url": url} if url else {}))

    def log_chunk(self, rec: dict[str, Any]) -> None:
        self.run.log({f"train/{k}": v for k, v in tracking.scalars(rec).items()}, step=int(rec["env_steps"]))

    def log_final(self, summary: dict[str, Any], hparams: dict[str, Any], run_dir: Path) -> None:
        for k, v in tracking.eval_scalars(summary).items():
            self.run.summary[k] = v

    def close(self) -> None:
        self.run.finish()
