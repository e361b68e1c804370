"""Data-loading benchmark: the share of a training step spent waiting for the next batch.

    python bench/data.py [--steps 300] [--warmup 30] [--batch-size 12] [--block-size 64] [--num-workers 0]
                         [overrides ...]

Trains the character-level tiny GPT (``experiment=gpt_tiny``: char tokenizer, the embedded pydoc corpus,
block 64, batch 12) through ``lightning_llm.train.train``, the code path of ``python -m lightning_llm``, with
validation off during the fit, and a callback that times every step after the first ``--warmup``:

- wait: from one step's ``on_train_batch_end`` to the next step's ``on_train_batch_start``. Lightning fetches
  the next batch in between, and also moves it to the device, runs the loop's bookkeeping and the other
  callbacks' hooks, so this is an upper bound on the time a step waits for the DataLoader;
- step: from one ``on_train_batch_end`` to the next (the wait, then forward, backward and optimizer step).

``wait_share`` is the summed wait over the summed step time (target: under 2%). ``loader_ms_per_batch`` is
the same train DataLoader iterated alone, without a model. Times are host wall-clock (no CUDA sync). Prints
one JSON line. Other processes on the machine show in the numbers: run it twice. Numbers belong in notes,
not in tests. Extra arguments are config overrides (e.g. ``trainer.precision=bf16-mixed``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from typing import Any

import lightning as L
import torch
from hydra import compose, initialize_config_dir

from lightning_llm import config, plugins
from lightning_llm.train import train


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=300, help="optimizer steps of the fit")
    parser.add_argument("--warmup", type=int, default=30, help="first steps left out of the statistics")
    parser.add_argument("--batch-size", type=int, default=12)
    parser.add_argument("--block-size", type=int, default=64)
    parser.add_argument("--num-workers", type=int, default=0, help="DataLoader worker processes")
    parser.add_argument("overrides", nargs="*", help="more config overrides")
    args = parser.parse_args()
    if not 0 <= args.warmup < args.steps - 1:
        parser.error("need 0 <= --warmup < --steps - 1")
    return args


class StepTimer(L.Callback):
    """Per step: the gap between hooks in which Lightning fetches the next batch, and the whole step."""

    def __init__(self, warmup: int) -> None:
        self.warmup = warmup
        self.waits: list[float] = []
        self.steps: list[float] = []
        self._last_end: float | None = None
        self._wait: float | None = None

    def on_train_batch_start(self, trainer: L.Trainer, *args: Any) -> None:
        counted = self._last_end is not None and trainer.global_step >= self.warmup
        self._wait = time.perf_counter() - self._last_end if counted else None

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        now = time.perf_counter()
        if self._wait is not None:
            self.waits.append(self._wait)
            self.steps.append(now - self._last_end)
        self._last_end = now


def compose_config(args: argparse.Namespace) -> Any:
    overrides = [
        "experiment=gpt_tiny",
        "logger=none",
        f"data.batch_size={args.batch_size}",
        f"data.block_size={args.block_size}",
        f"model.block_size={args.block_size}",
        f"data.num_workers={args.num_workers}",
        f"trainer.max_steps={args.steps}",
        "trainer.limit_val_batches=0",  # no validation inside the timed fit
        "trainer.limit_test_batches=2",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "callbacks.samples.num_samples=1",
        "callbacks.samples.max_new_tokens=8",
        *args.overrides,
    ]
    plugins.load()
    config.store_schemas()
    with initialize_config_dir(config.config_dir(), version_base="1.3"):
        return compose("config", overrides=overrides)


def loader_ms_per_batch(loader: Any, batches: int, warmup: int) -> float:
    """Median milliseconds per batch of iterating ``loader`` alone (after ``warmup`` batches)."""
    times, last = [], time.perf_counter()
    for index, _ in enumerate(loader):
        now = time.perf_counter()
        if index >= warmup:
            times.append(now - last)
        last = now
        if index + 1 >= batches:
            break
    return 1000 * statistics.median(times)


def main() -> None:
    args = parse_args()
    os.environ.setdefault("WANDB_MODE", "disabled")
    cfg = compose_config(args)
    timer = StepTimer(args.warmup)
    with tempfile.TemporaryDirectory() as run_dir:
        _, objects = train(cfg, run_dir=run_dir, callbacks=[timer])
    loader = objects["datamodule"].train_dataloader()
    result = {
        "bench": "data",
        "steps": len(timer.steps),
        "batch_size": args.batch_size,
        "block_size": args.block_size,
        "num_workers": args.num_workers,
        "torch_threads": torch.get_num_threads(),
        "wait_ms_median": round(1000 * statistics.median(timer.waits), 3),
        "wait_ms_max": round(1000 * max(timer.waits), 3),
        "step_ms_median": round(1000 * statistics.median(timer.steps), 3),
        "wait_share": round(sum(timer.waits) / sum(timer.steps), 4),
        "loader_ms_per_batch": round(loader_ms_per_batch(loader, args.steps, args.warmup), 3),
    }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
