"""A plugin's signature is its config.

Each plugin's keyword parameters (names, type hints, defaults) become a dataclass that Hydra's ConfigStore
holds as ``<kind>/<name>`` (selectable as ``kind=name``) and as ``schema/<kind>/<name>`` (for YAML files in
``conf/<kind>/`` that refine a plugin: ``defaults: [/schema/<kind>/<name>@_here_, _self_]``).
``check(cfg)`` validates a composed config against those signatures before anything is built, so a typo
fails in a second with a message that names the key, the plugin and the valid choices.
"""

from __future__ import annotations

import dataclasses
import difflib
import enum
import functools
import importlib.resources
import inspect
import math
import os
import re
import types
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal, Optional

from hydra.core.config_store import ConfigStore
from omegaconf import MISSING, DictConfig, ListConfig, OmegaConf
from omegaconf.errors import OmegaConfBaseException

from lightning_llm import registry
from lightning_llm.distributed.plan import ParallelPlan, check_choices
from lightning_llm.errors import ConfigError, first_line, path_lookup_problem
from lightning_llm.ranges import check_ranges, check_switches, loose_switches
from lightning_llm.registry import Plugin

# Kinds selected through a Hydra config group of the same name; metrics are a list under `metrics`.
GROUP_KINDS = ("tokenizer", "data", "model", "objective", "optim", "scheduler")


@dataclasses.dataclass
class LoraSettings:
    """``model.lora``: LoRA adapters on the linear layers named by ``targets`` (``models/lora.py``)."""

    rank: int = 0  # the adapters' rank r; 0: no LoRA, every weight trains
    alpha: float = 16.0  # the adapters' output is scaled by alpha / rank
    dropout: float = 0.0  # dropout on the adapters' input
    # the last part of the names of the linear layers to adapt: attention (c_attn, c_proj) and MLP (c_fc)
    targets: list[str] = dataclasses.field(default_factory=lambda: ["c_attn", "c_proj", "c_fc"])
    # checkpoints hold only what trains (adapters, a task's head) and a fingerprint of the frozen base, which
    # is read again from model.init_from when one is loaded: megabytes instead of the whole model
    adapters_only: bool = False


def lora_settings(node: Any) -> LoraSettings:
    """``model.lora`` of a config node or a run's config (absent: off)."""
    value = node.get("lora") if node is not None else None
    if value is None:
        return LoraSettings()
    return LoraSettings(**(OmegaConf.to_container(value) if OmegaConf.is_config(value) else dict(value)))


# Parameters the framework adds to every plugin of a kind; train() handles them, the plugin never sees them.
FRAMEWORK_PARAMS: dict[str, dict[str, tuple[Any, Any]]] = {
    # fine-tuning: a checkpoint or run folder whose matching weights initialise the new model
    "model": {
        "init_from": (Optional[str], None),  # noqa: UP045 - OmegaConf needs typing.Optional
        "lora": (LoraSettings, LoraSettings()),  # parameter-efficient fine-tuning (models/lora.py)
    },
    # whether embedding tables are weight-decayed with the other matrices (lightning_llm.optim.param_groups)
    "optim": {"decay_embeddings": (bool, True)},
    # how much train-split text a tokenizer is trained on, spread over the corpus (lightning_llm.parts)
    "tokenizer": {"train_max_chars": (int, 100_000_000)},
}
_SCALARS = (int, float, bool, str)


@functools.cache
def config_dir() -> str:
    """Where ``conf/`` is: inside the installed wheel, or at the top of a source checkout."""
    package = Path(__file__).resolve().parent
    for candidate in (package / "conf", package.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return str(candidate)
    raise FileNotFoundError(
        f"lightning_llm's conf/ folder is missing (looked in {package} and {package.parent})"
    )


# --------------------------------------------------------------------------- signature -> dataclass


def schema(plugin: Plugin) -> type:
    """A dataclass with a ``name`` field plus one typed field per configurable parameter."""
    fields: list[tuple[str, Any, Any]] = [("name", str, dataclasses.field(default=plugin.name))]
    for param in plugin.parameters():
        default = MISSING if param.default is inspect.Parameter.empty else param.default
        if isinstance(default, tuple | list):
            default = dataclasses.field(default_factory=lambda d=default: list(d))
        elif isinstance(default, dict):
            default = dataclasses.field(default_factory=lambda d=default: dict(d))
        else:
            default = dataclasses.field(default=default)
        fields.append((param.name, _hydra_type(param.annotation), default))
    for name, (hydra_type, default) in FRAMEWORK_PARAMS.get(plugin.kind, {}).items():
        if dataclasses.is_dataclass(default):
            fields.append((name, hydra_type, dataclasses.field(default_factory=type(default))))
        else:
            fields.append((name, hydra_type, dataclasses.field(default=default)))
    return dataclasses.make_dataclass(f"{plugin.kind}_{plugin.name}", fields)


def store_schemas(store: ConfigStore | None = None) -> None:
    """Put every registered plugin's node (and the typed ``parallel`` node) into Hydra's ConfigStore."""
    store = store or ConfigStore.instance()
    store.store(group="parallel", name="default", node=loose_switches(ParallelPlan))
    conf = Path(config_dir())
    for plugin in registry.plugins():
        node = loose_switches(schema(plugin))  # its switches checked by plugin_params, as written
        refined = (conf / plugin.kind / f"{plugin.name}.yaml").is_file()  # it extends the schema node itself
        if plugin.kind in GROUP_KINDS and not refined:
            defaults = packaged_defaults(plugin)
            group_node = OmegaConf.merge(OmegaConf.structured(node), defaults) if defaults else node
            store.store(group=plugin.kind, name=plugin.name, node=group_node, provider=plugin.source)
        store.store(group=f"schema/{plugin.kind}", name=plugin.name, node=node, provider=plugin.source)


def packaged_defaults(plugin: registry.Plugin) -> DictConfig | None:
    """A plugin package's own YAML defaults: ``<its top-level package>/conf/<kind>/<name>.yaml``, if shipped.

    They refine the signature's node exactly as ``conf/<kind>/<name>.yaml`` does for a built-in (typed and
    checked against the signature, since they are merged into its structured node).
    """
    package = getattr(plugin.target, "__module__", "").split(".")[0]
    if not package or package == "lightning_llm":
        return None
    try:
        path = importlib.resources.files(package) / "conf" / plugin.kind / f"{plugin.name}.yaml"
    except (ModuleNotFoundError, TypeError):
        return None
    if not path.is_file():
        return None
    return OmegaConf.create(path.read_text(encoding="utf-8"))


def _hydra_type(annotation: Any) -> Any:
    """The closest type OmegaConf can enforce; Literal choices are checked by ``check``."""
    if annotation in _SCALARS or (inspect.isclass(annotation) and issubclass(annotation, enum.Enum)):
        return annotation  # OmegaConf checks an Enum's names and hands the plugin the member
    origin, args = typing.get_origin(annotation), typing.get_args(annotation)
    if origin is Literal:
        return type(args[0]) if args and all(type(a) is type(args[0]) for a in args) else Any
    if origin in (typing.Union, types.UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1 and len(args) == 2:
            inner = _hydra_type(rest[0])
            return Any if inner is Any else Optional[inner]  # noqa: UP045 - OmegaConf needs typing.Optional
        return Any
    if origin in (list, tuple, typing.List, typing.Tuple) and args:  # noqa: UP006
        item = args[0]
        return list[item] if item in _SCALARS else list[Any]
    return Any


def _tuple_length(annotation: Any) -> int | None:
    """How many items a fixed-length tuple annotation (``tuple[float, float]``, optional or not) takes; None
    for any other (a list, ``tuple[int, ...]``): OmegaConf holds a tuple as a list of any length."""
    for candidate in (annotation, *typing.get_args(annotation)):
        args = typing.get_args(candidate)
        if typing.get_origin(candidate) is tuple and args and Ellipsis not in args:
            return len(args)
    return None


def _literal_choices(annotation: Any) -> tuple | None:
    if typing.get_origin(annotation) is Literal:
        return typing.get_args(annotation)
    for arg in typing.get_args(annotation):
        if typing.get_origin(arg) is Literal:
            return typing.get_args(arg)
    return None


# --------------------------------------------------------------------------- checking a composed config


def plugin_params(
    kind: str, node: Any, key: str | None = None, together: bool = True
) -> tuple[Plugin, dict[str, Any]]:
    """Validate one plugin node (``{name: ..., **params}`` or a bare name) and return the plugin and its
    typed keyword arguments (framework parameters such as ``model.init_from`` left out: see
    ``framework_params``). ``key`` is the config path used in messages (default: the kind)."""
    key = key or kind
    if isinstance(node, str):
        node = {"name": node}
    if not isinstance(node, dict | DictConfig) or not node.get("name"):
        raise ConfigError(f"{key}: no {kind} selected; choose one of: {', '.join(registry.names(kind))}")
    plugin = registry.get(kind, str(node["name"]))
    refuse_code_paths(node, key)
    try:
        params = OmegaConf.to_container(node, resolve=True) if isinstance(node, DictConfig) else dict(node)
    except OmegaConfBaseException as error:  # its msg goes on with full_key and object_type lines
        where = getattr(error, "full_key", None) or key
        raise ConfigError(f"{where}: {first_line(error)}") from None
    params.pop("name")
    valid = [p.name for p in plugin.parameters()] + list(FRAMEWORK_PARAMS.get(kind, {}))
    for name in params:
        if name not in valid:
            raise ConfigError(unknown_key_message(f"{key}.{name}", plugin, valid))
    typed_node = schema(plugin)
    check_switches(typed_node, params, key)
    # a listed plugin's (metric, callback) packaged defaults: a group's are in its config node already
    defaults = packaged_defaults(plugin) if kind not in GROUP_KINDS else None
    try:
        typed = OmegaConf.merge(OmegaConf.structured(typed_node), defaults or {}, params)
    except OmegaConfBaseException as error:
        raise ConfigError(bad_value_message(key, plugin, error)) from None
    kwargs = OmegaConf.to_container(typed, resolve=True)
    kwargs.pop("name")
    for name in FRAMEWORK_PARAMS.get(kind, {}):
        kwargs.pop(name)
    for param in plugin.parameters():
        value = kwargs.get(param.name)
        if OmegaConf.is_missing(typed, param.name):
            raise ConfigError(f"{key}.{param.name} is required by {kind} '{plugin.name}'")
        if isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{key}.{param.name}={value}: {kind} '{plugin.name}' needs a finite number")
        length = _tuple_length(param.annotation)
        if length is not None and isinstance(value, list) and len(value) != length:
            raise ConfigError(
                f"{key}.{param.name}={value}: {kind} '{plugin.name}' takes {length} values, got {len(value)}"
            )
        choices = _literal_choices(param.annotation)
        if choices and value not in choices and value is not None:
            raise ConfigError(
                f"{key}.{param.name}={value!r} is not valid for {kind} '{plugin.name}'; "
                f"choose one of: {', '.join(map(str, choices))}"
            )
    if together:
        _check_config_class(plugin, kwargs)
    return plugin, kwargs


def _check_config_class(plugin: Plugin, kwargs: dict[str, Any]) -> None:
    """Run the checks of a plugin's config dataclass (its ``__post_init__``) on the config alone, before any
    work: a model shape that cannot work fails at composition, not after the tokenizer has trained. A field
    the framework supplies (a model's ``vocab_size``) gets a stand-in as large as an id can be, so a check
    against it (a token id in the vocabulary) waits for the real value, at the build."""
    config_class = plugin.config_class()
    if config_class is None:
        return
    supplied = {
        field.name: 2**31 - 1
        for field in dataclasses.fields(config_class)
        if field.name in registry.CONTRACTS[plugin.kind].supplied
    }
    try:
        config_class(**kwargs, **supplied)
    except (TypeError, ValueError) as error:
        raise ConfigError(str(error)) from None


def framework_params(kind: str, node: Any) -> dict[str, Any]:
    """The values of ``FRAMEWORK_PARAMS[kind]`` in a plugin node (defaults where unset)."""
    defaults = FRAMEWORK_PARAMS.get(kind, {})
    return {name: node.get(name, default) for name, (_, default) in defaults.items()}


# Top-level settings the framework reads in every run (conf/config.yaml and its groups give them); removed
# (~seed) or null they were a traceback, some after a whole run had trained.
REQUIRED = ("seed", "eval", "logger", "trainer", "callbacks", "parallel", "paths", "task_name")


def check(cfg: DictConfig, together: bool = True) -> None:
    """Validate every plugin selection and parameter, the metrics list and the trainer arguments."""
    for key in REQUIRED:
        try:
            value = cfg.get(key)
        except OmegaConfBaseException:  # a value that does not resolve: refused below, naming the key
            continue
        if value is None:
            raise ConfigError(
                f"{key}: removed or null, but every run reads it; set it (conf/ gives a default) instead"
            )
    for kind in GROUP_KINDS:
        if kind not in cfg:
            raise ConfigError(
                f"the config has no '{kind}' section; valid {kind} names: {registry.names(kind)}"
            )
        plugin_params(kind, cfg[kind], together=together)
    seen: set[str] = set()
    for index, node in enumerate(metric_nodes(cfg)):
        plugin, _ = plugin_params("metric", node, key=f"metrics[{index}]")
        if plugin.name in seen:  # one value per name is logged: the second would replace the first
            raise ConfigError(f"metrics[{index}]: {plugin.name} is listed twice; list each metric once")
        seen.add(plugin.name)
    sharded = (cfg.get("trainer") or {}).get("strategy") == "fsdp"
    for index, node in enumerate(callback_nodes(cfg)):
        plugin, _ = plugin_params("callback", node, key=f"callbacks.extra[{index}]")
        if sharded and getattr(plugin.target, "whole_model", False):
            raise ConfigError(
                f"callbacks.extra[{index}]: the {plugin.name} keeps a whole copy of the model, which "
                f"trainer.strategy=fsdp shards; use ddp, or leave the {plugin.name} out"
            )
    try:
        check_objective(cfg.model.name, cfg.objective.name)
    except ConfigError as error:
        if init_from := cfg.model.get("init_from"):  # the model is the source's, whatever model= said
            raise ConfigError(
                f"{error}; model={cfg.model.name} is what model.init_from={init_from} holds"
            ) from None
        raise
    check_trainer_args(cfg.get("trainer", {}))
    refuse_code_paths(cfg, "")
    check_ranges(cfg)
    check_path_settings(cfg)
    check_choices(_container(cfg, "trainer"), _container(cfg, "parallel"))
    check_eval(cfg.get("eval"))
    check_lora(cfg.get("model") or {}, (cfg.get("trainer") or {}).get("strategy"))
    check_warmup(cfg.get("scheduler") or {}, (cfg.get("trainer") or {}).get("max_steps"))
    check_block_sizes(cfg.get("model") or {}, cfg.get("data") or {})
    check_logger(cfg.get("logger") or {})


def check_switch_settings(cfg: DictConfig) -> None:
    """The true/false settings of the plugins and the parallel plan alone, as written (what ``--cfg job``
    checks before it prints a config; ``check`` checks them with everything else)."""
    for kind in GROUP_KINDS:
        name = OmegaConf.select(cfg, f"{kind}.name", default=None, throw_on_resolution_failure=False)
        if isinstance(name, str) and name in registry.names(kind):
            check_switches(schema(registry.get(kind, name)), _container(cfg, kind), kind)
    check_switches(ParallelPlan, _container(cfg, "parallel"), "parallel")


_WANDB_MODES = ("online", "offline", "disabled", "dryrun", "run", "shared")


LOGGERS = ("wandb", "csv", "tensorboard", "none")


def check_logger(logger: Any) -> None:
    """The logger's name, and the W&B settings wandb.init would refuse with a traceback once the run folder is
    made: the project's characters and length, tags of at most 64 characters, and the WANDB_MODE variable."""
    name = logger.get("name", "none")
    if name not in LOGGERS:
        raise ConfigError(f"logger.name={name!r} is not a logger; choose one of: {', '.join(LOGGERS)}")
    if name != "wandb":
        return
    project = logger.get("project")
    if project is not None and (
        not isinstance(project, str) or not 0 < len(project) <= 128 or set(project) & set("/\\#?%:")
    ):
        raise ConfigError(
            f"logger.project={project!r}: a W&B project name has 1 to 128 characters, none of / \\ # ? % :"
        )
    for tag in logger.get("tags") or []:
        if not isinstance(tag, str) or not 0 < len(tag) <= 64:
            raise ConfigError(f"logger.tags: {tag!r} is not a W&B tag (a string of 1 to 64 characters)")
    mode = os.environ.get("WANDB_MODE")
    if mode is not None and mode not in _WANDB_MODES:
        raise ConfigError(f"WANDB_MODE={mode!r} (environment): W&B takes one of {', '.join(_WANDB_MODES)}")


def check_block_sizes(model: Any, data: Any) -> None:
    """Sequences no longer than the model's positions, when the config says both (a model from
    ``model.init_from`` has its checkpoint's, checked once it is read: ``parts.check_compatible``)."""
    positions, length = model.get("block_size"), data.get("block_size")
    if model.get("init_from") or not all(isinstance(v, int) for v in (positions, length)):
        return
    if length > positions:
        raise ConfigError(
            f"data.block_size={length} is longer than model.block_size={positions} (the model's positions); "
            "lower data.block_size or raise model.block_size"
        )


def check_warmup(scheduler: Any, max_steps: object) -> None:
    """The scheduler's warmup against the run's length, before any work (the scheduler checks again with
    the exact count of optimizer steps once the Trainer knows it)."""
    steps, fraction = scheduler.get("warmup_steps"), scheduler.get("warmup_fraction")
    if steps is not None and fraction is not None:
        raise ConfigError(
            f"scheduler.warmup_steps={steps} and scheduler.warmup_fraction={fraction} are both set (a preset "
            "may set one of them); give one, the other null: e.g. scheduler.warmup_fraction=null"
        )
    if fraction is not None and (
        isinstance(fraction, bool) or not isinstance(fraction, (int, float)) or not 0 <= fraction <= 1
    ):
        raise ConfigError(f"scheduler.warmup_fraction must be a number in [0, 1], got {fraction!r}")
    if steps is not None and (isinstance(steps, bool) or not isinstance(steps, int) or steps < 0):
        raise ConfigError(f"scheduler.warmup_steps must be an integer >= 0, got {steps!r}")
    if isinstance(steps, int) and isinstance(max_steps, int) and 0 < max_steps < steps:
        raise ConfigError(
            f"scheduler.warmup_steps={steps} is longer than the run (trainer.max_steps={max_steps}); lower "
            "it, or give the warmup as a share of the run with scheduler.warmup_fraction (e.g. 0.1)"
        )


def check_lora(model: Any, strategy: object = None) -> None:
    """``model.lora``: adapters need layers to adapt and a trained model to adapt (``model.init_from``)."""
    lora = lora_settings(model)
    if lora.rank and not lora.targets:
        raise ConfigError(
            "model.lora.targets is empty: name the linear layers to adapt, e.g. [c_attn, c_proj]"
        )
    if lora.adapters_only and strategy == "fsdp":
        raise ConfigError(
            "model.lora.adapters_only is not supported with trainer.strategy=fsdp (its sharded checkpoints "
            "are not written adapters-only yet); leave it false, the adapters are still what trains"
        )
    if lora.adapters_only and not lora.rank:
        raise ConfigError("model.lora.adapters_only needs adapters: set model.lora.rank (e.g. 8)")
    if lora.rank and not model.get("init_from"):
        raise ConfigError(
            "model.lora.rank is set but model.init_from is not: adapters fine-tune a trained model; "
            "give model.init_from=<run, .ckpt or Hugging Face folder>, or set model.lora.rank=0"
        )


def check_eval(node: Any) -> None:
    """``eval.max_batches``: null (whole splits) or a positive number of batches."""
    if node is not None and not isinstance(node, dict | DictConfig):
        raise ConfigError(f"eval={node!r}: eval is a section; set eval.max_batches=N")
    unknown = sorted(set(node or {}) - {"max_batches"})
    if unknown:
        raise ConfigError(f"eval.{unknown[0]} is not a setting; valid: eval.max_batches")
    value = (node or {}).get("max_batches")
    if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
        raise ConfigError(f"eval.max_batches must be a positive number of batches or null, got {value!r}")


def _container(cfg: DictConfig, key: str) -> dict[str, Any]:
    node = cfg.get(key)
    return OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else dict(node or {})


def check_objective(model: str, objective: str, supported: tuple[str, ...] | None = None) -> None:
    """Each model declares the objectives it can train with (``objectives`` on its class), and an objective
    plugin the models it trains (``models`` on its class): a new objective for a built-in model says so."""
    if supported is None:
        supported = getattr(registry.get("model", model).product(), "objectives", None)
    plugin = registry.get("objective", objective)
    trains = getattr(plugin.product(), "models", ()) or ()
    if supported is not None and objective not in supported and model not in trains:
        listed = ", ".join(supported) or "none (objectives on its class)"
        how = (
            ""
            if plugin.source == "lightning_llm"
            else " (an objective plugin names the models it trains: models = (...) on its class)"
        )
        raise ConfigError(f"objective={objective} does not fit model={model}; it supports: {listed}{how}")


def metric_nodes(cfg: DictConfig) -> list[Any]:
    metrics = cfg.get("metrics") or []
    if not isinstance(metrics, list | ListConfig):
        raise ConfigError(
            f"metrics must be a list of metric names, e.g. metrics=[perplexity,accuracy]; got {metrics!r}"
        )
    return list(metrics)


def callback_nodes(cfg: DictConfig) -> list[Any]:
    """``callbacks.extra``: the callback plugins a run adds, each a name or ``{name: ..., **params}``."""
    extra = (cfg.get("callbacks") or {}).get("extra") or []
    if not isinstance(extra, list | ListConfig):
        raise ConfigError(
            "callbacks.extra must be a list of callback names, e.g. 'callbacks.extra=[ema]'; "
            f"got {extra!r} (python -m lightning_llm.plugins callback lists them)"
        )
    return list(extra)


# Trainer arguments the framework passes itself (trainer.build): what to set instead.
FRAMEWORK_TRAINER_ARGS = {
    "logger": "choose loggers with logger=<name>",
    "callbacks": "add callbacks with callbacks.extra=[<name>]",
    "plugins": "its plugins follow trainer.precision and parallel.*",
    "default_root_dir": "the run folder is hydra.run.dir",
    "use_distributed_sampler": "the data modules split the batches over processes themselves",
    "enable_checkpointing": (
        "checkpoints follow callbacks.checkpoint (save_top_k=0 and save_last=false: none)"
    ),
    "barebones": (
        "it turns off the logging, checkpoints and callbacks a run is made of; logger=none drops logs"
    ),
    "fast_dev_run": "for a quick run through the whole pipeline use debug=fast, or trainer.max_steps=<n>",
}


def check_trainer_args(trainer: Any) -> None:
    import lightning  # deferred: importing Lightning costs about a second of CLI start-up

    valid = [p for p in inspect.signature(lightning.Trainer.__init__).parameters if p != "self"]
    for key in trainer or {}:
        if key in FRAMEWORK_TRAINER_ARGS:
            raise ConfigError(f"trainer.{key} is set by lightning_llm itself; {FRAMEWORK_TRAINER_ARGS[key]}")
        if key not in valid:
            hint = difflib.get_close_matches(key, valid, n=1)
            raise ConfigError(
                f"trainer.{key} is not a lightning.Trainer argument"
                + (f" (did you mean 'trainer.{hint[0]}'?)" if hint else "")
            )


def refuse_code_paths(node: Any, where: str) -> None:
    """Configs pick code by registry name only; an import path arriving in a config is refused."""
    plain = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node
    for key in _walk(plain, where):
        if key.rsplit(".", 1)[-1] in ("_target_", "_partial_", "_args_"):
            raise ConfigError(
                f"{key}: configs select code by registry name only (e.g. optim=adamw); "
                "`_target_` and import paths are refused"
            )


def check_path_settings(cfg: DictConfig) -> None:
    """Each path a setting names (a key ``path``, ``paths``, ``init_from`` or ending in ``_path``,
    ``_paths``, ``_dir``, ``_file``, in any section but hydra's) can at least be looked up on this machine: a
    ``~`` of a user it does not have, a name over the file system's limit or a folder on the way that cannot
    be entered would otherwise be a traceback from whichever part reads it first. Whether it exists is left
    to that part, which says what it expected there."""
    for section in cfg:
        if section == "hydra":
            continue
        node = cfg[section]  # resolved in place: an interpolation may name another section
        plain = {section: OmegaConf.to_container(node, resolve=True) if OmegaConf.is_config(node) else node}
        for key, value in _path_values(plain, ""):
            if not value.strip() and key.endswith("_dir"):
                raise ConfigError(
                    f"{key}={value!r}: an empty folder name means the current folder; name one (an "
                    "environment variable set to nothing, such as LIGHTNING_LLM_CACHE=, gives this)"
                )
            if value and (problem := path_lookup_problem(value)):
                raise ConfigError(f"{key}={value}: {problem}")


_PATH_KEY = re.compile(r"(?:^|_)(?:path|paths|dir|file)$|^init_from$")


def _path_values(node: Any, where: str) -> Iterator[tuple[str, str]]:
    """(key, string) for each string under a path-like key (``_PATH_KEY``) of a plain nested dict/list."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            if isinstance(value, dict):  # a section (the top-level paths: too) is walked, whatever its name
                yield from _path_values(value, path)
            elif _PATH_KEY.search(str(key)):
                items = value if isinstance(value, list) else [value]
                yield from ((path, item) for item in items if isinstance(item, str))
            elif isinstance(value, list):
                yield from _path_values(value, path)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _path_values(value, f"{where}[{index}]")


def unknown_key_message(key: str, plugin: Plugin, valid: list[str]) -> str:
    bad = key.rsplit(".", 1)[-1]
    hint = difflib.get_close_matches(bad, valid, n=1)
    return (
        f"{key}: {plugin.kind} '{plugin.name}' has no parameter '{bad}'"
        + (f" (did you mean '{hint[0]}'?)" if hint else "")
        + f"; its parameters: {', '.join(valid) or '(none)'}"
    )


def bad_value_message(key: str, plugin: Plugin, error: OmegaConfBaseException) -> str:
    """``optim.betas[0]='a' is not a valid float for optim 'adamw'``: the value's whole key (a list's item, a
    nested framework setting such as ``model.lora.targets``) and the type its parameter declares."""
    path = str(getattr(error, "full_key", "") or getattr(error, "key", None) or "?")
    path = path.removeprefix(f"{key}.")  # OmegaConf names it from the plugin node's root, or from its own
    value = getattr(error, "value", None)
    shown = f"={value!r}" if value is not None else ""
    expected = _declared_type(plugin, path)
    return f"{key}.{path}{shown} is not a valid {expected} for {plugin.kind} '{plugin.name}'"


def _declared_type(plugin: Plugin, path: str) -> str:
    """The type the parameter at ``path`` (``betas[0]``, ``lora.targets``) is declared with, as written."""
    parts = path.replace("[", ".[").split(".")
    annotations = {p.name: p.annotation for p in plugin.parameters()}
    framework = FRAMEWORK_PARAMS.get(plugin.kind, {})
    annotations |= {name: hydra_type for name, (hydra_type, _) in framework.items()}
    annotation = annotations.get(parts[0])
    if dataclasses.is_dataclass(annotation) and len(parts) > 1:  # a framework section: its field's type
        fields = {field.name: field.type for field in dataclasses.fields(annotation)}
        annotation = fields.get(parts[1])
    return _type_name(annotation) if annotation is not None else "value"


def _type_name(annotation: Any) -> str:
    """``int``, ``list[str]``, ``Optional[float]``: as the annotation was written (a generic's __name__ would
    drop its arguments)."""
    if typing.get_args(annotation):
        return str(annotation).replace("typing.", "")
    return getattr(annotation, "__name__", None) or str(annotation).replace("typing.", "")


def _walk(node: Any, where: str) -> Iterator[str]:
    """Every key path in a plain nested dict/list."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}" if where else str(key)
            yield path
            yield from _walk(value, path)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _walk(value, f"{where}[{index}]")
