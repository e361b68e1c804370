"""The console during a run: one progress bar over the optimizer steps with the losses and tokens/s, and a
model summary whose FLOPs are the model's own (Lightning's would say 0)."""

from __future__ import annotations

import logging

import pytest

from lightning_llm.train import train

pytestmark = pytest.mark.slow  # a training run


def test_the_bar_counts_optimizer_steps_and_the_summary_states_the_flops(make_cfg, tmp_path, capsys, caplog):
    cfg = make_cfg(
        "trainer.enable_progress_bar=true",
        "trainer.enable_model_summary=true",
        "trainer.max_steps=6",
        "trainer.accumulate_grad_batches=2",  # 12 batches: a bar over batches would count 12
        "trainer.val_check_interval=3",
    )
    with caplog.at_level(logging.INFO, logger="lightning_llm.callbacks.console"):
        summary, _ = train(cfg, run_dir=tmp_path)
    shown = capsys.readouterr().err
    assert "6/6" in shown and "/12" not in shown
    assert "loss=" in shown and "val_loss=" in shown
    flops = [r.getMessage() for r in caplog.records if r.getMessage().startswith("model FLOPs:")]
    assert flops == [
        f"model FLOPs: {summary['flops_per_token']:.4g} per token trained (forward + backward, at sequence "
        "length 32); the summary's total is one sequence's forward pass"
    ]
