"""Every setting that is a number is range-checked before any work, naming the key and the valid range:
each row goes through the command line's entry point (``cli.main``, in this process: the check runs before
Hydra starts, so nothing but the argument list differs from ``python -m lightning_llm``)."""

from __future__ import annotations

import inspect
from pathlib import Path

import lightning
import pytest
from omegaconf import OmegaConf

from lightning_llm.ranges import RANGES
from tests.reliability.test_bad_inputs import refused_before_hydra

CASES = {
    "trainer.accumulate_grad_batches=-2": "must be an integer >= 1",  # flipped the gradient's sign
    "trainer.accumulate_grad_batches=0": "must be an integer >= 1",
    "trainer.max_steps=-1": "must be an integer >= 1 (the LR schedule spans max_steps",
    "trainer.max_steps=0": "must be an integer >= 1",
    "trainer.max_epochs=0": "an integer >= 1, -1 (no limit",
    "trainer.val_check_interval=0": "an integer >= 1 or a float in (0, 1]",
    "trainer.val_check_interval=1.5": "an integer >= 1 or a float in (0, 1]",
    "trainer.limit_val_batches=-1": "an integer >= 0 or a float in [0, 1]",
    "trainer.log_every_n_steps=0": "an integer >= 1",
    "trainer.gradient_clip_val=-1": "a finite number >= 0",  # silently turned clipping off
    "trainer.gradient_clip_val=inf": "a finite number >= 0",
    "trainer.num_nodes=0": "an integer >= 1",
    "trainer.devices=0": "must be >= 1, -1 (every GPU), auto",
    "trainer.num_sanity_val_steps=-2": "an integer >= -1",
    "callbacks.checkpoint.save_top_k=-2": "an integer >= -1",
    "callbacks.samples.temperature=-1": "a finite number >= 0",
    "callbacks.throughput.peak_flops=0": "a finite number > 0, or null",
    "callbacks.nan_guard.max_skips=-1": "an integer >= 0",
    "seed=abc": "seed='abc': must be an integer from 0 to 4294967295",
    "seed=-5": "seed=-5: must be an integer from 0 to 4294967295",
    "seed=true": "must be an integer from 0",
    "optim.lr=inf": "optim.lr=inf: optim 'adamw' needs a finite number",
    "optim.lr=nan": "optim.lr=nan: optim 'adamw' needs a finite number",
    "optim.weight_decay=-inf": "needs a finite number",
}


@pytest.mark.parametrize(("override", "expected"), CASES.items(), ids=CASES)
def test_an_out_of_range_setting_is_one_line_before_any_work(override, expected, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    message = refused_before_hydra("debug=fast", override, f"hydra.run.dir={run_dir}")
    assert message.startswith(f"error: {override.split('=')[0]}"), message
    assert expected in message and len(message) < 300, message
    assert not run_dir.exists()


def test_every_checked_key_is_a_real_setting(make_cfg) -> None:
    """A renamed trainer or callback key would otherwise leave its range unchecked, silently."""
    cfg = make_cfg()
    ours = [key for key in RANGES if not key.startswith("trainer.")]
    assert [key for key in ours if OmegaConf.select(cfg, key, default="<absent>") == "<absent>"] == []
    trainer_args = inspect.signature(lightning.Trainer.__init__).parameters
    assert [key for key in RANGES if key.startswith("trainer.") and key[8:] not in trainer_args] == []
