"""TensorBoard event files in ``<run dir>/tb/`` via tensorboardX (no TensorFlow)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tradelab_jax import tracking


class TensorBoardLogger:
    def __init__(self, *, run_dir: Path, values: dict[str, Any], resume: bool, start_step: int, **_: Any):
        from tensorboardX import SummaryWriter

        self.values = values
        # A resume rewrites the steps after its checkpoint: purge_step makes TensorBoard drop the old ones.
        self.writer = SummaryWriter(str(Path(run_dir) / tracking.TB_DIR),
                                    purge_step=start_step if resume else None, flush_secs=30)

    def log_chunk(self, rec: dict[str, Any]) -> None:
        step = int(rec["env_steps"])
        for k, v in tracking.scalars(rec).items():
            self.writer.add_scalar(f"train/{k}", v, step)

    def log_final(self, summary: dict[str, Any], hparams: dict[str, Any], run_dir: Path) -> None:
        metrics = tracking.eval_scalars(summary)
        step = int(summary.get("run", {}).get("env_steps") or 0)
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
        self.writer.close()
