"""What a run shows on the console while it trains: one progress bar over the run's optimizer steps, and
Lightning's model summary with the model's FLOPs."""

from __future__ import annotations

import logging
import sys
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import ModelSummary, ProgressBar
from tqdm.auto import tqdm

from lightning_llm.flops import flops_per_token

__all__ = ["ModelSummaryWithFlops", "StepProgressBar"]

log = logging.getLogger(__name__)

# progress-bar metric -> the short name the bar shows
_SHOWN = {"train/loss": "loss", "val/loss": "val_loss", "perf/tokens_per_sec": "tok/s"}


class StepProgressBar(ProgressBar):
    """One bar over the run's optimizer steps (resumed runs start where they left off), showing the train
    loss, the last val loss and tokens/s. Lightning's bars count each epoch's batches instead ("Epoch 6:
    36/69" in a 900-step run) and start a second bar for every validation."""

    def __init__(self) -> None:
        super().__init__()
        self._enabled = True
        self._bar: tqdm | None = None

    def disable(self) -> None:
        self._enabled = False

    def enable(self) -> None:
        self._enabled = True

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._enabled or not trainer.is_global_zero:
            return
        total = trainer.estimated_stepping_batches  # optimizer steps: max_steps, or the epochs' worth
        self._bar = tqdm(
            total=total if total != float("inf") else None,
            initial=trainer.global_step,
            desc="train",
            unit="step",
            dynamic_ncols=True,
            file=sys.stderr,
            smoothing=0.1,
            mininterval=0.1 if sys.stderr.isatty() else 30.0,  # a log file gets a line every 30 s, not 10/s
        )

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        if self._bar is not None and trainer.global_step > self._bar.n:
            self._bar.set_postfix(self._shown(trainer, pl_module), refresh=False)
            self._bar.update(trainer.global_step - self._bar.n)

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._bar is not None:
            self._bar.set_postfix(self._shown(trainer, pl_module))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._close()

    def on_exception(self, trainer: L.Trainer, pl_module: L.LightningModule, error: BaseException) -> None:
        self._close()

    def _shown(self, trainer: L.Trainer, pl_module: L.LightningModule) -> dict[str, str]:
        metrics = self.get_metrics(trainer, pl_module)
        shown = {}
        for key, name in _SHOWN.items():
            value = metrics.get(key)
            if value is not None:
                shown[name] = f"{float(value):,.0f}" if name == "tok/s" else f"{float(value):.4f}"
        return shown

    def _close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None


class ModelSummaryWithFlops(ModelSummary):
    """Lightning's model summary (``max_depth`` levels of modules), with the model's FLOPs where Lightning
    prints "Total FLOPs: 0" (it counts them only by running a user-provided ``example_input_array``): the
    forward pass of one sequence of ``seq_len`` tokens, from the model's formula (or counted on the meta
    device for a model without one), and a line with the training FLOPs per token."""

    def __init__(self, seq_len: int, max_depth: int = 1) -> None:
        super().__init__(max_depth=max_depth)
        self.seq_len = seq_len
        self._forward_flops = 0

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if not self._max_depth:
            return
        training = flops_per_token(pl_module.model, self.seq_len)  # forward + backward: 3 forwards' worth
        self._forward_flops = round(training * self.seq_len / 3)
        super().on_fit_start(trainer, pl_module)
        if trainer.is_global_zero:
            log.info(
                "model FLOPs: %.4g per token trained (forward + backward, at sequence length %d); the "
                "summary's total is one sequence's forward pass",
                training,
                self.seq_len,
            )

    def summarize(self, *args: Any, **kwargs: Any) -> None:  # type: ignore[override]
        kwargs["total_flops"] = self._forward_flops
        super().summarize(*args, **kwargs)
