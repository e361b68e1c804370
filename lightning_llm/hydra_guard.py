"""What the ``hydra`` config node may name: no code chosen by a config.

Hydra instantiates ``_target_`` import paths in its own node (``hydra.callbacks``, ``hydra.launcher``,
``hydra.sweeper``) and hands ``hydra.job_logging`` / ``hydra.hydra_logging`` to ``logging.config.dictConfig``,
which calls any ``()`` factory and any ``class`` it names, and imports any ``ext://`` path. So an override or
a config file could run arbitrary code before a run starts (``+hydra.callbacks.x._target_=torch.load`` on a
crafted file). ``check_hydra_node`` allows only what installed packages ship: each launcher's and sweeper's
own targets (Hydra's plugins, selected by name as ``hydra/launcher=joblib``), Python's logging classes and
the standard streams; everything else that selects code is refused, naming the key.
"""

from __future__ import annotations

import importlib
import logging
import re
from collections.abc import Iterator
from typing import Any

from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from lightning_llm.config import ConfigError

CODE_KEYS = ("_target_", "_partial_", "_args_", "()")  # Hydra's instantiate and logging's factory key
_PLUGIN_GROUPS = ("launcher", "sweeper")  # Hydra selects these by name; their nodes carry targets
_LOGGING_NODES = ("job_logging", "hydra_logging")
_STREAMS = ("ext://sys.stdout", "ext://sys.stderr")
_LOGGING_CLASS = re.compile(r"logging(\.handlers)?\.(\w+)")
_LOGGING_BASES = (logging.Handler, logging.Formatter, logging.Filter)


def check_hydra_node(node: Any) -> None:
    """Refuse anything in the composed ``hydra`` node (a DictConfig or plain dict) that would select code,
    other than what the installed launcher and sweeper plugins ship; raises ``ConfigError`` naming the key."""
    plain = OmegaConf.to_container(node, resolve=False) if OmegaConf.is_config(node) else node
    for path, key, value in _items(plain, "hydra"):
        section = path.split(".")[1] if path.count(".") else ""
        if key in CODE_KEYS and (path, value) not in shipped_targets():
            raise ConfigError(
                f"{path}={value}: a config cannot select code; Hydra's launcher and sweeper are chosen by "
                "name (e.g. hydra/launcher=joblib) and lightning_llm's parts by registry name (optim=adamw)"
            )
        if section in _LOGGING_NODES and key == "class" and not _is_logging_class(value):
            raise ConfigError(
                f"{path}={value}: logging handlers, formatters and filters must be classes of Python's "
                "logging module (e.g. logging.StreamHandler, logging.handlers.RotatingFileHandler)"
            )
        is_ext = section in _LOGGING_NODES and isinstance(value, str) and value.startswith("ext://")
        if is_ext and value not in _STREAMS:
            raise ConfigError(f"{path}={value}: only {' and '.join(_STREAMS)} may be named with ext://")


def shipped_targets() -> frozenset[tuple[str, Any]]:
    """``(key path, value)`` of every code key in the launcher and sweeper configs that installed Hydra
    plugins register (``hydra/launcher/<name>``, ``hydra/sweeper/<name>``), e.g.
    ``("hydra.launcher._target_", "hydra_plugins.hydra_joblib_launcher.joblib_launcher.JoblibLauncher")``.
    Read afresh each time (about 2 ms): Hydra registers its plugins' configs when it first scans them."""
    store = ConfigStore.instance()
    found = set()
    for group in _PLUGIN_GROUPS:
        for name in store.list(f"hydra/{group}"):
            node = OmegaConf.to_container(store.load(f"hydra/{group}/{name}").node, resolve=False)
            found.update(
                (path, value) for path, key, value in _items(node, f"hydra.{group}") if key in CODE_KEYS
            )
    return frozenset(found)


def _is_logging_class(value: Any) -> bool:
    match = _LOGGING_CLASS.fullmatch(str(value))
    if not match:
        return False
    module = importlib.import_module("logging" + (match.group(1) or ""))
    found = getattr(module, match.group(2), None)
    return isinstance(found, type) and issubclass(found, _LOGGING_BASES)


def _items(node: Any, where: str) -> Iterator[tuple[str, str, Any]]:
    """``(key path, key, value)`` for every entry of a plain nested dict/list."""
    if isinstance(node, dict):
        for key, value in node.items():
            path = f"{where}.{key}"
            yield path, str(key), value
            yield from _items(value, path)
    elif isinstance(node, list):
        for index, value in enumerate(node):
            yield from _items(value, f"{where}[{index}]")
