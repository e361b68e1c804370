"""Early stopping: off by default; a run whose validation stops improving stops after ``patience``
validations with the reason and the best step in summary.json; a run resumed after a crash keeps its
patience counter and stops where the uninterrupted run did."""

from __future__ import annotations

import lightning as L
import pytest

from lightning_llm.config import ConfigError
from lightning_llm.train import train

pytestmark = pytest.mark.slow  # training runs

# min_delta so large that no validation after the first counts as an improvement: the counter then grows
# by one per validation (every 2 steps), deterministically, and patience 3 stops the run at step 8.
STOPPING = [
    "callbacks.early_stopping.patience=3",
    "callbacks.early_stopping.min_delta=100",
    "trainer.val_check_interval=2",
    "trainer.max_steps=40",
]


class Crash(L.Callback):
    """Dies after ``step`` optimizer steps, as a killed process would: only its checkpoints remain."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if trainer.global_step == self.step:
            raise RuntimeError("killed")


def test_a_run_that_stops_improving_stops_with_its_reason_and_best_step(make_cfg, tmp_path):
    summary, _ = train(make_cfg(*STOPPING), run_dir=tmp_path)
    assert summary["step"] == 8 < 40
    report = summary["early_stopping"]
    assert report["stopped"] and report["stopped_step"] == 8 and report["best_step"] == 2
    assert report["reason"] == "val/loss did not improve by more than 100 for 3 validations"
    assert report["best_score"] == pytest.approx(summary["val_loss"], abs=5)  # a loss, not a sentinel


def test_after_a_crash_the_resumed_run_keeps_its_patience(make_cfg, tmp_path):
    reference, _ = train(make_cfg(*STOPPING), run_dir=tmp_path / "reference")
    with pytest.raises(RuntimeError, match="killed"):
        train(make_cfg(*STOPPING), run_dir=tmp_path / "run", callbacks=[Crash(step=5)])  # checkpoint at 4
    resumed, _ = train(make_cfg(*STOPPING, "ckpt_path=auto"), run_dir=tmp_path / "run")
    # Counter lost, it would restart at step 6 and stop at 12; kept, it stops at 8 like the reference.
    assert resumed["step"] == 8 and resumed["early_stopping"] == reference["early_stopping"]


def test_off_by_default_and_refused_without_validation(make_cfg, tmp_path):
    summary, _ = train(make_cfg("trainer.max_steps=4"), run_dir=tmp_path / "plain")
    assert summary["step"] == 4 and "early_stopping" not in summary
    with pytest.raises(ConfigError, match="callbacks.early_stopping.patience needs validation"):
        train(make_cfg(*STOPPING, "data.val_fraction=0"), run_dir=tmp_path / "off")
    with pytest.raises(ConfigError, match=r"callbacks.early_stopping.mode='best': must be min or max"):
        train(make_cfg(*STOPPING, "callbacks.early_stopping.mode=best"), run_dir=tmp_path / "mode")
