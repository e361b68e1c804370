"""SLURM's requeue signal before the time limit (``#SBATCH --signal=USR1@120``), sent for real to a run that
sees a SLURM environment: the run stops after its optimizer step, writes ``last.ckpt`` (not Lightning's
in-handler ``hpc_ckpt``, a collective inside a signal handler under DDP/FSDP), exits 75 and requeues the job
through ``scontrol`` (a stand-in on PATH records the call); ``ckpt_path=auto`` then finishes the run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from lightning_llm.callbacks.preemption import PREEMPTED_EXIT_CODE
from lightning_llm.checkpoint import is_complete, stored_step
from lightning_llm.testing import TINY, run_cli
from tests.distributed.test_equivalence import train_losses

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
    env = {**os.environ, **SLURM_JOB, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    env["PATH"] = f"{bin_dir}{os.pathsep}{env['PATH']}"
    env.pop("LOCAL_RANK", None)
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    command = [
        sys.executable,
        "-m",
        "lightning_llm",
        *RUN,
        f"paths.cache_dir={cache}",
        f"hydra.run.dir={run_dir}",
    ]
    process = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    last = run_dir / "checkpoints" / "last.ckpt"
    deadline = time.monotonic() + 240
    while not is_complete(last) and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGUSR1)  # SLURM's warning: the time limit is near
    _, stderr = process.communicate(timeout=240)

    assert process.returncode == PREEMPTED_EXIT_CODE, stderr[-3000:]
    stopped_at = stored_step(last)
    assert 10 <= stopped_at < STEPS, "the signal must arrive mid-run for this test to mean anything"
    assert not list(run_dir.glob("hpc_ckpt_*")), "Lightning's in-handler save ran"
    assert calls.read_text().split() == ["requeue", "4242"]

    resumed = run_cli(*RUN, "ckpt_path=auto", run_dir=run_dir, cache_dir=cache)
    assert resumed["step"] == STEPS
    assert sorted(train_losses(run_dir)) == list(range(1, STEPS + 1))
