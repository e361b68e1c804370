"""NaN guard: a non-finite loss or gradient is caught on the optimizer step it happens, before it reaches the
weights, so no checkpoint ever holds NaN weights.

The check runs once per optimizer step in ``on_before_optimizer_step``, when the step's gradients are complete
(accumulated, and averaged over processes) and the optimizer has not yet touched the weights. A NaN or inf
loss makes every gradient it flows into non-finite, so the gradients are the thing to check: they are what the
update would apply, and they also catch a finite loss whose backward overflowed. The flag is computed on the
device; reading it is the step's one host sync (with several processes, after one all-reduce of the flag:
under FSDP each process holds only a shard of the gradients, and all must take the same branch).

A bad step's gradients are dropped (``p.grad = None``): torch optimizers pass over parameters without a
gradient, so Adam's moments and step count stay as they were, unlike zeroed gradients, which would still decay
the moments. The LR schedule and ``global_step`` still advance: a skipped step counts as a step.

- ``stop``: raise ``NonFiniteLossError`` naming the step and the last good checkpoint. Lightning saves nothing
  on an exception (``ModelCheckpoint(save_on_exception=False)``; ``Preemption`` saves on SIGTERM only),
  and the weights in memory are still the last good ones in any case.
- ``skip``: go on without the step, log ``train/skipped_steps``, and stop as above once more than
  ``max_skips`` steps were skipped.

Under ``16-mixed`` the GradScaler owns non-finite gradients (overflow of the loss scale, routine) and skips
those steps itself; the guard stands aside there.

**Deferred check (``defer``, on by default on a GPU with a fused optimizer).** Reading the flag every step is
a host sync: the GPU idles while the host runs the step's end (hooks, the next batch, FSDP's work around the
optimizer) instead of queueing it behind kernels still running. Deferred, the flag goes to the fused AdamW as
its ``found_inf`` input, so the kernel itself skips a bad update on the device (weights, moments and step
count unchanged, as under a GradScaler), and the host reads the flag one step later (at the next step's
check, before validation, before any checkpoint is written, and at the end of training), when it is long
computed. ``stop`` then raises a step late with the same guarantee: the bad update never happened and
nothing was saved after it; ``skip`` counts the step a step late.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import lightning as L
import torch

from lightning_llm.checkpoint import latest_checkpoint
from lightning_llm.distributed.parallelize import local_part


class NonFiniteLossError(ValueError):
    """Training produced a NaN/inf loss or gradient. A ValueError: its cause is nearly always a value in the
    config (learning rate, warmup, precision) or the data, and ``train.run`` turns a ValueError into one
    ``error:`` line (exit status 2) instead of a traceback."""


class NanGuard(L.Callback):
    def __init__(
        self,
        action: Literal["stop", "skip"] = "stop",
        max_skips: int = 10,
        checkpoint_dir: str | Path | None = None,
        defer: bool | None = None,
    ) -> None:
        """
        Args:
            action: ``stop`` on the first non-finite step, or ``skip`` such steps (up to ``max_skips``).
            max_skips: with ``skip``, stop once more than this many steps were skipped in this run.
            checkpoint_dir: where the run's checkpoints are, to name the last good one; default: the
                ModelCheckpoint's folder.
            defer: read each step's flag a step later and let the fused optimizer skip a bad update on the
                device (no host sync per step); None: when training on a GPU with an optimizer that takes
                ``found_inf`` (fused Adam/AdamW). Where the optimizer cannot skip on its own it is never
                deferred.
        """
        if action not in ("stop", "skip"):
            raise ValueError(f"NanGuard action={action!r}: choose stop or skip")
        if defer not in (None, True, False):
            raise ValueError(f"callbacks.nan_guard.defer={defer!r}: choose true, false or null (on a GPU)")
        self.action = action
        self.max_skips = max_skips
        self.checkpoint_dir = Path(checkpoint_dir) if checkpoint_dir is not None else None
        self.defer = defer
        self.skipped = 0  # steps skipped in this run (not restored on resume: a fresh budget per attempt)
        self._pending: tuple[int, torch.Tensor] | None = None  # deferred: (optimizer step, its flag)

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: torch.optim.Optimizer
    ) -> None:
        if getattr(trainer.precision_plugin, "scaler", None) is not None:
            return  # 16-mixed: inf gradients are loss-scale overflow; the GradScaler skips those steps itself
        self._check_pending(trainer)
        step = trainer.global_step + 1  # the optimizer step being taken, 1-based as in the logs
        params = [p for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        bad, total_norm = _nonfinite(trainer, [p.grad for p in params])
        if total_norm is not None and callable(share := getattr(pl_module, "share_grad_norm", None)):
            share(total_norm)  # the module clips with it instead of measuring the gradients again
        if self._defers(trainer, optimizer):
            optimizer.found_inf = bad  # the fused kernel skips the update (and its step count) when it is 1
            self._pending = (step, bad)
        elif bool(bad):  # the step's one host sync
            for p in params:  # the optimizer now passes over every parameter: the weights stay as they were
                p.grad = None
            self._bad_step(trainer, step)
        if self.action == "skip":  # a curve from the first step on (a host float); deferred: a step late
            pl_module.log("train/skipped_steps", float(self.skipped))

    # Every other place a deferred flag must be read before going on: nothing is validated, saved or
    # reported as finished on top of an unchecked step.
    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_pending(trainer)

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._check_pending(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._check_pending(trainer)

    def _defers(self, trainer: L.Trainer, optimizer: torch.optim.Optimizer) -> bool:
        # Optimizers that take found_inf say so with the attribute GradScaler reads (fused Adam, AdamW, SGD).
        if not getattr(optimizer, "_step_supports_amp_scaling", False):
            return False
        if self.defer is not None:
            return self.defer
        return trainer.strategy.root_device.type == "cuda"

    def _check_pending(self, trainer: L.Trainer) -> None:
        """Read the deferred flag of the last step, if any."""
        if self._pending is None:
            return
        step, bad = self._pending
        self._pending = None
        if bool(bad):  # computed a step ago: no wait
            self._bad_step(trainer, step)  # its update was already skipped on the device

    def _bad_step(self, trainer: L.Trainer, step: int) -> None:
        if self.action == "skip":
            self.skipped += 1
            if self.skipped <= self.max_skips:
                return
        raise NonFiniteLossError(self._message(trainer, step))

    def _message(self, trainer: L.Trainer, step: int) -> str:
        folder = self.checkpoint_dir or _checkpoint_dir(trainer)
        last = latest_checkpoint(folder) if folder is not None and folder.is_dir() else None
        why = f"non-finite loss or gradients at optimizer step {step}"
        if self.action == "skip":
            why += f" ({self.skipped} steps skipped, more than max_skips={self.max_skips})"
        resume = f"last good checkpoint: {last}" if last else "last good checkpoint: none yet"
        return f"{why}; stopped before the update, nothing saved after it; {resume}"


def _nonfinite(trainer: L.Trainer, grads: list[torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor | None]:
    """(1.0 if any gradient on any process is non-finite, else 0.0: a 0-d float32 tensor on the gradients'
    device; and, in a single process, the gradients' total 2-norm, which is clipping's too)."""
    if not grads:
        return torch.zeros((), device=trainer.strategy.root_device), None
    if trainer.world_size == 1:
        total_norm = torch.nn.utils.get_total_norm(grads)  # non-finite iff an element is
        return total_norm.isfinite().logical_not().float(), total_norm
    local = [local_part(g) for g in grads]  # FSDP: this rank's shard
    norms = torch.stack(torch._foreach_norm(local))  # one fused pass; a norm is non-finite iff an element is
    bad = norms.isfinite().all().logical_not().float()
    # shards differ; every process must take the same branch
    return trainer.strategy.reduce(bad, reduce_op="sum").clamp(max=1.0), None


def _checkpoint_dir(trainer: L.Trainer) -> Path | None:
    callback = trainer.checkpoint_callback
    dirpath = getattr(callback, "dirpath", None)
    return Path(dirpath) if dirpath else None
