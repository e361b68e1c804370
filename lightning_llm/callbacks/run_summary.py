"""What a run leaves behind for people and scripts: ``summary.json`` in the run folder, with the loss of the
final weights on the whole val and test splits (``evaluate``)."""

from __future__ import annotations

import json
import math
import resource
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from lightning_llm.atomic import write_text
from lightning_llm.callbacks.early_stopping import EarlyStop
from lightning_llm.distributed.parallelize import local_part


class RunSummary(L.Callback):
    """Times the fit and records the final training loss; ``finish`` adds evaluation results. Both go into
    checkpoints, so a resumed run's summary counts every launch's fit time, and one resumed after its last
    step (nothing left to train) keeps the loss it trained to."""

    def __init__(self) -> None:
        self.wall_seconds = 0.0
        self.train_loss = float("nan")
        self._start = 0.0
        self._earlier_seconds = 0.0  # the fit time of the launches before this one (from the checkpoint)

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.wall_seconds = self._earlier_seconds + time.perf_counter() - self._start
        self.train_loss = self._last_train_loss(trainer)

    def _last_train_loss(self, trainer: L.Trainer) -> float:
        loss = trainer.callback_metrics.get("train/loss")
        return float(loss) if loss is not None else self.train_loss

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        elapsed = self._earlier_seconds + time.perf_counter() - self._start
        checkpoint["run_summary"] = {"wall_seconds": elapsed, "train_loss": self._last_train_loss(trainer)}

    def on_load_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        stored = checkpoint.get("run_summary")
        stored = stored if isinstance(stored, dict) else {}
        self._earlier_seconds = _number(stored.get("wall_seconds"), 0.0)
        self.train_loss = _number(stored.get("train_loss"), float("nan"))

    def finish(
        self,
        trainer: L.Trainer,
        module: L.LightningModule,
        datamodule: L.LightningDataModule,
        max_batches: int | None,
        results: dict[str, Any],
    ) -> dict[str, Any]:
        """After fit: the run's summary, with the final weights' scores (``evaluate``) and the other
        callbacks' ``results``."""
        # Counted after training, while FSDP holds its parameters sharded (a forward-only pass leaves the
        # root's gathered until the next backward).
        params_per_process = sum(local_part(p).numel() for p in module.parameters())
        scores = evaluate(trainer, module, datamodule, max_batches)
        return self.summary(trainer, module, **scores, **results, params_per_process=params_per_process)

    def summary(self, trainer: L.Trainer, pl_module: L.LightningModule, **results: Any) -> dict[str, Any]:
        val_loss = results.get("val_loss", float("nan"))
        return {
            "train_loss": self.train_loss,
            "val_loss": val_loss,
            "val_perplexity": math.exp(val_loss) if val_loss < 50 else float("inf"),
            **results,
            "step": trainer.global_step,
            "tokens_seen": getattr(pl_module, "tokens_seen", 0),
            "wall_seconds": round(self.wall_seconds, 3),
            "peak_memory_mb": round(peak_memory_mb(), 1),
            "params": sum(p.numel() for p in pl_module.parameters()),
            **_early_stopping(trainer),
        }


def _number(value: Any, default: float) -> float:
    """``value`` as a float (a checkpoint's, written by ``on_save_checkpoint``), else ``default``."""
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else default


def _early_stopping(trainer: L.Trainer) -> dict[str, Any]:
    """``{"early_stopping": ...}`` when the run had early stopping (whether it stopped, the best step)."""
    for callback in trainer.callbacks:
        if isinstance(callback, EarlyStop):
            return {"early_stopping": callback.report()}
    return {}


def peak_memory_mb() -> float:
    """Peak accelerator memory when on CUDA, else the process's peak resident memory."""
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write strict JSON (a NaN or infinite value as null: strict readers reject ``NaN``), atomically, so a
    reader never sees half a file."""
    write_text(path, json.dumps(finite_or_null(data), indent=2, sort_keys=False, allow_nan=False) + "\n")


def finite_or_null(value: Any) -> Any:
    """``value`` with every non-finite float (in nested dicts and lists) replaced by None."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {key: finite_or_null(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [finite_or_null(item) for item in value]
    return value


def _batches_scored(trainer: L.Trainer, split: str) -> int | None:
    """The batches the last validate/test scored, or None when that was the whole split."""
    counted = trainer.num_val_batches if split == "val" else trainer.num_test_batches
    loader = trainer.val_dataloaders if split == "val" else trainer.test_dataloaders
    scored = int(sum(counted))
    try:
        whole = len(loader)
    except TypeError:  # an iterable dataset: its length is not known
        return scored
    return None if scored >= whole else scored


def evaluate(
    trainer: L.Trainer,
    module: L.LightningModule,
    datamodule: L.LightningDataModule,
    max_batches: int | None = None,
) -> dict[str, Any]:
    """Loss on the val and test splits with the final weights: whole (so equal runs compare equal), or their
    first ``max_batches`` batches (``eval.max_batches``: a large corpus's split), as ``eval_batches`` says
    (per split: null for the whole split, else the number of batches scored). A split turned off
    (``trainer.limit_val_batches=0``, ``limit_test_batches=0``) or without data (``data.val_fraction=0``) is
    skipped, and ``not_evaluated`` in the summary says which and why."""
    has_split = getattr(datamodule, "has_split", lambda split: True)  # a plugin's own data may lack it
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    scored: dict[str, int | None] = {}  # the batches each split was scored on
    for split, limit_key in (("val", "limit_val_batches"), ("test", "limit_test_batches")):
        limit = getattr(trainer, limit_key)
        if limit == 0 or not has_split(split):
            skipped[split] = f"trainer.{limit_key}=0" if limit == 0 else f"the data has no {split} split"
            continue
        setattr(trainer, limit_key, max_batches or (1.0 if split == "val" else limit))
        try:
            run = trainer.validate if split == "val" else trainer.test
            (scores,) = run(module, datamodule=datamodule, verbose=False)
        finally:
            setattr(trainer, limit_key, limit)
        scored[split] = _batches_scored(trainer, split)
        results.update({k.replace("/", "_"): float(v) for k, v in scores.items()})
    if "test_loss" in results:
        results["test_perplexity"] = math.exp(results["test_loss"]) if results["test_loss"] < 50 else math.inf
    if scored:  # beside val_tokens / test_tokens: how much of each split the losses saw
        results["eval_batches"] = scored
    if skipped:
        results["not_evaluated"] = skipped
    return results
