"""``train(cfg)``: build every part in order and hand them to Lightning.

seed -> tokenizer -> data -> model -> objective -> module -> trainer -> fit -> validate/test -> summary.
Each step is one call with plain inputs (``parts``, ``trainer``, ``run_folder``); nothing reaches back up
the chain. ``run(cfg)`` is the Hydra task around it: it claims the run folder and turns bad input into one
line.
"""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException
from omegaconf import DictConfig, OmegaConf

from lightning_llm import config, parts, plugins, run_folder
from lightning_llm.callbacks import RunSummary, Throughput
from lightning_llm.callbacks.nan_guard import NanGuard
from lightning_llm.callbacks.preemption import Preemption
from lightning_llm.callbacks.run_summary import write_json
from lightning_llm.checkpoint import export_consolidated
from lightning_llm.distributed import strategy
from lightning_llm.distributed.checkpointing import CheckpointWriteError, ShardedStrategy
from lightning_llm.loggers import finish_loggers
from lightning_llm.trainer import build_trainer, quiet_lightning

log = logging.getLogger("lightning_llm")


def run(cfg: DictConfig) -> float | None:
    """The Hydra task: claim the run folder (``run_folder``: one run per folder, one launch at a time), train,
    and return ``cfg.optimized_metric`` for a sweeper."""
    try:
        run_folder.check_rank_variables(run_folder.planned_processes(cfg.trainer))
        if run_folder.is_launching_rank():
            run_dir = _hydra_output_dir()
            resuming = cfg.get("ckpt_path") not in (None, "", "null")
            run_folder.check_launch(run_dir, resuming, key=_folder_key())
            run_folder.lock(run_dir)
        summary, _ = train(cfg)
    except (ValueError, FileNotFoundError, CheckpointWriteError, MisconfigurationException) as error:
        # Bad input (a config value, a missing or malformed data file, a setting Lightning refuses) and a
        # checkpoint that could not be written (disk full) get their one-line message; HYDRA_FULL_ERROR=1
        # shows the traceback instead.
        if run_folder.is_launching_rank():
            run_folder.restore_record(_hydra_output_dir())  # a refused resume leaves .hydra/ as it was
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {_which_job()}{error}", file=sys.stderr)
        raise SystemExit(2) from None
    metric = cfg.get("optimized_metric") or "val_loss"
    if metric not in summary:  # what a sweeper ranks runs by: say so now, not after a whole sweep of None
        numbers = [key for key, value in summary.items() if isinstance(value, int | float)]
        log.warning(
            "optimized_metric=%s is not in summary.json; a sweeper gets None; its numbers: %s",
            metric,
            ", ".join(numbers),
        )
    return summary.get(metric)


def train(
    cfg: DictConfig, run_dir: str | Path | None = None, callbacks: list[L.Callback] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train as ``cfg`` says; returns (summary, the objects built) for tests and sweepers. ``callbacks`` are
    added to the run's own (programmatic use: probes, custom early stopping)."""
    plugins.load()  # once per process; a launcher's worker process (joblib, submitit) starts with none
    quiet_lightning()  # before Lightning's first line (the seed)
    run_dir = Path(run_dir or _hydra_output_dir())
    cfg = run_folder.with_moved_source(cfg, run_dir)  # a fine-tuning resumed without its source
    cfg = parts.with_source_model(cfg)  # fine-tuning: the source's architecture and shape
    config.check(cfg)
    # Settings this machine cannot run and a run folder that cannot take checkpoints fail before any work.
    trainer_args, plan = strategy.resolve_run(cfg.trainer, cfg.parallel)
    run_folder.check_writable(run_dir)
    log.info("run folder: %s", run_dir.resolve())
    log.info("config (as run; .hydra/ holds it):\n%s", OmegaConf.to_yaml(cfg, resolve=True).rstrip())
    L.seed_everything(cfg.seed, workers=True)

    tokenizer, datamodule = parts.tokenizer_and_data(cfg)
    # Under FSDP only rank 0 builds the weights: the others build on the meta device, then get their shards.
    on_meta = isinstance(trainer_args["strategy"], ShardedStrategy) and not run_folder.is_launching_rank()
    model = parts.model(cfg, tokenizer.vocab_size, datamodule, on_meta=on_meta)
    objective = parts.build(cfg, "objective", tokenizer=tokenizer)
    parts.check_compatible(cfg, model)
    data_settings = parts.data_settings_of(datamodule)
    module = parts.language_module(cfg, model, objective, tokenizer, plan, data_settings)

    summary, throughput = RunSummary(), Throughput(**cfg.callbacks.throughput)
    preemption = Preemption(run_dir / "checkpoints" / "last.ckpt")
    nan_guard = NanGuard(**cfg.callbacks.nan_guard, checkpoint_dir=run_dir / "checkpoints")
    own = [summary, throughput, preemption, nan_guard, *parts.callbacks(cfg), *(callbacks or [])]
    validates = getattr(datamodule, "has_split", lambda split: True)("val")
    trainer = build_trainer(cfg, trainer_args, run_dir, tokenizer, objective, own, validates=validates)

    resume = run_folder.start(cfg, run_dir, trainer, tokenizer, data_settings)
    try:
        with preemption.stops_with_a_checkpoint(run_dir):
            trainer.fit(module, datamodule=datamodule, ckpt_path=resume, weights_only=True)
        run_summary = summary.finish(trainer, module, datamodule, cfg.eval.max_batches, throughput.summary())
        if trainer.is_global_zero:
            export_consolidated(run_dir)
            write_json(run_dir / "summary.json", run_summary)
            log.info("summary: %s", {k: v for k, v in run_summary.items() if isinstance(v, int | float)})
    finally:
        finish_loggers(trainer.loggers)  # in-process callers (tests, sweeps) start the next run clean
    objects = {"tokenizer": tokenizer, "datamodule": datamodule, "model": model, "module": module}
    return run_summary, {**objects, "trainer": trainer, "run_dir": run_dir}


def _sweep_job() -> int | None:
    """This job's number in a sweep (Hydra's multirun), or None for a single run."""
    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    hydra = HydraConfig.get()
    return hydra.job.num if hydra.mode == RunMode.MULTIRUN else None


def _folder_key() -> str:
    """The setting that chose this job's folder: a sweep's jobs live under ``hydra.sweep.dir``."""
    return "hydra.run.dir" if _sweep_job() is None else "hydra.sweep.dir"


def _which_job() -> str:
    """``sweep job 1 (<its folder>): `` for a sweep's job, whose refusal ends the sweep (Hydra's launchers
    stop at a failed job) and would otherwise not say which of its jobs it was; '' for a single run."""
    number = _sweep_job()
    return "" if number is None else f"sweep job {number} ({_hydra_output_dir()}): "


def _hydra_output_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir
