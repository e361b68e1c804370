"""Tokens and samples per second, measured between training batches with validation time left out."""

from __future__ import annotations

import time
from typing import Any

import lightning as L

from lightning_llm.module import batch_tokens


class Throughput(L.Callback):
    """Logs ``perf/tokens_per_sec`` and ``perf/samples_per_sec`` (all processes together) at every logging
    step, and keeps the steady-state rate over the whole run after ``warmup_steps`` optimizer steps."""

    def __init__(self, warmup_steps: int = 10) -> None:
        self.warmup_steps = warmup_steps
        self.tokens = self.samples = 0  # counted after warm-up
        self.seconds = 0.0
        self._window_tokens = self._window_samples = 0
        self._window_seconds = 0.0
        self._last: float | None = None

    @property
    def tokens_per_second(self) -> float:
        return self.tokens / self.seconds if self.seconds else float("nan")

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        if self._last is None:
            self._last = time.perf_counter()

    def on_train_batch_end(
        self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any, batch_idx: int
    ) -> None:
        now = time.perf_counter()
        elapsed, self._last = now - (self._last or now), now
        tokens = batch_tokens(batch) * trainer.world_size
        samples = batch["input_ids"].shape[0] * trainer.world_size
        if trainer.global_step < self.warmup_steps:
            return
        self.tokens, self.samples, self.seconds = (
            self.tokens + tokens,
            self.samples + samples,
            self.seconds + elapsed,
        )
        self._window_tokens += tokens
        self._window_samples += samples
        self._window_seconds += elapsed
        if batch_idx % trainer.log_every_n_steps == 0 and self._window_seconds > 0:
            pl_module.log("perf/tokens_per_sec", self._window_tokens / self._window_seconds, prog_bar=True)
            pl_module.log("perf/samples_per_sec", self._window_samples / self._window_seconds)
            self._window_tokens = self._window_samples = 0
            self._window_seconds = 0.0

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._last = time.perf_counter()  # the next training batch is not charged for validation

    def state_dict(self) -> dict[str, Any]:
        return {"tokens": self.tokens, "samples": self.samples, "seconds": self.seconds}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.tokens, self.samples, self.seconds = (
            state_dict["tokens"],
            state_dict["samples"],
            state_dict["seconds"],
        )
