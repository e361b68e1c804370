"""``train(cfg)``: build every part in order and hand them to Lightning.

seed -> tokenizer -> data -> model -> objective -> module -> trainer -> fit -> validate/test -> summary.
Each step is one call with plain inputs; nothing reaches back up the chain.
"""

from __future__ import annotations

import logging
import math
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
from lightning.fabric.utilities.exceptions import MisconfigurationException
from lightning.pytorch.callbacks import LearningRateMonitor, ModelCheckpoint
from lightning.pytorch.utilities.exceptions import SIGTERMException
from omegaconf import DictConfig, OmegaConf

from lightning_llm import config, plugins, registry, run_folder
from lightning_llm.callbacks import RunSummary, TextSamples, Throughput
from lightning_llm.callbacks.nan_guard import NanGuard
from lightning_llm.callbacks.preemption import INTERRUPTED_EXIT_CODE, PREEMPTED_EXIT_CODE, Preemption
from lightning_llm.callbacks.run_summary import write_json
from lightning_llm.config import ConfigError
from lightning_llm.distributed import strategy
from lightning_llm.distributed.checkpointing import AtomicCheckpointIO, CheckpointWriteError, ShardedStrategy
from lightning_llm.distributed.parallelize import local_part
from lightning_llm.loggers import build_loggers, finish_loggers
from lightning_llm.module import LanguageModule
from lightning_llm.tokenizers import fit_or_load

log = logging.getLogger("lightning_llm")


def run(cfg: DictConfig) -> float | None:
    """The Hydra task: claim the run folder (``run_folder``: one run per folder, one launch at a time), train,
    and return ``cfg.optimized_metric`` for a sweeper."""
    try:
        if run_folder.is_launching_rank():
            run_dir = _hydra_output_dir()
            run_folder.check_launch(run_dir, resuming=cfg.get("ckpt_path") not in (None, "", "null"))
            run_folder.lock(run_dir)
        summary, _ = train(cfg)
    except (ValueError, FileNotFoundError, CheckpointWriteError, MisconfigurationException) as error:
        # Bad input (a config value, a missing or malformed data file, a setting Lightning refuses) and a
        # checkpoint that could not be written (disk full) get their one-line message; HYDRA_FULL_ERROR=1
        # shows the traceback instead.
        if os.environ.get("HYDRA_FULL_ERROR") == "1":
            raise
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from None
    return summary.get(cfg.get("optimized_metric") or "val_loss")


def train(
    cfg: DictConfig, run_dir: str | Path | None = None, callbacks: list[L.Callback] | None = None
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Train as ``cfg`` says; returns (summary, the objects built) for tests and sweepers. ``callbacks`` are
    added to the run's own (programmatic use: probes, custom early stopping)."""
    plugins.load()  # once per process; a launcher's worker process (joblib, submitit) starts with none
    config.check(cfg)
    # Settings this machine cannot run and a run folder that cannot take checkpoints fail before any work.
    trainer_cfg = OmegaConf.to_container(cfg.trainer, resolve=True)
    strategy.check_devices(trainer_cfg)
    trainer_args, plan = strategy.resolve(trainer_cfg, OmegaConf.to_container(cfg.parallel, resolve=True))
    run_dir = Path(run_dir or _hydra_output_dir())
    run_folder.check_writable(run_dir)
    L.seed_everything(cfg.seed, workers=True)
    cache_dir = str(cfg.paths.cache_dir)

    init_from = config.framework_params("model", cfg.model)["init_from"]
    if init_from:  # fine-tuning: the weights only mean something with the tokenizer they were trained with
        tokenizer = _tokenizer_of_run(init_from, cfg)
        datamodule = _build(cfg, "data", tokenizer=tokenizer, cache_dir=cache_dir)
    else:
        tokenizer = _build(cfg, "tokenizer")
        datamodule = _build(cfg, "data", tokenizer=tokenizer, cache_dir=cache_dir)
        tokenizer = fit_or_load(
            tokenizer, lambda: datamodule.texts("train"), datamodule.fingerprint(), cache_dir
        )
    log.info("tokenizer: %s, vocab %d", cfg.tokenizer.name, tokenizer.vocab_size)

    model = _build_model(cfg, tokenizer.vocab_size, datamodule)
    objective = _build(cfg, "objective", tokenizer=tokenizer)
    _check_compatible(cfg, model)
    log.info("model: %s, %.2fM parameters", cfg.model.name, sum(p.numel() for p in model.parameters()) / 1e6)

    module = LanguageModule(
        model,
        objective,
        optim=_spec(cfg, "optim"),
        scheduler=_spec(cfg, "scheduler"),
        metrics={p.name: p(**kwargs) for p, kwargs in _metrics(cfg)},
        checkpoint_extras={
            "config": OmegaConf.to_container(cfg, resolve=True),
            "tokenizer_fingerprint": tokenizer.fingerprint(),
        },
        parallel=plan,
    )
    summary_callback, throughput = RunSummary(), Throughput(**cfg.callbacks.throughput)
    preemption = Preemption(run_dir / "checkpoints" / "last.ckpt")
    nan_guard = NanGuard(**cfg.callbacks.nan_guard, checkpoint_dir=run_dir / "checkpoints")
    extra = [summary_callback, throughput, preemption, nan_guard, *(callbacks or [])]
    has_split = getattr(datamodule, "has_split", lambda split: True)  # a plugin's own data may lack it
    trainer = _trainer(cfg, trainer_args, run_dir, tokenizer, objective, extra, validates=has_split("val"))
    if trainer.is_global_zero:
        run_folder.remove_unfinished_checkpoints(run_dir)
    sharded = isinstance(trainer.strategy, ShardedStrategy)
    resume_from = run_folder.resume_path(cfg.ckpt_path, run_dir, sharded_strategy=sharded)
    if resume_from:  # checked before anything is written: a refused resume leaves the run folder as it was
        from lightning_llm.checkpoint import check_resumable

        model_config = OmegaConf.to_container(cfg.model, resolve=True)
        check_resumable(resume_from, model_config, tokenizer.fingerprint())
    if trainer.is_global_zero:
        tokenizer.save(run_dir / "tokenizer.json")
    try:
        try:
            with preemption.ctrl_c_stops_training():
                trainer.fit(module, datamodule=datamodule, ckpt_path=resume_from, weights_only=True)
        except SIGTERMException:
            log.warning(
                "%s after step %d; checkpoint %s. Continue with: python -m lightning_llm "
                "hydra.run.dir=%s ckpt_path=auto (and the same overrides)",
                "interrupted (Ctrl-C)" if preemption.interrupted else "preempted (SIGTERM)",
                preemption.preempted_at or trainer.global_step,
                preemption.checkpoint_path,
                run_dir,
            )
            code = INTERRUPTED_EXIT_CODE if preemption.interrupted else PREEMPTED_EXIT_CODE
            raise SystemExit(code) from None
        # Counted after training, while FSDP holds its parameters sharded (a forward-only pass leaves the
        # root's gathered until the next backward).
        params_per_process = sum(local_part(p).numel() for p in module.model.parameters())
        results = _evaluate(trainer, module, datamodule, has_split)
        summary = summary_callback.summary(
            trainer,
            module,
            **results,
            **throughput.summary(),
            params_per_process=params_per_process,
        )
        if trainer.is_global_zero:
            if isinstance(trainer.strategy, ShardedStrategy):
                _export_consolidated(run_dir)
            write_json(run_dir / "summary.json", summary)
            log.info("summary: %s", {k: v for k, v in summary.items() if isinstance(v, int | float)})
    finally:
        finish_loggers(trainer.loggers)  # in-process callers (tests, sweeps) start the next run clean
    objects = {"tokenizer": tokenizer, "datamodule": datamodule, "model": model, "module": module}
    return summary, {**objects, "trainer": trainer, "run_dir": run_dir}


def _build(cfg: DictConfig, kind: str, **supplied: Any) -> Any:
    plugin, params = config.plugin_params(kind, cfg[kind])
    return plugin(**supplied, **params)


def _build_model(cfg: DictConfig, vocab_size: int, datamodule: Any) -> Any:
    plugin, params = config.plugin_params("model", cfg.model)
    # What the data decides and the config leaves unset, e.g. a classifier's head sized by the labels.
    for key, value in getattr(datamodule, "model_settings", dict)().items():
        if key in params and not params[key]:
            params[key] = value
    model = plugin(vocab_size=vocab_size, **params)
    if init_from := config.framework_params("model", cfg.model)["init_from"]:
        from lightning_llm.checkpoint import init_from as load_matching_weights

        loaded, new, skipped = load_matching_weights(model, init_from)
        log.info("%s: loaded %d tensors; new: %s; skipped: %s", init_from, len(loaded), new, skipped)
    return model


def _tokenizer_of_run(init_from: str, cfg: DictConfig) -> Any:
    """The tokenizer saved beside the checkpoint that ``model.init_from`` names."""
    from lightning_llm.checkpoint import find_checkpoint, run_folder
    from lightning_llm.tokenizers import Tokenizer

    path = run_folder(find_checkpoint(init_from)) / "tokenizer.json"
    if not path.is_file():
        raise FileNotFoundError(f"model.init_from={init_from}: its run folder has no tokenizer.json ({path})")
    tokenizer = Tokenizer.from_file(path)
    chosen = _build(cfg, "tokenizer")  # one that comes trained (a tokenizer file) must be the same one
    if chosen.is_trained and chosen.fingerprint() != tokenizer.fingerprint():
        raise ConfigError(
            f"tokenizer={cfg.tokenizer.name} is not the tokenizer that model.init_from={init_from} was "
            "trained with; leave the tokenizer unset when fine-tuning"
        )
    log.info(
        "tokenizer: %s (the one model.init_from was trained with; tokenizer=%s is not used)",
        path,
        cfg.tokenizer.name,
    )
    return tokenizer


def _spec(cfg: DictConfig, kind: str) -> dict[str, Any]:
    plugin, params = config.plugin_params(kind, cfg[kind])
    return {"name": plugin.name, **params}


def _metrics(cfg: DictConfig) -> list[tuple[registry.Plugin, dict[str, Any]]]:
    nodes = config.metric_nodes(cfg)
    return [config.plugin_params("metric", node, key=f"metrics[{i}]") for i, node in enumerate(nodes)]


def _check_compatible(cfg: DictConfig, model: Any) -> None:
    # Again on the built model: a factory without a return annotation is only known once it has run.
    config.check_objective(cfg.model.name, cfg.objective.name, tuple(getattr(model, "objectives", ())))
    max_len = getattr(getattr(model, "config", None), "block_size", None)
    seq_len = cfg.data.get("block_size")
    if max_len is not None and seq_len is not None and seq_len > max_len:
        raise ConfigError(
            f"data.block_size={seq_len} is longer than model.block_size={max_len} (the model's positions); "
            f"lower data.block_size or raise model.block_size"
        )


def _trainer(
    cfg: DictConfig,
    trainer_args: dict[str, Any],
    run_dir: Path,
    tokenizer: Any,
    objective: Any,
    extra_callbacks: list[L.Callback],
    validates: bool = True,
) -> L.Trainer:
    callbacks_cfg = cfg.callbacks
    every_n_train_steps = callbacks_cfg.checkpoint.every_n_train_steps
    if every_n_train_steps is None and not validates:  # checkpoints follow validation: keep its rhythm
        interval = cfg.trainer.get("val_check_interval")
        every_n_train_steps = interval if isinstance(interval, int) else None
    checkpoint = ModelCheckpoint(
        dirpath=run_dir / "checkpoints",
        filename="best-step{step:06d}",
        auto_insert_metric_name=False,
        monitor="val/loss",
        mode="min",
        save_top_k=callbacks_cfg.checkpoint.save_top_k,
        save_last=callbacks_cfg.checkpoint.save_last,
        every_n_train_steps=every_n_train_steps,
    )
    callbacks = [checkpoint, LearningRateMonitor(logging_interval="step"), *extra_callbacks]
    # Samples need text out of the model: a language model continues a prompt, a seq2seq model decodes inputs.
    if mode := getattr(objective, "sample_mode", None):
        samples_path = run_dir / "samples.txt"
        callbacks.append(TextSamples(tokenizer, samples_path, mode, seed=cfg.seed, **callbacks_cfg.samples))
    loggers = build_loggers(OmegaConf.to_container(cfg.logger, resolve=True), run_dir)
    if strategy.world_size(trainer_args) > 1 and (argv := strategy.single_job_argv()):
        sys.argv = argv  # the other processes Lightning launches re-run this one job, into this run folder
    trainer = L.Trainer(
        **trainer_args,
        logger=loggers,
        callbacks=callbacks,
        plugins=_plugins(trainer_args, cfg.parallel.requeue_signal),
        default_root_dir=str(run_dir),
        use_distributed_sampler=False,  # the data modules split batches over ranks (resumable, exact)
    )
    for logger in loggers:
        logger.log_hyperparams(OmegaConf.to_container(cfg, resolve=True))
    return trainer


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


def _evaluate(
    trainer: L.Trainer,
    module: LanguageModule,
    datamodule: L.LightningDataModule,
    has_split: Callable[[str], bool],
) -> dict[str, Any]:
    """Loss on the whole val and test splits with the final weights, so equal runs compare equal. A split
    turned off (``trainer.limit_val_batches=0``, ``limit_test_batches=0``) or without data
    (``data.val_fraction=0``) is skipped, and ``not_evaluated`` in the summary says which and why."""
    results: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for split, limit_key in (("val", "limit_val_batches"), ("test", "limit_test_batches")):
        limit = getattr(trainer, limit_key)
        if limit == 0 or not has_split(split):
            skipped[split] = f"trainer.{limit_key}=0" if limit == 0 else f"the data has no {split} split"
            continue
        if split == "val":
            trainer.limit_val_batches = 1.0
            try:
                (scores,) = trainer.validate(module, datamodule=datamodule, verbose=False)
            finally:
                trainer.limit_val_batches = limit
        else:
            (scores,) = trainer.test(module, datamodule=datamodule, verbose=False)
        results.update({k.replace("/", "_"): float(v) for k, v in scores.items()})
    if "test_loss" in results:
        results["test_perplexity"] = math.exp(results["test_loss"]) if results["test_loss"] < 50 else math.inf
    if skipped:
        results["not_evaluated"] = skipped
    return results


def _export_consolidated(run_dir: Path) -> None:
    """After a sharded (FSDP) run: its last checkpoint as one file, for inference and fine-tuning."""
    from lightning_llm.checkpoint import consolidate, consolidated_path, latest_checkpoint

    sharded = latest_checkpoint(run_dir / "checkpoints")
    if sharded is not None and sharded.is_dir():
        out = consolidate(sharded, consolidated_path(sharded))
        log.info("consolidated %s -> %s", sharded.name, out)


def _hydra_output_dir() -> str:
    from hydra.core.hydra_config import HydraConfig

    return HydraConfig.get().runtime.output_dir
