"""A run stopped by SIGTERM or Ctrl-C and resumed with ``ckpt_path=auto`` gives the same losses as one never
stopped (dropout on: the RNG states are restored too; accumulation on: the stop waits for the step to end),
and bf16-mixed trains close to fp32."""

from __future__ import annotations

import os
import signal

import lightning as L
import pytest

from lightning_llm.callbacks.preemption import INTERRUPTED_EXIT_CODE, PREEMPTED_EXIT_CODE
from lightning_llm.train import train
from tests.distributed.test_equivalence import train_losses

STEPS = 20
RESUME = [
    f"trainer.max_steps={STEPS}",
    "trainer.val_check_interval=14",  # validation (and its checkpoint) mid-run, not at the stop
    "trainer.log_every_n_steps=1",
    "trainer.accumulate_grad_batches=2",
    "model.dropout=0.1",
    "callbacks.samples.num_samples=0",
]


class SignalAt(L.Callback):
    """Sends this process a real signal as micro-batch ``batch`` starts (mid-step with accumulation)."""

    def __init__(self, batch: int, signum: int = signal.SIGTERM) -> None:
        self.batch, self.signum = batch, signum

    def on_train_batch_start(self, trainer: L.Trainer, pl_module, batch, batch_idx: int) -> None:
        if trainer.fit_loop.total_batch_idx == self.batch:
            os.kill(os.getpid(), self.signum)


@pytest.mark.parametrize(
    ("signum", "exit_code"),
    [(signal.SIGTERM, PREEMPTED_EXIT_CODE), (signal.SIGINT, INTERRUPTED_EXIT_CODE)],
    ids=["SIGTERM", "Ctrl-C"],
)
def test_a_stop_signal_then_auto_resume_matches_an_uninterrupted_run(make_cfg, tmp_path, signum, exit_code):
    whole, _ = train(make_cfg(*RESUME), run_dir=tmp_path / "whole")
    reference = train_losses(tmp_path / "whole")
    assert sorted(reference) == list(range(1, STEPS + 1))

    run_dir = tmp_path / "stopped"
    with pytest.raises(SystemExit) as stopped:
        # Micro-batch 20 is the first half of step 11: the run finishes step 11, checkpoints, exits.
        train(make_cfg(*RESUME), run_dir=run_dir, callbacks=[SignalAt(batch=20, signum=signum)])
    assert stopped.value.code == exit_code
    assert sorted(train_losses(run_dir)) == list(range(1, 12))

    resumed, _ = train(make_cfg(*RESUME, "ckpt_path=auto"), run_dir=run_dir)
    losses = train_losses(run_dir)
    assert sorted(losses) == list(range(1, STEPS + 1))
    assert [losses[s] for s in range(1, STEPS + 1)] == pytest.approx(
        [reference[s] for s in range(1, STEPS + 1)], rel=1e-6
    )
    assert resumed["val_loss"] == pytest.approx(whole["val_loss"], rel=1e-6)
    assert resumed["tokens_seen"] == whole["tokens_seen"]


def test_auto_resume_without_a_checkpoint_starts_fresh(make_cfg, tmp_path):
    summary, _ = train(make_cfg("ckpt_path=auto", "trainer.max_steps=3"), run_dir=tmp_path)
    assert summary["step"] == 3


def test_bf16_mixed_trains_close_to_fp32(make_cfg, tmp_path):
    common = ["trainer.max_steps=30", "trainer.log_every_n_steps=1", "model.dropout=0.0"]
    fp32, _ = train(make_cfg(*common), run_dir=tmp_path / "fp32")
    bf16, _ = train(make_cfg(*common, "trainer.precision=bf16-mixed"), run_dir=tmp_path / "bf16")
    fp32_losses, bf16_losses = train_losses(tmp_path / "fp32"), train_losses(tmp_path / "bf16")
    assert fp32_losses[30] < fp32_losses[1] - 0.5  # both really trained
    assert bf16_losses[30] < bf16_losses[1] - 0.5
    assert bf16_losses != fp32_losses  # bf16 really ran (rounded matmuls), not silently fp32
    for step in range(1, 31):
        assert bf16_losses[step] == pytest.approx(fp32_losses[step], rel=0.02)
    assert bf16["val_loss"] == pytest.approx(fp32["val_loss"], rel=0.02)


def test_auto_resume_takes_the_newest_of_checkpoints_and_requeue_checkpoints(tmp_path):
    import torch

    from lightning_llm.run_folder import remove_unfinished_checkpoints, resume_path

    (tmp_path / "checkpoints").mkdir()
    torch.save({"global_step": 5}, tmp_path / "checkpoints" / "last.ckpt")
    assert resume_path("auto", tmp_path, sharded_strategy=False) == str(
        tmp_path / "checkpoints" / "last.ckpt"
    )
    torch.save({"global_step": 7}, tmp_path / "hpc_ckpt_1.ckpt")  # SLURM requeue save, newer
    (tmp_path / "hpc_ckpt_2.ckpt.tmp-31337").write_bytes(b"half a checkpoint")  # a killed save
    assert resume_path("auto", tmp_path, sharded_strategy=False) == str(tmp_path / "hpc_ckpt_1.ckpt")
    (tmp_path / ".lock").write_text("pid 31337 on node7 since then\n")  # the launch that was killed
    remove_unfinished_checkpoints(tmp_path)
    assert sorted(p.name for p in tmp_path.glob("hpc_ckpt_*")) == ["hpc_ckpt_1.ckpt"]
