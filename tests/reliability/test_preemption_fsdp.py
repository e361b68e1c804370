"""Preemption of a 2-process FSDP run: a real SIGTERM to the launching process (as SLURM or ``kill`` sends it)
makes every rank stop at the same step and write one sharded ``last.ckpt``; the run exits 75 and
``ckpt_path=auto`` in the same folder finishes it with the losses of a run that was never stopped."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from lightning_llm.callbacks.preemption import PREEMPTED_EXIT_CODE
from lightning_llm.checkpoint import is_complete, stored_step
from lightning_llm.testing import TINY, cli_command, cli_env, run_cli
from tests.distributed.test_equivalence import RTOL, train_losses

pytestmark = pytest.mark.slow  # subprocesses or training runs: the full tier (CI)

STEPS = 60
FSDP = [
    *TINY,
    "model.dropout=0.0",
    f"trainer.max_steps={STEPS}",
    "trainer.val_check_interval=10",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks.samples.num_samples=0",
    "trainer.strategy=fsdp",
    "trainer.devices=2",
    "data.batch_size=4",
]


def signal_mid_run(
    overrides: list[str], run_dir: Path, cache: Path, signum: int, **env: str
) -> tuple[int, str]:
    """Run the CLI, send it ``signum`` once its first checkpoint is complete (training is under way), and
    return its exit status and stderr. A run that does not exit after the signal fails the test."""
    command = cli_command(*overrides, run_dir=run_dir, cache_dir=cache)
    process = subprocess.Popen(
        command, env=cli_env(**env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    first = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not is_complete(first) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signum)
    try:
        _, stderr = process.communicate(timeout=240)
    except subprocess.TimeoutExpired:
        process.kill()
        pytest.fail(f"the run did not exit after signal {signum} (ranks stuck in a collective?)")
    return process.returncode, stderr


def test_sigterm_stops_every_rank_and_auto_resume_matches(tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    run_cli(*FSDP, run_dir=tmp_path / "whole", cache_dir=cache)
    reference = train_losses(tmp_path / "whole")
    assert sorted(reference) == list(range(1, STEPS + 1))

    run_dir = tmp_path / "stopped"
    returncode, stderr = signal_mid_run(FSDP, run_dir, cache, signal.SIGTERM)
    assert returncode == PREEMPTED_EXIT_CODE, stderr[-3000:]
    stopped_at = stored_step(run_dir / "checkpoints" / "last.ckpt")
    assert 10 <= stopped_at < STEPS, "the signal must arrive mid-run for this test to mean anything"
    assert sorted(train_losses(run_dir)) == list(range(1, stopped_at + 1))

    resumed = run_cli(*FSDP, "ckpt_path=auto", run_dir=run_dir, cache_dir=cache)
    losses = train_losses(run_dir)
    assert sorted(losses) == list(range(1, STEPS + 1))
    for step in range(1, STEPS + 1):
        assert losses[step] == pytest.approx(reference[step], rel=RTOL), step
    assert resumed["step"] == STEPS
