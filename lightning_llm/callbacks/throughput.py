"""Tokens/s, samples/s and MFU, timed per optimizer step, with warm-up and validation left out.

A step is one optimizer update: ``trainer.accumulate_grad_batches`` micro-batches, on every process.
Lightning calls ``on_train_batch_end`` once per micro-batch; a step has ended when ``trainer.global_step``
moved during the micro-batch. Each step's clock runs from the end of the previous step to the end of its
last micro-batch, so the first micro-batch's loading and host-to-device copy are charged: on an
asynchronous accelerator the host often waits for the previous step's kernels just there (a copy from
pageable memory), and a window that began at ``on_train_batch_start`` would time only kernel launches.
Where training pauses (validation, an epoch boundary, the start of fit), the clock stops and restarts at
the next micro-batch's start, which also leaves out the checkpoint saved after validation.

Why not Lightning's ``ThroughputMonitor``: it calls ``torch.cuda.synchronize()`` after every batch (a host
sync per micro-batch, which the GPU training step here avoids: bench/RESULTS.md), counts micro-batches rather
than optimizer steps, includes warm-up (compilation) in its windows and keeps no totals across a resume.
"""

from __future__ import annotations

from dataclasses import dataclass
from time import perf_counter
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_warn

from lightning_llm.flops import device_peak_flops, flops_per_token, meta_copy
from lightning_llm.module import batch_tokens, check_batch


@dataclass
class _Counts:
    """What some optimizer steps processed, over all processes, and the seconds they took."""

    tokens: int = 0  # input tokens (encoder and decoder inputs together, as batch_tokens counts)
    samples: int = 0
    flops: float = 0.0  # model FLOPs, from flops_per_token
    seconds: float = 0.0

    def __iadd__(self, other: _Counts) -> _Counts:
        self.tokens += other.tokens
        self.samples += other.samples
        self.flops += other.flops
        self.seconds += other.seconds
        return self


class Throughput(L.Callback):
    """Logs ``perf/tokens_per_sec``, ``perf/samples_per_sec`` and ``perf/mfu`` (all processes together)
    over the optimizer steps since the last logging step, and keeps steady-state totals that leave out
    each process's first ``warmup_steps`` optimizer steps (compilation, autotuning, allocator growth, again
    after a resume) and all validation time. ``summary()`` gives the steady-state numbers.

    MFU is achieved model FLOP/s over the peak of all devices (``peak_flops`` per device, or looked up
    with ``lightning_llm.flops.device_peak_flops``); it is reported only when that peak is known.
    """

    def __init__(self, warmup_steps: int = 10, peak_flops: float | None = None) -> None:
        """
        Args:
            warmup_steps: optimizer steps at the start of each fit left out of the steady-state numbers.
            peak_flops: dense peak FLOP/s of one device, overriding the table lookup (for a device the
                table lacks, or a CPU benchmark); None: look it up, and report no MFU if unknown.
        """
        self.warmup_steps = warmup_steps
        self.peak_flops = peak_flops
        self.total = _Counts()  # steady state, after warm-up; restored on resume
        self.flops_per_token: float | None = None  # at the first batch's sequence length
        self._window = _Counts()  # steps since the last logging step, warm-up included
        self._step = _Counts()  # micro-batches of the step in progress
        self._clock: float | None = None  # when the step in progress started; None: paused
        self._paused_at = 0.0
        self._global_step_before = 0
        self._steps_run = 0  # optimizer steps this fit, for the warm-up
        self._device_peak: float | None = None  # per device
        self._world_size = 1
        self._flops_tried = False
        self._model_copy: torch.nn.Module | None = None  # meta copy taken before sharding or compiling

    # ------------------------------------------------------------------ results

    @property
    def tokens_per_second(self) -> float:
        """Steady-state tokens/s over all processes; nan before any step after warm-up."""
        return self.total.tokens / self.total.seconds if self.total.seconds else float("nan")

    @property
    def samples_per_second(self) -> float:
        return self.total.samples / self.total.seconds if self.total.seconds else float("nan")

    @property
    def mfu(self) -> float | None:
        """Steady-state model FLOPs utilisation (0..1), None when the peak or the FLOPs are unknown."""
        return self._mfu(self.total)

    def summary(self) -> dict[str, float | None]:
        """The steady-state numbers for ``summary.json``; None where unknown (a run no longer than its
        warm-up has no steady state; a device without a known peak has no MFU)."""
        steady = self.total.seconds > 0
        return {
            "tokens_per_second": round(self.tokens_per_second, 1) if steady else None,
            "samples_per_second": round(self.samples_per_second, 3) if steady else None,
            "mfu": round(mfu, 4) if steady and (mfu := self.mfu) is not None else None,
            "flops_per_token": self.flops_per_token,
        }

    # ------------------------------------------------------------------ hooks

    def setup(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        # Runs before configure_model shards or compiles the network: a model with no formula of its own
        # is copied (to meta) while it is a plain module the FLOP counter can copy and run.
        model = getattr(pl_module, "model", None)
        if stage == "fit" and model is not None and not callable(getattr(model, "flops_per_token", None)):
            try:
                self._model_copy = meta_copy(model)
            except Exception:  # counted from the live model at the first batch instead, or warned about
                self._model_copy = None

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._steps_run, self._clock = 0, None
        self._window, self._step = _Counts(), _Counts()
        self._world_size = trainer.world_size
        self._device_peak = self.peak_flops or device_peak_flops(pl_module.device, trainer.precision)

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._clock = None  # the time between epochs (loader restart, epoch-end hooks) is not a step's

    def on_train_batch_start(
        self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any, batch_idx: int
    ) -> None:
        if not self._flops_tried:  # before the clock starts: counting FLOPs is not training time
            check_batch(batch)  # once: what this count and every other part read of a batch
            self._flops_tried = True
            self.flops_per_token = self._model_flops_per_token(pl_module, _seq_len(batch))
        if self._clock is None:
            self._clock = perf_counter()
        self._global_step_before = trainer.global_step

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = perf_counter()
        self._step += self._micro_batch(batch, trainer.world_size)
        if trainer.global_step == self._global_step_before or self._clock is None:
            return  # accumulating: the optimizer has not stepped yet
        step, self._step = self._step, _Counts()
        step.seconds, self._clock = now - self._clock, now  # the next step starts where this one ended
        self._steps_run += 1
        self._window += step
        if self._steps_run > self.warmup_steps:
            self.total += step
        every = trainer.log_every_n_steps
        if every and trainer.global_step % every == 0:
            self._log(pl_module, self._window)
            self._window = _Counts()

    def on_validation_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._paused_at = perf_counter()

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self._clock is None:
            return
        if self._step.samples:  # validation inside an accumulated step: take its time out of the step
            self._clock += perf_counter() - self._paused_at
        else:  # between steps: the next one starts at its first micro-batch
            self._clock = None

    # ------------------------------------------------------------------ checkpoints

    def state_dict(self) -> dict[str, Any]:
        return {
            "tokens": self.total.tokens,
            "samples": self.total.samples,
            "flops": self.total.flops,
            "seconds": self.total.seconds,
            "flops_per_token": self.flops_per_token,  # a launch that trains no batch reports the run's
        }

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.total = _Counts(
            tokens=state_dict["tokens"],
            samples=state_dict["samples"],
            flops=state_dict.get("flops", 0.0),  # checkpoints from before MFU was tracked
            seconds=state_dict["seconds"],
        )
        restored = state_dict.get("flops_per_token")  # absent from checkpoints before it was kept
        self.flops_per_token = float(restored) if isinstance(restored, int | float) else None

    # ------------------------------------------------------------------ helpers

    def _micro_batch(self, batch: dict[str, Any], world_size: int) -> _Counts:
        """One micro-batch on every process, from shapes only (no device sync). FLOPs count sequence
        positions (samples x seq_len): for an encoder-decoder batch a position is a source token with its
        target token, which is what its flops_per_token is per; batch_tokens would count both."""
        samples, seq_len = _batch_size(batch), _seq_len(batch)
        flops = (self.flops_per_token or 0.0) * samples * seq_len
        return _Counts(batch_tokens(batch) * world_size, samples * world_size, flops * world_size)

    def _mfu(self, counts: _Counts) -> float | None:
        if not (self._device_peak and self.flops_per_token and counts.seconds):
            return None
        return counts.flops / counts.seconds / (self._device_peak * self._world_size)

    def _log(self, pl_module: L.LightningModule, window: _Counts) -> None:
        if not window.seconds:
            return
        # CPU tensors: a Python float would be copied to the GPU by self.log, which blocks the host.
        # float64: Lightning keeps it, where it would round a float to float32.
        metrics = {
            "perf/tokens_per_sec": window.tokens / window.seconds,
            "perf/samples_per_sec": window.samples / window.seconds,
        }
        if (mfu := self._mfu(window)) is not None:
            metrics["perf/mfu"] = mfu
        for name, value in metrics.items():
            value = torch.tensor(value, dtype=torch.float64)
            pl_module.log(name, value, prog_bar=name == "perf/tokens_per_sec")

    def _model_flops_per_token(self, pl_module: L.LightningModule, seq_len: int) -> float | None:
        model = self._model_copy or getattr(pl_module, "model", None)
        try:
            if model is None:
                raise AttributeError(f"{type(pl_module).__name__} has no `.model`")
            return flops_per_token(model, seq_len)
        except Exception as error:  # a plugin the counter cannot run: no MFU, training goes on
            rank_zero_warn(f"Throughput: cannot count the model's FLOPs ({error}); MFU is not reported")
            return None
        finally:
            self._model_copy = None  # counted once; let it go


def _batch_size(batch: dict[str, Any]) -> int:
    key = "input_ids" if "input_ids" in batch else "decoder_input_ids"
    return batch[key].shape[0]


def _seq_len(batch: dict[str, Any]) -> int:
    """The sequence length FLOPs are computed at: the longer of the encoder and decoder inputs. The
    encoder-decoder's flops_per_token assumes sources and targets of equal length; when they differ, the
    longer one overstates FLOPs (and MFU) by at most their length ratio, instead of guessing the split."""
    return max(batch[key].shape[-1] for key in ("input_ids", "decoder_input_ids") if key in batch)
