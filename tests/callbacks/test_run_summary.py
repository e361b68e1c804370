"""RunSummary carries the fit time and the last training loss through checkpoints: a resumed run's summary
counts every launch, and one resumed after its last step keeps the loss it trained to."""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch

from lightning_llm.callbacks.run_summary import RunSummary


def trainer_with(loss: float | None) -> SimpleNamespace:
    return SimpleNamespace(callback_metrics={} if loss is None else {"train/loss": torch.tensor(loss)})


def test_a_resumed_summary_keeps_the_loss_and_adds_the_fit_time():
    first = RunSummary()
    first.on_fit_start(trainer_with(None), None)
    checkpoint: dict = {}
    first.on_save_checkpoint(trainer_with(2.5), None, checkpoint)
    assert checkpoint["run_summary"]["train_loss"] == 2.5 and checkpoint["run_summary"]["wall_seconds"] >= 0

    checkpoint["run_summary"]["wall_seconds"] = 100.0  # the first launch's fit time
    resumed = RunSummary()
    resumed.on_load_checkpoint(trainer_with(None), None, checkpoint)
    resumed.on_fit_start(trainer_with(None), None)
    resumed.on_fit_end(trainer_with(None), None)  # nothing left to train: no loss logged this launch
    assert resumed.train_loss == 2.5 and 100.0 <= resumed.wall_seconds < 110.0


def test_a_damaged_stored_summary_is_ignored():
    resumed = RunSummary()
    resumed.on_load_checkpoint(None, None, {"run_summary": {"wall_seconds": "soon", "train_loss": None}})
    resumed.on_fit_start(None, None)
    resumed.on_fit_end(trainer_with(None), None)
    assert math.isnan(resumed.train_loss) and resumed.wall_seconds < 10.0
