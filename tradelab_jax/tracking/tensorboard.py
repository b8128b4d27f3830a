"""TensorBoard event files in ``<run dir>/tb/`` via tensorboardX (no TensorFlow)."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from tradelab_jax import tracking


def prepare(**_: Any) -> None:
    """Import tensorboardX (and its hparams summary) before the first record needs it."""
    import tensorboardX.summary  # noqa: F401


class TensorBoardLogger:
    def __init__(self, *, run_dir: Path, values: dict[str, Any], resume: bool, **_: Any):
        self.values, self.run_dir, self.resume = values, Path(run_dir), resume
        self.writer = None

    def _open(self, step: int) -> None:
        from tensorboardX import SummaryWriter

        from tradelab_jax import runs

        purge = None
        if self.resume:
            # A resume redoes the steps after its checkpoint: purge_step makes TensorBoard drop the events a
            # killed run logged past it. metrics.jsonl was cut back to the checkpoint before the first new
            # record (``step``) was appended, so the checkpoint's step is the last one before ``step``.
            purge = 1 + max([int(m.get("env_steps") or 0) for m in runs.read_metrics(self.run_dir)
                             if int(m.get("env_steps") or 0) < step] or [0])
        # tensorboardX names a file by the second and the host only: a resume started within the same second
        # as its cancelled run would truncate that run's file, so each writer gets a unique suffix.
        self.writer = SummaryWriter(str(self.run_dir / tracking.TB_DIR), purge_step=purge, flush_secs=30,
                                    filename_suffix=f".{os.getpid()}.{time.time_ns()}")

    def log_chunk(self, rec: dict[str, Any]) -> None:
        step = int(rec["env_steps"])
        if self.writer is None:
            self._open(step)
        for k, v in tracking.scalars(rec).items():
            self.writer.add_scalar(f"train/{k}", v, step)

    def log_final(self, summary: dict[str, Any], hparams: dict[str, Any], run_dir: Path) -> None:
        metrics = tracking.eval_scalars(summary)
        step = int(summary.get("run", {}).get("env_steps") or 0)
        if self.writer is None:
            self._open(step + 1)
        for k, v in metrics.items():
            self.writer.add_scalar(k, v, step)
        hp = {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in hparams.items()}
        from tensorboardX.summary import hparams as hp_summary

        exp, ssi, sei = hp_summary(hp, {k: v for k, v in metrics.items() if k.endswith("total_return")
                                        or k.endswith("mean_episode_return")})
        fw = self.writer._get_file_writer()
        for s in (exp, ssi, sei):
            fw.add_summary(s)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
