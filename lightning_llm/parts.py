"""A run's parts, built from its config through the registry: tokenizer and data, model, objective, module.

Each function takes the composed config and what the steps before it made, and returns plain objects; none
knows a plugin by name. What one part decides for another is declared by the part: a data module's
``model_settings()`` (a classifier's ``num_classes``), a model's ``objectives``, its ``config.block_size``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf, open_dict

from lightning_llm import config, registry
from lightning_llm.config import ConfigError
from lightning_llm.distributed.plan import ParallelPlan
from lightning_llm.module import LanguageModule
from lightning_llm.tokenizers import Tokenizer, fit_or_load

__all__ = [
    "build",
    "callbacks",
    "check_compatible",
    "language_module",
    "metrics",
    "model",
    "tokenizer_and_data",
    "with_source_model",
]

log = logging.getLogger("lightning_llm")


def build(cfg: DictConfig, kind: str, **supplied: Any) -> Any:
    """The plugin ``cfg[kind]`` selects, called with ``supplied`` and its checked parameters."""
    plugin, params = config.plugin_params(kind, cfg[kind])
    return plugin(**supplied, **params)


# Model settings a fine-tuning keeps from its own config rather than the checkpoint's: regularisation.
FINE_TUNING_OWN = ("dropout", "attn_dropout")


def with_source_model(cfg: DictConfig) -> DictConfig:
    """``cfg`` with its model node taken from the checkpoint ``model.init_from`` names (a run, a .ckpt or a
    Hugging Face folder): the architecture and shape are the checkpoint's, so every weight it holds fits (the
    run's checkpoints then record the model they hold). A fine-tuning keeps its own dropout, its task's head
    sizes (the data decides them) and its LoRA settings. Configs without init_from are returned as is."""
    from lightning_llm import huggingface

    init_from = config.framework_params("model", cfg.model)["init_from"]
    if not init_from:
        return cfg
    # the path the rest of the run (and its checkpoints' config) uses: absolute, so an adapters-only run's
    # base is found from wherever the run is loaded later
    init_from = os.path.abspath(os.path.expanduser(init_from))
    if not huggingface.is_hf_folder(init_from):
        return _with_run_model(cfg, str(init_from))
    folder = Path(init_from)
    architecture, params = huggingface.model_params(huggingface.read_hf_config(folder), folder)
    log.info(
        "model: %s from %s (its config.json; model.* settings given here are not used)",
        architecture.model,
        folder,
    )
    for key in architecture.task_params:  # head sizes are the task's: its data module decides them
        params.pop(key, None)
    lora = cfg.model.get("lora")  # the fine-tuning's own settings stay
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.model = {"name": architecture.model, **params, "init_from": str(init_from)}
        if lora is not None:
            cfg.model.lora = lora
    return cfg


def _with_run_model(cfg: DictConfig, init_from: str) -> DictConfig:
    """``with_source_model`` for a run or .ckpt of this framework: its stored model node."""
    from lightning_llm.checkpoint import find_checkpoint, read_metadata, run_config

    path = find_checkpoint(init_from)
    stored = dict(run_config(read_metadata(path))["model"])
    plugin = config.plugin_params("model", stored, key=f"{path} model")[0]
    task_params = getattr(plugin.product(), "task_params", ())
    takes = {p.name for p in plugin.parameters()} | {"lora"}  # another model kind's dropout keys: not its
    own = {key: cfg.model[key] for key in (*FINE_TUNING_OWN, *task_params, "lora") if key in cfg.model}
    own = {key: value for key, value in own.items() if key in takes}
    node = {k: v for k, v in stored.items() if k not in (*task_params, "lora")}
    node |= own | {"init_from": init_from}
    differing = sorted(
        key
        for key, value in node.items()
        if key in cfg.model and key not in (*own, "name") and cfg.model[key] != value
    )
    if differing or node["name"] != cfg.model.name:
        shown = ", ".join(f"{key}={node[key]!r}" for key in ["name", *differing] if key in node)
        log.info("model from %s: %s (the checkpoint's; the model.* settings of this run differ)", path, shown)
    cfg = cfg.copy()
    with open_dict(cfg):
        cfg.model = node
    return cfg


def tokenizer_and_data(cfg: DictConfig) -> tuple[Tokenizer, Any]:
    """The trained tokenizer and the data module. The tokenizer is trained on the train split (or loaded
    from the cache, keyed by content); when fine-tuning it is the one ``model.init_from`` was trained with,
    since the weights only mean something with it."""
    cache_dir = str(cfg.paths.cache_dir)
    init_from = config.framework_params("model", cfg.model)["init_from"]
    if init_from:
        tokenizer = _tokenizer_of_run(init_from, cfg)
        datamodule = build(cfg, "data", tokenizer=tokenizer, cache_dir=cache_dir)
        _check_coverage(tokenizer, datamodule, cache_dir, f"of {init_from}")
        return tokenizer, datamodule
    plugin, settings = config.plugin_params("tokenizer", cfg.tokenizer)  # what ``build`` does, settings kept
    tokenizer = plugin(**settings)
    datamodule = build(cfg, "data", tokenizer=tokenizer, cache_dir=cache_dir)
    if tokenizer.is_trained:  # tokenizer=pretrained: a file trained elsewhere
        _check_coverage(tokenizer, datamodule, cache_dir, repr(tokenizer))
    max_chars = config.framework_params("tokenizer", cfg.tokenizer)["train_max_chars"]
    corpus = f"{datamodule.fingerprint()}:sample={max_chars}"
    sample = lambda: training_sample(datamodule, max_chars)  # noqa: E731
    tokenizer = fit_or_load(tokenizer, sample, corpus, cache_dir, settings)
    log.info("tokenizer: %s, vocab %d", cfg.tokenizer.name, tokenizer.vocab_size)
    return tokenizer, datamodule


def _check_coverage(tokenizer: Tokenizer, datamodule: Any, cache_dir: str, source: str) -> None:
    """A tokenizer trained elsewhere, on other text: whether it can represent this data's train split."""
    from lightning_llm.tokenizers.coverage import SAMPLE_CHARS, check_coverage

    sample = lambda: training_sample(datamodule, SAMPLE_CHARS)  # noqa: E731
    check_coverage(tokenizer, sample, datamodule.fingerprint(), cache_dir, source)


def training_sample(datamodule: Any, max_chars: int) -> Iterator[str]:
    """What the tokenizer trains on: the data module's own sample of its train split where it has one
    (``tokenizer_sample``: spread over a large corpus), else the first ``max_chars`` of ``texts("train")``."""
    if callable(sample := getattr(datamodule, "tokenizer_sample", None)):
        yield from sample(max_chars)
        return
    for text in datamodule.texts("train"):
        yield text[:max_chars]
        max_chars -= len(text)
        if max_chars <= 0:
            break


def model(cfg: DictConfig, vocab_size: int, datamodule: Any, on_meta: bool = False) -> Any:
    """The model, with what the data decides filled in where the config leaves it unset, and the matching
    weights of ``model.init_from`` loaded (fine-tuning). ``on_meta``: build it on the meta device, taking no
    memory (an FSDP rank other than 0: it gets its shards of rank 0's weights once sharded, see
    ``LanguageModule.configure_model``)."""
    plugin, params = config.plugin_params("model", cfg.model)
    for key, value in getattr(datamodule, "model_settings", dict)().items():
        if key in params and params[key] and params[key] != value:  # set (not 0/unset): a head misfit
            raise ConfigError(
                f"model.{key}={params[key]!r}, but the data decides {value!r} (data={cfg.data.name}); leave "
                f"model.{key} unset, and the data sets it"
            )
        if key in params:
            params[key] = value
            with open_dict(cfg.model):  # the stored config (checkpoints, export, evaluate) holds it too
                cfg.model[key] = value
    init_from = config.framework_params("model", cfg.model)["init_from"]
    if init_from:  # the config is the checkpoint's (with_source_model): it must describe its weights
        _check_source_config(str(init_from), lambda: plugin(vocab_size=vocab_size, **params))
    if not on_meta:
        with torch.device("meta"):  # its size first: a model larger than memory is killed, not refused
            check_fits_memory(plugin(vocab_size=vocab_size, **params), cfg.model)
    with torch.device("meta") if on_meta else contextlib.nullcontext():
        built = plugin(vocab_size=vocab_size, **params)
    if init_from and not on_meta:
        from lightning_llm.checkpoint import init_from as load_matching_weights

        loaded, new, skipped = load_matching_weights(built, init_from)
        log.info("%s: loaded %d tensors; new: %s; skipped: %s", init_from, len(loaded), new, skipped)
        _warn_other_data_settings(str(init_from), datamodule, skipped)
    if (lora := config.lora_settings(cfg.model)).rank:
        _adapt(built, lora)
    millions = sum(p.numel() for p in built.parameters()) / 1e6
    where = " (on the meta device: its shards come from rank 0)" if on_meta else ""
    log.info("model: %s, %.2fM parameters%s", cfg.model.name, millions, where)
    return built


def check_model_fits(cfg: DictConfig, vocab_size: int) -> None:
    """``check_fits_memory`` for ``cfg``'s model as configured, before any work (the data may still fill
    in settings: a model that cannot be built without them is left to the run)."""
    plugin, params = config.plugin_params("model", cfg.model)
    try:
        with torch.device("meta"):
            built = plugin(vocab_size=vocab_size, **params)
    except RuntimeError as error:  # torch: a tensor of more elements than it can count
        if "overflow" in str(error):
            raise ConfigError(
                _too_big(cfg.model, "has more elements in a tensor than torch can address")
            ) from None
        return
    except Exception:  # noqa: BLE001 - whatever a plugin raises without its data's settings
        return
    check_fits_memory(built, cfg.model)


def _too_big(node: Any, what: str) -> str:
    """The refusal of a model too large to build: what is too big, and the settings that size it."""
    sizes = ", ".join(
        f"model.{key}={node[key]}" for key in ("n_layer", "n_embd", "block_size") if key in node
    )
    return f"model={node.name}: {what}; make it smaller ({sizes})"


def check_fits_memory(model: torch.nn.Module, node: Any, available: int | None = None) -> None:
    """Refuse a model (built on the meta device) whose weights alone take more than this machine's free
    memory and swap (``available``; read from ``/proc/meminfo`` where there is one): building it would
    get the process killed without a word. Gradients and optimizer state need more again, so passing
    this is no promise; failing it is certain."""
    available = _available_memory() if available is None else available
    needed = sum(t.numel() * t.element_size() for t in [*model.parameters(), *model.buffers()])  # tied: once
    if available is not None and needed > available:
        count = sum(p.numel() for p in model.parameters())
        raise ConfigError(
            _too_big(
                node,
                f"its {count / 1e9:.3g}B parameters and its buffers (tables that grow with block_size) take "
                f"{needed / 2**30:,.1f} GiB to build, more than the {available / 2**30:,.1f} GiB of memory "
                "this machine has free",
            )
        )


def _available_memory() -> int | None:
    """Bytes of memory and swap free for a new allocation (Linux's MemAvailable + SwapFree), or None."""
    try:
        with open("/proc/meminfo", encoding="ascii") as file:
            fields = dict(line.split(":", 1) for line in file if ":" in line)
        return sum(int(fields[key].split()[0]) * 1024 for key in ("MemAvailable", "SwapFree"))
    except (OSError, KeyError, ValueError, IndexError):
        return None


def _warn_other_data_settings(init_from: str, datamodule: Any, skipped: list[str]) -> None:
    """Fine-tuning from a run whose data decided otherwise (a classifier of other labels): its head is
    loaded, but class i meant another label; said, since starting from it is a choice, not an error. A head
    of another size (``skipped``: not loaded) starts new instead, and is said to."""
    from lightning_llm.checkpoint import stored_data_settings

    given = data_settings_of(datamodule)
    stored = stored_data_settings(init_from) if given else None
    for key, value in given.items():
        if not isinstance(stored, dict) or key not in stored or stored[key] == value:
            continue
        if skipped:
            log.warning(
                "model.init_from=%s was trained with %s %s, this data has %s: its %s, of another size, "
                "start new; the rest is loaded",
                init_from,
                key,
                stored[key],
                value,
                ", ".join(skipped),
            )
        else:
            log.warning(
                "model.init_from=%s was trained with %s %s, this data has %s: its weights are loaded, but "
                "class i meant another label there",
                init_from,
                key,
                stored[key],
                value,
            )


def _check_source_config(init_from: str, build: Callable[[], Any]) -> None:
    """A run's or .ckpt's stored model config, checked against its stored weights before the model takes
    memory (``checkpoint.check_stored_checkpoint``), as is a Hugging Face folder's config.json
    (``huggingface.check_fits_weights``)."""
    from lightning_llm import huggingface
    from lightning_llm.checkpoint import check_stored_checkpoint, find_checkpoint

    if huggingface.is_hf_folder(init_from):
        huggingface.check_fits_weights(Path(init_from).expanduser(), build)
    else:
        check_stored_checkpoint(find_checkpoint(init_from), build)


def _adapt(model: Any, lora: config.LoraSettings) -> None:
    """LoRA: adapters on the targeted layers; they and the model's task heads (``task_heads``: a classifier
    the fine-tuning adds) train, everything else is frozen. The same on every process (FSDP needs it).
    ``config.check_lora`` has made sure there is a trained model under them (``model.init_from``)."""
    from lightning_llm.models.lora import apply_lora

    adapted = apply_lora(model, lora)
    heads = tuple(getattr(model, "task_heads", ()))
    for name, parameter in model.named_parameters():
        if name.split(".", 1)[0] in heads:
            parameter.requires_grad_(True)
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    total = sum(p.numel() for p in model.parameters())
    log.info(
        "LoRA rank %d on %d linear layers (%s): %d of %d parameters train (%.2f%%)",
        lora.rank,
        len(adapted),
        ", ".join(lora.targets),
        trainable,
        total,
        100 * trainable / total,
    )


def check_compatible(cfg: DictConfig, model: Any) -> None:
    """Refuse an objective the built model does not support, or sequences longer than its positions."""
    # Again on the built model: a factory without a return annotation is only known once it has run.
    config.check_objective(cfg.model.name, cfg.objective.name, tuple(getattr(model, "objectives", ())))
    max_len = getattr(getattr(model, "config", None), "block_size", None)
    seq_len = cfg.data.get("block_size")
    if max_len is not None and seq_len is not None and seq_len > max_len:
        fix = (
            "lower data.block_size (the model of model.init_from has no more positions)"
            if config.framework_params("model", cfg.model)["init_from"]
            else "lower data.block_size or raise model.block_size"
        )
        raise ConfigError(
            f"data.block_size={seq_len} is longer than model.block_size={max_len} (the model's positions); "
            + fix
        )


def language_module(
    cfg: DictConfig,
    model: Any,
    objective: Any,
    tokenizer: Tokenizer,
    plan: ParallelPlan,
    data_settings: dict[str, Any] | None = None,
) -> LanguageModule:
    """The LightningModule: objective, metrics, optimizer and schedule, and what a checkpoint must carry
    (``data_settings``: what the data decided that the model relies on, ``data_settings_of``)."""
    return LanguageModule(
        model,
        objective,
        optim=_spec(cfg, "optim"),
        scheduler=_spec(cfg, "scheduler"),
        metrics=metrics(cfg),
        checkpoint_extras={
            "config": OmegaConf.to_container(cfg, resolve=True),
            "tokenizer_fingerprint": tokenizer.fingerprint(),
            "overrides": _launch_overrides(),
            **({"data_settings": data_settings} if data_settings else {}),
        },
        parallel=plan,
        save_trainable_only=config.lora_settings(cfg.model).adapters_only,
    )


def _launch_overrides() -> list[str] | None:
    """The command-line overrides of this launch (Hydra's), which a resumed launch starts from
    (``cli.resume_overrides``); None outside a Hydra run."""
    from hydra.core.hydra_config import HydraConfig

    return list(HydraConfig.get().overrides.task) if HydraConfig.initialized() else None


def data_settings_of(datamodule: Any) -> dict[str, Any]:
    """What the data decided that a model trained on it relies on beyond its shape (a classifier's label
    order): the data module's optional ``data_settings()``, stored in checkpoints and checked by evaluate and
    resume."""
    return dict(getattr(datamodule, "data_settings", dict)())


def metrics(cfg: DictConfig) -> dict[str, Any]:
    """The metrics ``cfg.metrics`` names, built: name -> torchmetrics Metric. A metric's ``num_classes``
    left unset is the model's (what the data decided: ``model``)."""
    nodes = enumerate(config.metric_nodes(cfg))
    built = [config.plugin_params("metric", node, key=f"metrics[{i}]") for i, node in nodes]
    for _, kwargs in built:
        if "num_classes" in kwargs and kwargs["num_classes"] is None:
            kwargs["num_classes"] = cfg.model.get("num_classes") or None
    return {plugin.name: plugin(**kwargs) for plugin, kwargs in built}


def callbacks(cfg: DictConfig) -> list[Any]:
    """The Lightning callbacks ``cfg.callbacks.extra`` names, built."""
    nodes = enumerate(config.callback_nodes(cfg))
    built = [config.plugin_params("callback", node, key=f"callbacks.extra[{i}]") for i, node in nodes]
    return [plugin(**kwargs) for plugin, kwargs in built]


def _spec(cfg: DictConfig, kind: str) -> dict[str, Any]:
    plugin, params = config.plugin_params(kind, cfg[kind])
    return {"name": plugin.name, **params, **config.framework_params(kind, cfg[kind])}


def _roles_needed(folder: Path, cfg: DictConfig) -> tuple[str, ...] | None:
    """The special-token roles a fine-tuning from a Hugging Face folder adds where its tokenizer lacks them:
    those of the architecture's own objective when the run keeps it (none for GPT-2 as a causal LM, so the
    vocabulary stays the folder's), else every role (None), since another task's data may use any."""
    from lightning_llm import huggingface

    architecture, _ = huggingface.model_params(huggingface.read_hf_config(folder), folder)
    product = registry.get("model", architecture.model).product()
    same_task = getattr(product, "default_objective", None) == cfg.objective.name
    return architecture.roles if same_task else None


def _tokenizer_of_run(init_from: str, cfg: DictConfig) -> Tokenizer:
    """The tokenizer saved beside the checkpoint that ``model.init_from`` names (or in its Hugging Face
    folder)."""
    from lightning_llm import huggingface
    from lightning_llm.checkpoint import check_tokenizer, find_checkpoint, read_metadata, run_folder

    if huggingface.is_hf_folder(init_from):
        path = Path(init_from)
        roles = _roles_needed(path, cfg)
        if not huggingface.has_hf_tokenizer(path):  # tokenizer=pretrained tokenizer.path=<file>, passed
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # what it lacks is said when it is read again below
                chosen = build(cfg, "tokenizer")
            if chosen.is_trained:
                file = chosen.params.get(getattr(chosen, "file_setting", ""), None)
                if file is not None:  # with the roles the folder's own would get (load_hf_run's)
                    chosen.load(file, roles=None if roles is None else ("<eos>", *roles))
                huggingface.check_hf_tokenizer(path, chosen)
                log.info("tokenizer: %s (model.init_from=%s has none)", chosen, init_from)
                return chosen
        tokenizer = huggingface.load_hf_tokenizer(path, roles)
        huggingface.check_hf_tokenizer(path, tokenizer)  # as load_hf_run does
    else:
        checkpoint = find_checkpoint(init_from)
        path = run_folder(checkpoint) / "tokenizer.json"
        if not path.is_file():
            raise FileNotFoundError(
                f"model.init_from={init_from}: its run folder has no tokenizer.json ({path})"
            )
        tokenizer = Tokenizer.from_file(path, roles=())  # as the run saved it: no role added
        check_tokenizer(
            read_metadata(checkpoint), tokenizer.fingerprint(), checkpoint, path
        )  # the one it used
    chosen = build(cfg, "tokenizer")  # one that comes trained (a tokenizer file) must be the same one
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
