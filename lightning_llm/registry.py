"""The plugin registry: every swappable part of a run is a named plugin of one *kind*.

A kind is also the Hydra config group that selects it (``optim=adamw`` picks the ``adamw`` plugin of kind
``optim``). Built-ins register exactly as third-party packages do, with ``@register(kind, name)``. The
framework calls a plugin with the arguments it supplies (``CONTRACTS[kind].supplied``, passed by keyword)
plus the plugin's own parameters from the config, which ``lightning_llm.config`` turns into a typed Hydra
node. A plugin's parameters are declared once, in one of three ways:

- a function or class whose keyword parameters are the parameters (``def adamw(params, lr: float = 1e-3)``);
- a class (or function) taking one dataclass, the way a model takes its config (``GPT(config: GPTConfig)``):
  the dataclass's fields are the parameters, a supplied argument that is a field (``vocab_size``) goes into
  the dataclass, the others are passed beside it;
- a dataclass itself, with a ``build(**supplied)`` method that makes the product (the data plugins: the
  dataclass of settings builds its ``LightningDataModule``).
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import inspect
import re
import typing
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

__all__ = [
    "CONTRACTS",
    "KINDS",
    "Contract",
    "Plugin",
    "PluginError",
    "build",
    "get",
    "names",
    "plugins",
    "register",
]


@dataclass(frozen=True)
class Contract:
    """What the framework passes to a plugin of one kind, and what it must return."""

    supplied: tuple[str, ...]  # keyword arguments the framework provides; never part of the config
    returns: str
    # "module:Class" every product must be an instance of (imported at the first check: registering plugins
    # imports neither torch nor Lightning), or "*.method" for one it must have
    product: str

    def check(self, plugin: Plugin, product: Any) -> None:
        """Refuse what a plugin returned when it is not what its kind promises the framework, naming the
        plugin, before the framework fails on it somewhere deep and unrelated."""
        if self.product.startswith("*."):
            method = self.product[2:]
            if callable(getattr(product, method, None)):
                return
            wanted = f"an object with a {method} method"
        else:
            module, name = self.product.split(":")
            if isinstance(product, getattr(importlib.import_module(module), name)):
                return
            wanted = f"a {module}.{name}"
        raise PluginError(
            f"{plugin.kind} '{plugin.name}' [{plugin.source}] returned a {type(product).__name__}; "
            f"{plugin.kind} plugins must return {wanted}"
        )


CONTRACTS: dict[str, Contract] = {
    "tokenizer": Contract(
        (),
        "a lightning_llm.tokenizers.Tokenizer: train(texts), encode, decode, vocab_size, special ids, "
        "save(path), load(path); one that loads a tokenizer file names that parameter as file_setting",
        "lightning_llm.tokenizers.base:Tokenizer",
    ),
    "data": Contract(
        ("tokenizer", "cache_dir"),
        "a lightning.LightningDataModule with texts('train') for tokenizer training (or "
        "tokenizer_sample(max_chars): a sample of a large corpus) and batches the objective understands; "
        "optionally has_split(split), model_settings() (model parameters the data decides, filled in "
        "where the config leaves them unset) and data_settings() (what else a model trained on it relies on, "
        "such as a classifier's label order: stored in checkpoints, and data evaluating or resuming it must "
        "give the same, or take them with adopt_data_settings(stored): a test file of some of the labels)",
        "lightning.pytorch:LightningDataModule",
    ),
    "model": Contract(
        ("vocab_size",),
        "a torch.nn.Module with init_weights(), flops_per_token(seq_len), objectives, default_objective "
        "and blocks (the modules parallelism wraps)",
        "torch.nn:Module",
    ),
    "objective": Contract(
        ("tokenizer",),
        "an object with loss(model, batch) -> (summed_loss, n_target_tokens, outputs), default_data (the "
        "data plugin serving its batches), and optionally predict_text(model, batch[, outputs]) for text "
        "metrics (outputs: what loss returned for the batch) and "
        "sample_mode ('generate' or 'predict': what a run's samples.txt shows) and export_refusal (why "
        "export refuses a run trained with it, where its heads mean something no exported model keeps)",
        "*.loss",
    ),
    "optim": Contract(
        ("params",), "a torch.optim.Optimizer over the given parameter groups", "torch.optim:Optimizer"
    ),
    "scheduler": Contract(
        ("optimizer", "total_steps"),
        "a torch.optim.lr_scheduler.LRScheduler stepped once per optimizer step",
        "torch.optim.lr_scheduler:LRScheduler",
    ),
    "metric": Contract(
        (),
        "a torchmetrics.Metric updated with (outputs, labels), or with (predictions, references) as strings "
        "when its input_kind is 'text'",
        "torchmetrics:Metric",
    ),
    "callback": Contract(
        (),
        "a lightning.Callback added to the run's Trainer (listed in callbacks.extra); a factory with the "
        "attribute whole_model = True keeps a whole copy of the model and is refused under FSDP",
        "lightning.pytorch:Callback",
    ),
}
KINDS: tuple[str, ...] = tuple(CONTRACTS)


class PluginError(ValueError):
    """A plugin name, kind or parameter that does not exist; the message lists what would be valid."""


@dataclass(frozen=True)
class Plugin:
    kind: str
    name: str
    target: Callable[..., Any]
    source: str  # the package that registered it ("lightning_llm" for built-ins)

    def parameters(self) -> list[inspect.Parameter]:
        """The configurable parameters: the signature's (or the config dataclass's fields) minus what the
        framework supplies."""
        config = self.config_class()
        if config is None:
            return self._own_parameters()
        supplied = CONTRACTS[self.kind].supplied
        return [p for p in _field_parameters(config) if p.name not in supplied]

    def config_class(self) -> type | None:
        """The dataclass declaring this plugin's parameters: the target itself, or the one parameter of the
        target besides what the framework supplies, when it is annotated with a dataclass; else None."""
        if dataclasses.is_dataclass(self.target):
            return self.target
        own = self._own_parameters()
        if (
            len(own) == 1
            and isinstance(own[0].annotation, type)
            and dataclasses.is_dataclass(own[0].annotation)
        ):
            return own[0].annotation
        return None

    def product(self) -> type | None:
        """The class this plugin builds (itself, or its factory's return annotation), so that class
        attributes such as a model's ``default_objective`` can be read before anything is built; None when
        the factory imports its class only when called (its annotation is then a string)."""
        if dataclasses.is_dataclass(self.target):
            returned = _signature(self.target.build).return_annotation
        elif inspect.isclass(self.target):
            return self.target
        else:
            returned = _signature(self.target).return_annotation
        return returned if inspect.isclass(returned) else None

    def __call__(self, **kwargs: Any) -> Any:
        product = self._make(**kwargs)
        CONTRACTS[self.kind].check(self, product)
        return product

    def _make(self, **kwargs: Any) -> Any:
        config = self.config_class()
        if config is None:
            return self.target(**kwargs)
        fields = {field.name for field in dataclasses.fields(config) if field.init}
        settings = config(**{key: value for key, value in kwargs.items() if key in fields})
        others = {key: value for key, value in kwargs.items() if key not in fields}
        if config is self.target:
            return settings.build(**others)
        return self.target(**{self._own_parameters()[0].name: settings}, **others)

    def _own_parameters(self) -> list[inspect.Parameter]:
        """The target's keyword parameters that the framework does not supply."""
        supplied = CONTRACTS[self.kind].supplied
        return [
            p
            for p in _signature(self.target).parameters.values()
            if p.name not in supplied and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
        ]


_PLUGINS: dict[str, dict[str, Plugin]] = {kind: {} for kind in KINDS}
_BROKEN: dict[str, str] = {}  # package -> error, for packages whose plugins failed to import
_source: str | None = None  # the package being loaded by lightning_llm.plugins, if any


def register(kind: str, name: str | None = None, *, replace: bool = False) -> Callable:
    """Register a class or factory as plugin ``name`` (default: its ``__name__``) of ``kind``.

    A name that already exists keeps its first owner and the newcomer is ignored with a warning, unless
    ``replace=True`` says the replacement is deliberate.
    """
    _check_kind(kind)

    def decorator(target: Callable) -> Callable:
        plugin_name = name or target.__name__
        # it is a config group option, kind=name: a word YAML or Hydra reads as a value cannot be one
        if not _PLUGIN_NAME.fullmatch(str(plugin_name)) or str(plugin_name).lower() in _YAML_WORDS:
            raise PluginError(
                f"{kind} name {plugin_name!r}: a plugin name is ASCII letters, digits, '_' and '-', starting "
                "with a letter or '_', and not a YAML word (null, true, false, yes, no, on, off)"
            )
        source = _source or target.__module__.split(".")[0]
        existing = _PLUGINS[kind].get(plugin_name)
        if existing is not None and existing.target is not target and not replace:
            warnings.warn(
                f"{source} registers {kind} '{plugin_name}', which {existing.source} already provides; "
                f"keeping the one from {existing.source} (pass replace=True to override)",
                stacklevel=2,
            )
            return target
        _PLUGINS[kind][plugin_name] = Plugin(kind, plugin_name, target, source)
        return target

    return decorator


def snapshot() -> dict[str, dict[str, Plugin]]:
    """Every registration as it stands, for ``restore``."""
    return {kind: dict(named) for kind, named in _PLUGINS.items()}


def restore(saved: dict[str, dict[str, Plugin]]) -> None:
    """Put the registrations back as ``snapshot`` found them: a package that failed to load leaves nothing,
    not even the absence of a built-in it replaced (``replace=True``) before it failed."""
    for kind in KINDS:
        _PLUGINS[kind] = dict(saved[kind])


def get(kind: str, name: str) -> Plugin:
    """The plugin ``name`` of ``kind``; an unknown name raises PluginError listing the valid ones."""
    _check_kind(kind)
    try:
        return _PLUGINS[kind][name]
    except KeyError:
        raise PluginError(unknown_name_message(kind, str(name), names(kind))) from None


def names(kind: str) -> list[str]:
    _check_kind(kind)
    return sorted(_PLUGINS[kind])


def plugins(kind: str | None = None) -> list[Plugin]:
    kinds = [kind] if kind else list(KINDS)
    return [_PLUGINS[k][n] for k in kinds for n in names(k)]


def build(kind: str, name: str, /, **kwargs: Any) -> Any:
    """Call plugin ``name`` of ``kind`` with the supplied arguments and its parameters."""
    return get(kind, name)(**kwargs)


def unknown_name_message(kind: str, name: str, valid: list[str]) -> str:
    hint = difflib.get_close_matches(name, valid, n=1)
    message = f"unknown {kind} '{name}'" + (f" (did you mean '{hint[0]}'?)" if hint else "")
    message += f"; valid {kind} names: {', '.join(valid) or '(none)'}"
    if _BROKEN:
        broken = "; ".join(f"{pkg}: {err}" for pkg, err in _BROKEN.items())
        message += f". Plugin packages that failed to load: {broken}"
    return message


_PLUGIN_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_-]*")
_YAML_WORDS = frozenset(("null", "none", "true", "false", "yes", "no", "on", "off", "nan", "inf"))


def mark_broken(package: str, error: str) -> None:
    _BROKEN[package] = error


def broken() -> dict[str, str]:
    return dict(_BROKEN)


@contextmanager
def loading(source: str):
    """Attribute everything registered inside this block to the package ``source``."""
    global _source
    previous, _source = _source, source
    try:
        yield
    finally:
        _source = previous


def _check_kind(kind: str) -> None:
    if kind not in CONTRACTS:
        raise PluginError(f"unknown plugin kind '{kind}'; valid kinds: {', '.join(KINDS)}")


def _signature(target: Callable) -> inspect.Signature:
    """The signature with string annotations (``from __future__ import annotations``) evaluated.

    An annotation that cannot be evaluated stays a string: typically a factory's return type imported only
    for type checking, because its module is heavy and the factory imports it when called (the data plugins'
    LightningDataModules, the metrics' torchmetrics classes).
    """
    try:
        return inspect.signature(target, eval_str=True)
    except (NameError, TypeError, AttributeError, SyntaxError):  # e.g. torch.not_a_thing
        signature = inspect.signature(target)
    function = target.__init__ if inspect.isclass(target) else target
    namespace = getattr(inspect.unwrap(function), "__globals__", {})

    def evaluate(annotation: Any) -> Any:
        if not isinstance(annotation, str):
            return annotation
        try:
            return eval(annotation, namespace)  # what inspect.signature(eval_str=True) does, one at a time
        except (NameError, TypeError, AttributeError, SyntaxError):
            return annotation

    parameters = [p.replace(annotation=evaluate(p.annotation)) for p in signature.parameters.values()]
    return signature.replace(parameters=parameters, return_annotation=evaluate(signature.return_annotation))


def _field_parameters(config: type) -> list[inspect.Parameter]:
    """A dataclass's init fields as keyword parameters, with their evaluated types and defaults."""
    hints = typing.get_type_hints(config)
    parameters = []
    for field in dataclasses.fields(config):
        if not field.init:
            continue
        if field.default is not dataclasses.MISSING:
            default = field.default
        elif field.default_factory is not dataclasses.MISSING:
            default = field.default_factory()
        else:
            default = inspect.Parameter.empty
        kind = inspect.Parameter.KEYWORD_ONLY
        parameters.append(inspect.Parameter(field.name, kind, default=default, annotation=hints[field.name]))
    return parameters
