"""Preemption: on SIGTERM, finish the optimizer step, write ``last.ckpt``, and exit so the run can continue.

Schedulers (SLURM without requeue, Kubernetes, spot instances, ``kill``) announce the end with SIGTERM.
Lightning notices it between batches and stops with ``SIGTERMException``; this callback then writes a
checkpoint before the process goes, so ``ckpt_path=auto`` in the same run folder continues exactly where
training was, with the same losses as a run that was never stopped.
"""

from __future__ import annotations

from pathlib import Path

import lightning as L
from lightning.pytorch.utilities.exceptions import SIGTERMException

# Exit status of a preempted run: EX_TEMPFAIL, "try again" (torchrun restarts and job scripts can key on it).
PREEMPTED_EXIT_CODE = 75


class Preemption(L.Callback):
    def __init__(self, checkpoint_path: str | Path) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.preempted_at: int | None = None  # the optimizer step the checkpoint holds, once preempted
        self._deferred = False

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        # Lightning stops right after this batch if SIGTERM arrived. In the middle of an accumulated step the
        # gradients of its first micro-batches would be lost, so stopping waits for the step's last one.
        connector = trainer._signal_connector
        if connector.received_sigterm or self._deferred:
            mid_step = trainer.fit_loop._should_accumulate()
            self._deferred = mid_step
            connector.received_sigterm = not mid_step

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException):
            trainer.save_checkpoint(self.checkpoint_path)  # collective under FSDP: every rank is here
            self.preempted_at = trainer.global_step
