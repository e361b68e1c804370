"""SLURM's requeue signal before the time limit (``#SBATCH --signal=USR1@120``), sent for real to a run that
sees a SLURM environment: the run stops after its optimizer step, writes ``last.ckpt`` (not Lightning's
in-handler ``hpc_ckpt``, a collective inside a signal handler under DDP/FSDP), exits 75 and requeues the job
through ``scontrol`` (a stand-in on PATH records the call); ``ckpt_path=auto`` then finishes the run."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from lightning_llm.callbacks.preemption import PREEMPTED_EXIT_CODE
from lightning_llm.checkpoint import stored_step
from lightning_llm.testing import TINY, run_cli
from tests.distributed.test_equivalence import train_losses
from tests.reliability.test_preemption_fsdp import signal_mid_run

pytestmark = pytest.mark.slow  # subprocesses or training runs: the full tier (CI)

STEPS = 60
RUN = [
    *TINY,
    f"trainer.max_steps={STEPS}",
    "trainer.val_check_interval=10",
    "trainer.limit_val_batches=1",
    "trainer.log_every_n_steps=1",
    "callbacks.samples.num_samples=0",
]
SLURM_JOB = {
    "SLURM_JOB_ID": "4242",
    "SLURM_JOB_NAME": "train",
    "SLURM_NTASKS": "1",
    "SLURM_NTASKS_PER_NODE": "1",
    "SLURM_NNODES": "1",
    "SLURM_PROCID": "0",
    "SLURM_LOCALID": "0",
    "SLURM_NODEID": "0",
}


def test_requeue_signal_stops_saves_and_requeues(tmp_path: Path) -> None:
    bin_dir, calls = tmp_path / "bin", tmp_path / "scontrol_calls"
    bin_dir.mkdir()
    (bin_dir / "scontrol").write_text(f'#!/bin/sh\necho "$@" >> {calls}\n')
    (bin_dir / "scontrol").chmod(0o755)
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    path = f"{bin_dir}{os.pathsep}{os.environ['PATH']}"
    returncode, stderr = signal_mid_run(RUN, run_dir, cache, signal.SIGUSR1, **SLURM_JOB, PATH=path)

    assert returncode == PREEMPTED_EXIT_CODE, stderr[-3000:]
    stopped_at = stored_step(run_dir / "checkpoints" / "last.ckpt")
    assert 10 <= stopped_at < STEPS, "the signal must arrive mid-run for this test to mean anything"
    assert not list(run_dir.glob("hpc_ckpt_*")), "Lightning's in-handler save ran"
    assert calls.read_text().split() == ["requeue", "4242"]

    resumed = run_cli(*RUN, "ckpt_path=auto", run_dir=run_dir, cache_dir=cache)
    assert resumed["step"] == STEPS
    assert sorted(train_losses(run_dir)) == list(range(1, STEPS + 1))
