"""``python -m lightning_llm.evaluate <run | .ckpt | HF folder> [--split val|test] [overrides]``: the loss,
perplexity and the objective's metrics of a model on a data split, with no training.

The model and its tokenizer come from the source (as ``generate`` loads them); the overrides compose the rest
as a training run would (``data=text 'data.paths=[...]'``, ``objective=...``, ``metrics=[...]``,
``data.batch_size=...``), the model's own settings aside. The split is scored whole (or its first
``trainer.limit_val_batches`` / ``limit_test_batches``) with Lightning's ``validate`` or ``test`` on one
device, and the scores are printed as one JSON object (strict JSON: a value that is not finite is null). Bad
input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import sys
import warnings
from collections.abc import Iterator, Sequence
from typing import Any

from lightning_llm.errors import EXIT_BAD_INPUT, ArgumentParser, ctrl_c_exits, first_line, path_argument

__all__ = ["build_parser", "check_overrides", "evaluate", "given_tokenizer", "main"]

SPLITS = ("val", "test")


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m lightning_llm.evaluate",
        description="Score a model on a data split with no training: loss, perplexity and the objective's "
        "metrics, as one JSON object.",
        epilog="example:\n  python -m lightning_llm.evaluate outputs/train/<run> data=text "
        "\"data.paths=['~/corpus/*.txt']\" --split test",
    )
    parser.add_argument(
        "source", type=path_argument, help="a run folder, a checkpoint, or a Hugging Face model folder"
    )
    parser.add_argument("--split", choices=SPLITS, default="val", help="the split to score (val)")
    parser.add_argument("overrides", nargs="*", help="config overrides for the data, objective, metrics")
    return parser


def evaluate(source: str, overrides: Sequence[str] = (), split: str = "val") -> dict[str, Any]:
    """The scores of the model at ``source`` on ``split`` of the data the overrides describe."""
    import lightning as L
    from omegaconf import OmegaConf, open_dict

    from lightning_llm import cli, config, parts, plugins
    from lightning_llm.checkpoint import check_data_settings, load_run, stored_data_settings
    from lightning_llm.distributed.plan import ParallelPlan
    from lightning_llm.module import LanguageModule
    from lightning_llm.trainer import quiet_lightning

    plugins.load()
    config.store_schemas()
    quiet_lightning()
    check_overrides(overrides)
    model, tokenizer, run_config = load_run(source, given_tokenizer(overrides))
    node = run_config["model"]
    run_data = run_config.get("data") if isinstance(run_config.get("data"), dict) else {}
    overrides = [*overrides, *_run_data_choice(run_data, overrides)]
    overrides = [*overrides, f"model={node['name']}", *_run_objective(run_config, overrides)]
    overrides = [*overrides, *cli.plugin_defaults(overrides)]
    choices: dict[str, str] = {}
    cfg = cli.compose_config(overrides, choices)
    cli.check_known_keys(cfg, overrides, choices)  # +foo=1 would be ignored
    with open_dict(cfg):
        cfg.model = node
        _adopt_run_data(cfg, run_data, overrides)
        positions = getattr(getattr(model, "config", None), "block_size", None)
        given = any(override.split("=")[0].lstrip("+") == "data.block_size" for override in overrides)
        if positions and "block_size" in cfg.data and not given and cfg.data.block_size > positions:
            cfg.data.block_size = positions  # the model's context, unless asked otherwise
    config.check(cfg)
    parts.check_compatible(cfg, model)
    objective = parts.build(cfg, "objective", tokenizer=tokenizer)
    datamodule = parts.build(cfg, "data", tokenizer=tokenizer, cache_dir=str(cfg.paths.cache_dir))
    stored = stored_data_settings(source)
    if isinstance(stored, dict) and hasattr(datamodule, "adopt_data_settings"):
        datamodule.adopt_data_settings(stored)  # a classifier's labels, for data holding some of them
    if not getattr(datamodule, "has_split", lambda name: True)(split):
        raise ValueError(f"--split {split}: the data has no {split} split (data.{split}_fraction=0?)")
    _check_heads(model, datamodule, source, cfg.data.name)
    if given := parts.data_settings_of(datamodule):  # a classifier's labels, in the order it learned them
        check_data_settings(stored, given, source, f"data={cfg.data.name}")
    module = LanguageModule(
        model,
        objective,
        optim={"name": "adamw"},
        scheduler={"name": "constant"},
        metrics=parts.metrics(cfg),
        parallel=ParallelPlan(),
    )
    trainer_args = _trainer_args(OmegaConf.to_container(cfg.trainer, resolve=True))
    L.seed_everything(cfg.seed, workers=True, verbose=False)  # masking draws: the same scores on every call
    with warnings.catch_warnings(), _lightning_refusals(trainer_args, split):
        warnings.filterwarnings("ignore", message=r".*isinstance\(treespec, LeafSpec\)")
        trainer = L.Trainer(
            **trainer_args,
            devices=1,
            logger=False,
            enable_checkpointing=False,
            enable_progress_bar=False,
            enable_model_summary=False,
            use_distributed_sampler=False,
        )
        run = trainer.validate if split == "val" else trainer.test
        (scores,) = run(module, datamodule=datamodule, verbose=False)
    results = {key.replace("/", "_"): float(value) for key, value in scores.items()}
    loss = results.get(f"{split}_loss")
    if loss is not None:
        results[f"{split}_perplexity"] = math.exp(loss) if loss < 50 else math.inf
    return {"source": str(source), "split": split, **results}


def _trainer_args(trainer_cfg: dict[str, Any]) -> dict[str, Any]:
    """The trainer.* settings evaluate passes to Lightning (``_TRAINER_KEYS``), refused here as a training run
    refuses them where this machine cannot give them (no GPU, 16-mixed on a CPU): Lightning would raise a
    traceback, or switch precision with a warning."""
    from lightning_llm.distributed.strategy import check_devices, resolve

    args = {
        "accelerator": trainer_cfg.get("accelerator", "auto"),
        "precision": trainer_cfg.get("precision", "32-true"),
        # trainer.limit_val_batches / limit_test_batches score a part of a large split
        "limit_val_batches": trainer_cfg.get("limit_val_batches", 1.0),
        "limit_test_batches": trainer_cfg.get("limit_test_batches", 1.0),
    }
    check_devices({**args, "devices": 1})
    resolve({**args, "devices": 1}, {})  # the precision's choices and its device
    return args


@contextlib.contextmanager
def _lightning_refusals(trainer_args: dict[str, Any], split: str) -> Iterator[None]:
    """Lightning's refusal of a setting (``MisconfigurationException``, a traceback) as one line naming the
    trainer.* key evaluate passed it: a fraction of the split under one batch, say."""
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    try:
        yield
    except MisconfigurationException as error:
        message = first_line(error)
        key = next((key for key in trainer_args if f"`{key}`" in message or f"{key}=" in message), None)
        if key is None:
            raise ValueError(f"trainer: {message}") from None
        setting = f"trainer.{key}={trainer_args[key]}"
        if (fewer := re.search(r"\* (\d+) < 1", message)) and key == f"limit_{split}_batches":
            least = math.ceil(10_000 / int(fewer[1])) / 10_000  # a fraction that keeps one batch
            raise ValueError(
                f"{setting}: under one of the {split} split's {fewer[1]} batches, so nothing would be "
                f"scored; give a fraction of at least {least:g} or a number of batches"
            ) from None
        raise ValueError(f"{setting}: {message}") from None


def _check_heads(model: Any, datamodule: Any, source: str, data: str) -> None:
    """Refuse data whose task needs a head the model does not have, or one of another size (what a data
    module decides of a model, ``model_settings``: a classifier's classes, a span head): training would
    build that head, but evaluate scores the model as it is."""
    built = getattr(model, "config", None)
    for key, needed in getattr(datamodule, "model_settings", dict)().items():
        has = getattr(built, key, needed)
        if has != needed:
            raise ValueError(
                f"{source}: the model has model.{key}={has!r}, but data={data} needs {needed!r}; evaluate "
                f"scores a model trained for this task (fine-tune one with model.init_from={source})"
            )


# What evaluate would silently not use: the training's settings, its logging, its run folder
_NOT_EVALUATION = frozenset(
    ("optim", "scheduler", "logger", "callbacks", "ckpt_path", "hydra", "parallel", "search", "task_name",
     "optimized_metric", "eval")
)  # fmt: skip
_TRAINER_KEYS = ("accelerator", "precision", "limit_val_batches", "limit_test_batches")


def check_overrides(overrides: Sequence[str]) -> None:
    """Refuse the settings evaluate would not use: the model's (the source's own), the tokenizer's (a run
    keeps its own; a Hugging Face folder without one is given a file, ``given_tokenizer``), the training's and
    its logging's, and a limit of 0 batches (nothing scored)."""
    for override in overrides:
        key, _, value = override.lstrip("+~").partition("=")
        top = key.split(".", 1)[0]
        if top == "model":
            raise ValueError(
                f"{override}: the model is the source's, with its own settings; evaluate's overrides choose "
                "the data, objective and metrics"
            )
        unused = top in _NOT_EVALUATION or (top == "trainer" and key.split(".", 1)[-1] not in _TRAINER_KEYS)
        if unused:
            raise ValueError(
                f"{override}: evaluate trains nothing and logs nowhere, so this is not used; its overrides "
                f"choose the data, objective, metrics, paths and trainer.{{{','.join(_TRAINER_KEYS)}}}"
            )
        if top == "tokenizer" and not given_tokenizer(overrides):
            raise ValueError(
                f"{override}: the tokenizer is the source's own; one is given only to a Hugging Face folder "
                "or a checkpoint file without one (tokenizer=pretrained tokenizer.path=<tokenizer.json>)"
            )
        if key in ("trainer.limit_val_batches", "trainer.limit_test_batches") and value.strip() in (
            "0",
            "0.0",
        ):
            raise ValueError(
                f"{override}: scores nothing; give a number of batches or a fraction of the split"
            )


def _run_objective(run_config: dict[str, Any], overrides: Sequence[str]) -> list[str]:
    """A run is scored with the objective it trained with (a classifier as a classifier, not by the model's
    default objective), its settings included, unless the overrides choose one; a Hugging Face folder has
    none, and gets its model's default."""
    objective = run_config.get("objective")
    given = {o.lstrip("+").split("=", 1)[0] for o in overrides}  # the keys the overrides set
    chosen = given & {"objective", "objective.name"}
    if not isinstance(objective, dict) or not objective.get("name") or chosen:
        return []
    settings = [
        f"objective.{key}={json.dumps(value)}"
        for key, value in objective.items()
        if key != "name" and f"objective.{key}" not in given and isinstance(value, int | float | str | bool)
    ]
    return [f"objective={objective['name']}", *settings]


def _run_data_choice(run_data: dict[str, Any], overrides: Sequence[str]) -> list[str]:
    """``data=<the run's>`` unless the overrides choose the data: a run is scored on its own data."""
    given = {o.lstrip("+").split("=", 1)[0] for o in overrides}
    name = run_data.get("name")
    return [f"data={name}"] if isinstance(name, str) and not given & {"data", "data.name"} else []


def _adopt_run_data(cfg: Any, run_data: dict[str, Any], overrides: Sequence[str]) -> None:
    """The run's own data settings (its files, split fractions and seed) where the data is the run's plugin
    and the overrides leave them unset, so its val and test splits are the run's: composed from the defaults,
    a run trained with other fractions had its val split scored as "test"."""
    if run_data.get("name") != cfg.data.get("name"):
        return
    given = {o.lstrip("+~").split("=", 1)[0] for o in overrides}
    for key, value in run_data.items():
        if key != "name" and key in cfg.data and f"data.{key}" not in given:
            cfg.data[key] = value


def given_tokenizer(overrides: Sequence[str]) -> str | None:
    """The tokenizer file the overrides give, for a Hugging Face folder that has none (a run keeps its own):
    the setting a tokenizer plugin declares as the file it loads (``file_setting``; ``tokenizer=pretrained
    tokenizer.path=<file>``). None when the overrides choose no tokenizer that loads a file."""
    from lightning_llm import plugins, registry

    values = dict(override.lstrip("+").split("=", 1) for override in overrides if "=" in override)
    if not values.get("tokenizer"):
        return None
    plugins.load()
    setting = getattr(registry.get("tokenizer", values["tokenizer"]).product(), "file_setting", None)
    return values.get(f"tokenizer.{setting}") if setting else None


@ctrl_c_exits
def main(argv: Sequence[str] | None = None) -> int:
    from lightning_llm.callbacks.run_summary import finite_or_null
    from lightning_llm.config import ConfigError
    from lightning_llm.registry import PluginError

    args = build_parser().parse_intermixed_args(argv)  # overrides before or after --split
    try:
        results = evaluate(args.source, args.overrides, args.split)
    except (OSError, ValueError, ConfigError, PluginError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(finite_or_null(results), allow_nan=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
