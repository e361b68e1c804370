"""Early stopping on a validation metric: Lightning's ``EarlyStopping``, which also records where the best
score was reached and why the run stopped, for ``summary.json``.

Off unless ``callbacks.early_stopping.patience`` is set. The check runs after each validation (every
``trainer.val_check_interval`` optimizer steps), so ``patience`` counts validations, as in Lightning and the
Hugging Face Trainer. Its state (the best score, the validations without improvement, the best step) is
saved in every checkpoint and restored on resume, so a run killed and resumed stops where it would have.
"""

from __future__ import annotations

from typing import Any

import lightning as L
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.trainer.states import TrainerFn

__all__ = ["EarlyStop"]


class EarlyStop(EarlyStopping):
    """``EarlyStopping`` checked after validation only, remembering the step of the best score."""

    def __init__(self, monitor: str, patience: int, min_delta: float, mode: str) -> None:
        super().__init__(
            monitor=monitor,
            patience=patience,
            min_delta=min_delta,
            mode=mode,
            check_on_train_epoch_end=False,
            strict=True,
        )
        self.improvement = min_delta  # as given (Lightning keeps it signed by mode)
        self.best_step: int | None = None
        self.stopped_step: int | None = None

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.state.fn != TrainerFn.FITTING or trainer.sanity_checking:
            return  # the final evaluation and the sanity check do not count
        super().on_validation_end(trainer, pl_module)
        if self.wait_count == 0:  # this validation set a new best
            self.best_step = trainer.global_step
        if trainer.should_stop and self.wait_count >= self.patience and self.stopped_step is None:
            self.stopped_step = trainer.global_step

    def report(self) -> dict[str, Any]:
        """For ``summary.json``: whether it stopped the run, at which step, and the best score and step."""
        best = self.best_score.item() if self.best_score is not None else None
        stopped = self.stopped_step is not None
        reason = None
        if stopped:
            reason = f"{self.monitor} did not improve by more than {self.improvement:g}"
            reason += f" for {self.patience} validations"
        return {
            "stopped": stopped,
            "stopped_step": self.stopped_step,
            "reason": reason,
            "monitor": self.monitor,
            "best_score": best,
            "best_step": self.best_step,
        }

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_step": self.best_step, "stopped_step": self.stopped_step}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.best_step = state.pop("best_step", None)
        self.stopped_step = state.pop("stopped_step", None)
        super().load_state_dict(state)
