"""Preemption: on SIGTERM (or Ctrl-C), finish the optimizer step, write ``last.ckpt``, and exit so the run can
continue.

Schedulers (SLURM without requeue, Kubernetes, spot instances, ``kill``) announce the end with SIGTERM.
Lightning notices it between batches and stops with ``SIGTERMException``; this callback then writes a
checkpoint before the process goes, so ``ckpt_path=auto`` in the same run folder continues exactly where
training was, with the same losses as a run that was never stopped.

With several processes every rank must stop after the same step, because the checkpoint save is collective.
Lightning's own SIGTERM handler broadcasts from inside the signal handler, which interleaves with whatever
collective the interrupted code was in (an FSDP all-gather, a checkpoint barrier) and deadlocks the ranks
(reproduced by tests/reliability/test_preemption_fsdp.py). Here the handler only forwards the signal to the
launched processes and notes it; at the end of each optimizer step the ranks agree (one all-reduce of the
flag) and all stop together. SLURM's requeue signal (``parallel.requeue_signal``, sent before the time limit)
takes the same path instead of Lightning's, which saves a checkpoint inside the signal handler (a collective
under DDP/FSDP): stop after the step, write ``last.ckpt``, and rank 0 requeues the job (``scontrol requeue``).
Ctrl-C (SIGINT) during training takes the same path, so an interactive run loses nothing either; a second
Ctrl-C aborts at once (Python's KeyboardInterrupt, which Lightning turns into a shutdown without a save). A
terminal's Ctrl-C reaches every process of the run, and ``kill -INT`` of the first reaches the others through
the agreement at the end of the step, so SIGINT is not forwarded. A process started with SIGINT ignored
(a non-interactive shell's ``cmd &``) keeps ignoring it, as every Python program does.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

import lightning as L
import torch
from lightning.pytorch.utilities.exceptions import SIGTERMException

from lightning_llm.errors import EXIT_INTERRUPTED
from lightning_llm.module import ends_optimizer_step

log = logging.getLogger(__name__)

# Exit status of a preempted run: EX_TEMPFAIL, "try again" (torchrun restarts and job scripts can key on it).
PREEMPTED_EXIT_CODE = 75
INTERRUPTED_EXIT_CODE = EXIT_INTERRUPTED  # as a shell reports a Ctrl-C


class Preemption(L.Callback):
    def __init__(self, checkpoint_path: str | Path) -> None:
        self.checkpoint_path = Path(checkpoint_path)
        self.preempted_at: int | None = None  # the optimizer step the checkpoint holds, once preempted
        self._requested = False  # SIGTERM seen by this process, not yet acted on
        self._requeue = False  # the requeue signal was among them: put the SLURM job back in the queue
        self.interrupted = False  # Ctrl-C (SIGINT) asked for the stop, not a scheduler

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Lightning registers its signal handlers after the setup hooks, reading this attribute then.
        connector = trainer._signal_connector
        connector._sigterm_notifier_fn = functools.partial(self._on_sigterm, trainer)
        connector._slurm_sigusr_handler_fn = self._on_requeue_signal

    def _on_sigterm(self, trainer: L.Trainer, signum: int, frame: FrameType | None) -> None:
        """The signal handler: no collectives here (the interrupted code may be inside one)."""
        if not self._requested and trainer.strategy.launcher is not None:
            trainer.strategy.launcher.kill(signum)  # the processes this one launched stop too
        self._requested = True

    @contextlib.contextmanager
    def stops_with_a_checkpoint(self, run_dir: Path) -> Iterator[None]:
        """Around ``trainer.fit``: Ctrl-C asks for a stop with a checkpoint (``_on_sigint``), and a run
        stopped so (or by SIGTERM) exits the process with ``INTERRUPTED_EXIT_CODE`` (or
        ``PREEMPTED_EXIT_CODE``), saying how to continue."""
        main_thread = threading.current_thread() is threading.main_thread()  # only there can handlers be set
        # A process started with Ctrl-C ignored (a non-interactive shell's background job) was asked not to
        # answer it: keep it ignored, as Python itself does, instead of stopping on a terminal's Ctrl-C.
        answers_ctrl_c = main_thread and signal.getsignal(signal.SIGINT) is not signal.SIG_IGN
        previous = signal.signal(signal.SIGINT, self._on_sigint) if answers_ctrl_c else None
        try:
            yield
        except SIGTERMException:
            log.warning(
                "%s after step %d; checkpoint %s. Continue with: python -m lightning_llm "
                "hydra.run.dir=%s ckpt_path=auto (it takes the run's own overrides from the checkpoint)",
                "interrupted (Ctrl-C)" if self.interrupted else "preempted (SIGTERM)",
                self.preempted_at or 0,
                self.checkpoint_path,
                run_dir,
            )
            raise SystemExit(INTERRUPTED_EXIT_CODE if self.interrupted else PREEMPTED_EXIT_CODE) from None
        finally:
            if previous is not None:
                signal.signal(signal.SIGINT, previous)

    def _on_sigint(self, signum: int, frame: FrameType | None) -> None:
        """First Ctrl-C: stop after this optimizer step with a checkpoint. Second: abort now."""
        if self._requested:
            signal.signal(signal.SIGINT, signal.default_int_handler)
            raise KeyboardInterrupt
        self._requested = self.interrupted = True
        log.warning(
            "Ctrl-C: stopping after this optimizer step and saving a checkpoint (Ctrl-C again aborts)"
        )

    def _on_requeue_signal(self, signum: int, frame: FrameType | None) -> None:
        """SLURM's warning before the time limit (every task gets it): stop as for SIGTERM, then requeue."""
        self._requested = self._requeue = True

    def on_train_batch_end(self, trainer: L.Trainer, *args: object) -> None:
        if not ends_optimizer_step(trainer):
            return  # mid-step: stopping now would lose the gradients of the step's first micro-batches
        requested = self._requested
        if trainer.world_size > 1:  # all ranks stop after the same step, or the collective save deadlocks
            flag = torch.tensor(float(requested), device=trainer.strategy.root_device)
            requested = bool(trainer.strategy.reduce(flag, reduce_op="sum") > 0)
        if requested:
            # Lightning raises SIGTERMException at the end of this batch, on every rank alike.
            trainer._signal_connector.received_sigterm = True

    def on_exception(
        self, trainer: L.Trainer, pl_module: L.LightningModule, exception: BaseException
    ) -> None:
        if isinstance(exception, SIGTERMException):
            # A full checkpoint, optimizer included (the run resumes from it); collective under FSDP.
            trainer.save_checkpoint(self.checkpoint_path, weights_only=False)
            self.preempted_at = trainer.global_step
            if self._requeue and trainer.is_global_zero:
                requeue_slurm_job()


def requeue_slurm_job() -> None:
    """``scontrol requeue`` this job (an array job's own task): it restarts with the same command, so into the
    same run folder when ``hydra.run.dir`` names the job, and ``ckpt_path=auto`` continues from last.ckpt."""
    array_job, task = os.environ.get("SLURM_ARRAY_JOB_ID"), os.environ.get("SLURM_ARRAY_TASK_ID")
    job = f"{array_job}_{task}" if array_job and task else os.environ.get("SLURM_JOB_ID", "")
    try:  # the checkpoint is written: a requeue that cannot happen is said, not a traceback over the stop
        if not job:
            raise OSError("no SLURM_JOB_ID in the environment")
        result = subprocess.run(["scontrol", "requeue", job], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        log.warning(
            "cannot requeue the SLURM job (%s): last.ckpt is written; resubmit the job with ckpt_path=auto",
            error,
        )
        return
    if result.returncode == 0:
        log.info("requeued SLURM job %s", job)
    else:
        log.warning("scontrol requeue %s failed (%d): %s", job, result.returncode, result.stderr.strip())
