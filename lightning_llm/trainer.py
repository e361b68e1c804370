"""The ``lightning.Trainer`` of a run: ``cfg.trainer`` as its arguments (strategy and precision resolved by
``distributed.strategy``), the checkpoint and sample callbacks, the loggers and the cluster plugins."""

from __future__ import annotations

import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint, ModelSummary
from omegaconf import DictConfig, OmegaConf

from lightning_llm.callbacks import TextSamples
from lightning_llm.callbacks.console import ModelSummaryWithFlops, StepProgressBar
from lightning_llm.callbacks.early_stopping import EarlyStop
from lightning_llm.checkpoint import CHECKPOINT_DIR, LAST
from lightning_llm.config import ConfigError
from lightning_llm.distributed import strategy
from lightning_llm.distributed.checkpointing import AtomicCheckpointIO, ShardedStrategy
from lightning_llm.loggers import build_loggers

__all__ = ["build_trainer", "quiet_lightning"]

log = logging.getLogger("lightning_llm")

# Lines Lightning prints on every run that tell a user nothing about it: an advertisement, and a note that
# the default limit of 100% of the batches was "configured" (it is the default).
# (and, the framework bringing its own summary, that the Trainer skips its default one).
_NOISE = ("💡 Tip:", "was configured so 100% of the batches", "Trainer already configured with model summary")


class _DropNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        return not any(noise in message for noise in _NOISE)


def quiet_lightning() -> None:
    """Drop ``_NOISE`` from Lightning's console output (once per process), and send Lightning's lines where
    the job's own go. Importing Lightning gives its loggers console handlers of their own (``lightning``
    always; ``lightning.pytorch`` and ``lightning.fabric``, which then stop propagating, when logging was not
    set up yet), so under a launcher's worker every Lightning line came twice, and train.log missed them.
    Where the job's logging is set up (Hydra's root handlers: console and train.log) those go."""
    if logging.getLogger().handlers:
        for name in ("lightning", "lightning.pytorch", "lightning.fabric"):
            logger = logging.getLogger(name)
            for handler in [h for h in logger.handlers if type(h) is logging.StreamHandler]:
                logger.removeHandler(handler)
            logger.propagate = True
    for name in ("lightning.pytorch.utilities.rank_zero", "lightning.fabric.utilities.rank_zero"):
        logger = logging.getLogger(name)
        if not any(isinstance(f, _DropNoise) for f in logger.filters):
            logger.addFilter(_DropNoise())


def build_trainer(
    cfg: DictConfig,
    trainer_args: dict[str, Any],
    run_dir: Path,
    tokenizer: Any,
    objective: Any,
    callbacks: list[L.Callback],
    validates: bool = True,
) -> L.Trainer:
    """The Trainer, writing into ``run_dir``, with ``callbacks`` after the checkpoint, learning-rate and (when
    the objective says what text its model makes: ``sample_mode``) sample callbacks. ``validates``: whether
    the data has a val split (checkpoints follow validation; without one they keep its interval)."""
    quiet_lightning()
    own = [*_checkpoint_callbacks(cfg, run_dir, validates), LearningRateMonitor(logging_interval="step")]
    if (stopping := _early_stopping(cfg, validates)) is not None:
        own.append(stopping)
    own.extend(_console(cfg, trainer_args))
    if mode := getattr(objective, "sample_mode", None):
        samples = cfg.callbacks.samples
        own.append(TextSamples(tokenizer, run_dir / "samples.txt", mode, seed=cfg.seed, **samples))
    loggers = build_loggers(OmegaConf.to_container(cfg.logger, resolve=True), run_dir)
    if strategy.world_size(trainer_args) > 1 and (argv := strategy.single_job_argv()):
        sys.argv = argv  # the other processes Lightning launches re-run this one job, into this run folder
    trainer = L.Trainer(
        **trainer_args,
        logger=loggers,
        callbacks=[*own, *callbacks],
        plugins=_plugins(trainer_args, cfg.parallel.requeue_signal),
        default_root_dir=str(run_dir),
        use_distributed_sampler=False,  # the data modules split batches over ranks (resumable, exact)
    )
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return trainer


class OwnFilesCheckpoint(ModelCheckpoint):
    """Lightning's ``ModelCheckpoint`` that forgets, when a checkpoint restores it, every recorded file (best,
    top-k, k-th, last) that is not directly in its own folder: it deletes the files it records once better
    ones replace them, and a crafted checkpoint could record ``checkpoints/../../<anything>``."""

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(_typed_record(state_dict))
        recorded = [self.best_model_path, self.kth_best_model_path, self.last_model_path, *self.best_k_models]
        foreign = [path for path in recorded if path and not self._holds(path)]
        if not foreign:
            return
        log.warning(
            "the checkpoint records files outside %s (%s); they are forgotten, never deleted",
            self.dirpath,
            ", ".join(map(str, foreign[:3])),
        )
        self.best_k_models = {p: v for p, v in self.best_k_models.items() if self._holds(p)}
        for name in ("best_model_path", "kth_best_model_path", "last_model_path"):
            if not self._holds(getattr(self, name)):
                setattr(self, name, "")
        if self.best_k_models:  # the kept ones still rank: Lightning replaces the k-th first
            worst, best = (max, min) if self.mode == "min" else (min, max)
            self.kth_best_model_path = worst(self.best_k_models, key=self.best_k_models.__getitem__)
            self.kth_value = self.best_k_models[self.kth_best_model_path]
            self.best_model_path = best(self.best_k_models, key=self.best_k_models.__getitem__)
            self.best_model_score = self.best_k_models[self.best_model_path]
        elif self.monitor is not None:
            self.kth_value = torch.tensor(float("inf") if self.mode == "min" else float("-inf"))
            self.best_model_score = None

    def _holds(self, path: str) -> bool:
        """Whether ``path`` names a file directly in this callback's folder, as written and links resolved."""
        if not path or self.dirpath is None:
            return False
        folder = Path(os.path.abspath(self.dirpath))
        try:
            named = Path(os.path.normpath(os.path.abspath(path)))
            return named.parent == folder and Path(path).resolve().parent == folder.resolve()
        except (ValueError, OSError):  # a NUL byte, a name too long
            return False


_RECORDED_PATHS = ("dirpath", "best_model_path", "kth_best_model_path", "last_model_path")


def _typed_record(state: dict[str, Any]) -> dict[str, Any]:
    """A checkpoint callback's restored state with its paths as strings and its top-k as path -> score, as
    Lightning writes them; anything else (a crafted checkpoint's) is dropped with a warning instead of a
    traceback from deep in Lightning."""
    typed = dict(state) if isinstance(state, dict) else {}
    dropped = [key for key in _RECORDED_PATHS if key in typed and not isinstance(typed[key], str | None)]
    top_k = typed.get("best_k_models", {})
    if not isinstance(top_k, dict) or not all(
        isinstance(path, str) and isinstance(score, torch.Tensor | int | float)
        for path, score in top_k.items()
    ):
        dropped.append("best_k_models")
    if dropped:
        log.warning(
            "the checkpoint's record of earlier checkpoints has %s of other types; forgotten", dropped
        )
        typed.update({key: {} if key == "best_k_models" else "" for key in dropped})
    return typed


class LatestCheckpoint(OwnFilesCheckpoint):
    """``last.ckpt``: the latest state, written at every checkpoint (the top 1 of no monitor, overwritten in
    place) and at the end of training when its last steps were not saved yet.

    Not ``ModelCheckpoint(save_last=True)``: Lightning 2.6 writes that file only at a step where a best
    checkpoint is written too (once the val loss stopped improving, resume, generate and export read old
    weights), and a run whose last steps came after its last validation ended without them on disk."""

    def __init__(self, dirpath: Path, every_n_train_steps: int | None) -> None:
        super().__init__(
            dirpath=dirpath,
            filename=Path(LAST).stem,
            save_top_k=1,
            enable_version_counter=False,
            every_n_train_steps=every_n_train_steps,
        )
        self._saved_step = 0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._saved_step = trainer.global_step  # a resumed run's start is the checkpoint it resumed from

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: dict) -> None:
        self._saved_step = trainer.global_step  # any checkpoint of this step (ours, preemption's) holds it

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        super().on_train_batch_end(trainer, pl_module, *args)
        # The last step of the run is saved here, mid-epoch, as any step is: by on_train_end Lightning has
        # marked the epoch completed, and a run resumed from there to train further would start the next
        # epoch (its loop state and its data order) instead of finishing this one.
        last_step = trainer.max_steps > 0 and trainer.global_step >= trainer.max_steps
        if last_step and trainer.global_step != self._saved_step:
            trainer.save_checkpoint(Path(self.dirpath) / LAST)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.global_step != self._saved_step:  # every rank: a sharded save is collective
            trainer.save_checkpoint(Path(self.dirpath) / LAST)


def _checkpoint_callbacks(cfg: DictConfig, run_dir: Path, validates: bool) -> list[ModelCheckpoint]:
    """The best checkpoints by val/loss and, with ``save_last``, the latest (``LatestCheckpoint``); the best
    first, which is ``trainer.checkpoint_callback``."""
    settings = cfg.callbacks.checkpoint
    every_n_train_steps = settings.every_n_train_steps
    if every_n_train_steps is None and not validates:  # checkpoints follow validation: keep its rhythm
        interval = cfg.trainer.get("val_check_interval")
        every_n_train_steps = interval if isinstance(interval, int) else None
    best = OwnFilesCheckpoint(
        dirpath=run_dir / CHECKPOINT_DIR,
        filename="best-step{step:06d}",
        auto_insert_metric_name=False,
        monitor="val/loss",
        mode="min",
        save_top_k=settings.save_top_k,
        every_n_train_steps=every_n_train_steps,
    )
    if not settings.save_last:
        return [best]
    return [best, LatestCheckpoint(run_dir / CHECKPOINT_DIR, every_n_train_steps)]


def _console(cfg: DictConfig, trainer_args: dict[str, Any]) -> list[L.Callback]:
    """The progress bar over optimizer steps and the model summary with FLOPs, where the trainer has them."""
    shown: list[L.Callback] = []
    if trainer_args.get("enable_progress_bar", True):
        shown.append(StepProgressBar())
    if trainer_args.get("enable_model_summary", True):
        depth = (cfg.callbacks.get("model_summary") or {}).get("max_depth", 1)
        seq_len = cfg.data.get("block_size")
        shown.append(ModelSummaryWithFlops(seq_len, depth) if seq_len else ModelSummary(max_depth=depth))
    return shown


def _early_stopping(cfg: DictConfig, validates: bool) -> EarlyStop | None:
    settings = cfg.callbacks.get("early_stopping") or {}
    if settings.get("patience") is None:
        return None
    if not validates or cfg.trainer.get("limit_val_batches") == 0:
        raise ConfigError(
            "callbacks.early_stopping.patience needs validation: the data has no val split or "
            "trainer.limit_val_batches=0; give data.val_fraction a value above 0, or unset the patience"
        )
    return EarlyStop(settings.monitor, settings.patience, settings.min_delta, settings.mode)


def _plugins(trainer_args: dict[str, Any], requeue_signal: str) -> list[Any]:
    from lightning.pytorch.plugins.environments import SLURMEnvironment, TorchElasticEnvironment

    plugins: list[Any] = []
    if not isinstance(trainer_args["strategy"], ShardedStrategy):  # it writes its own folders atomically
        plugins.append(AtomicCheckpointIO())
    # torchrun inside an sbatch job: torchrun's ranks, not SLURM's tasks.
    if SLURMEnvironment.detect() and not TorchElasticEnvironment.detect():
        try:
            signum = signal.Signals[requeue_signal]
        except KeyError:
            raise ConfigError(
                f"parallel.requeue_signal={requeue_signal} is not a signal name (e.g. SIGUSR1, SIGTERM)"
            ) from None
        plugins.append(SLURMEnvironment(auto_requeue=True, requeue_signal=signum))
    return plugins
