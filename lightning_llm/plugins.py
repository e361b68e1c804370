"""Find plugins (the built-ins, then every ``lightning_llm.plugins`` entry point) and list them.

``python -m lightning_llm.plugins [kind [name]]`` prints every plugin by kind with its package and the
parameter values a run would use, or one plugin with what each parameter means.
"""

from __future__ import annotations

import argparse
import difflib
import importlib
import inspect
import logging
import re
import sys
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

from lightning_llm import registry
from lightning_llm.errors import ArgumentParser, ctrl_c_exits

log = logging.getLogger("lightning_llm.plugins")

ENTRY_POINT_GROUP = "lightning_llm.plugins"
BUILTIN_MODULES = (
    "lightning_llm.tokenizers",
    "lightning_llm.data.datamodule",
    "lightning_llm.models",
    "lightning_llm.objectives",
    "lightning_llm.optim",
    "lightning_llm.metrics",
    "lightning_llm.callbacks.library",
)
_loaded = False


def load() -> None:
    """Import the built-in plugins and every installed plugin package, once per process.

    A package that fails to import is reported by name with its error and skipped, so one broken plugin
    does not break runs that do not use it; selecting a name it would have provided fails with a message
    that mentions it.
    """
    global _loaded
    if _loaded:
        return
    _loaded = True
    for module in BUILTIN_MODULES:
        importlib.import_module(module)
    # by package name: which of two packages claiming one name keeps it must not depend on sys.path's order
    found = entry_points(group=ENTRY_POINT_GROUP)
    for entry_point in sorted(found, key=lambda e: (e.dist.name if e.dist else e.name, e.name)):
        package = entry_point.dist.name if entry_point.dist else entry_point.name
        saved, before, imported = registry.snapshot(), set(registry.plugins()), set(sys.modules)
        try:
            with registry.loading(package):
                entry_point.load()
            for plugin in set(registry.plugins()) - before:
                _check_declaration(plugin)
        except (Exception, SystemExit) as error:  # a third party's bug must not take the CLI down
            registry.restore(saved)  # none of the package's plugins is kept, and nothing it replaced is lost
            for name in set(sys.modules) - imported:  # what it imported is imported afresh by whoever needs
                del sys.modules[name]  # it: another package's entry point registers its plugins then
            registry.mark_broken(package, f"{type(error).__name__}: {error}")
            log.warning(
                "plugin package '%s' (entry point '%s') failed to load and is skipped: %s: %s",
                package,
                entry_point.value,
                type(error).__name__,
                error,
            )


def _check_declaration(plugin: registry.Plugin) -> None:
    """What every command does with a plugin before using it: read its parameters and make its typed config
    node. A declaration that fails here (an annotation that cannot be evaluated, a parameter the framework
    supplies, a default a config cannot hold) fails at load, naming the plugin, not in every command."""
    from omegaconf import OmegaConf

    from lightning_llm import config

    reserved = {"name", *config.FRAMEWORK_PARAMS.get(plugin.kind, {})} & {p.name for p in plugin.parameters()}
    if reserved:
        raise registry.PluginError(
            f"{plugin.kind} '{plugin.name}': parameter {', '.join(sorted(reserved))} is a name the framework "
            f"gives every {plugin.kind} node; rename it"
        )
    preset = Path(config.config_dir()) / plugin.kind / f"{plugin.name}.yaml"
    refines = f"/schema/{plugin.kind}/{plugin.name}@"  # a file refining the plugin of its name (adamw's lr)
    if plugin.kind in config.GROUP_KINDS and preset.is_file() and refines not in preset.read_text():
        raise registry.PluginError(
            f"{plugin.kind} '{plugin.name}': {plugin.kind}={plugin.name} is lightning_llm's preset "
            f"conf/{plugin.kind}/{plugin.name}.yaml, which would be chosen instead of this plugin; rename it"
        )
    where = "its parameters"
    try:
        node = OmegaConf.structured(config.schema(plugin))
        where = f"its packaged defaults (conf/{plugin.kind}/{plugin.name}.yaml)"
        if (defaults := config.packaged_defaults(plugin)) is not None:
            OmegaConf.merge(node, defaults)
    except Exception as error:
        reason = " ".join(str(error).splitlines()[0].split())  # OmegaConf adds full_key/object_type lines
        raise registry.PluginError(
            f"{plugin.kind} '{plugin.name}': {where}: {type(error).__name__}: {reason}"
        ) from None


def describe(plugin: registry.Plugin, values: dict[str, Any] | None = None) -> str:
    """One line per plugin: name, package and parameters with the values a run would use (``values``: the
    composed config's, where conf/ sets them) or else their defaults."""
    params = []
    for param in plugin.parameters():
        if values is not None and param.name in values:
            value = values[param.name]
            shown = "<required>" if value == "???" else repr(value)
        else:
            shown = "<required>" if param.default is inspect.Parameter.empty else repr(param.default)
        params.append(f"{param.name}={shown}")
    return f"  {plugin.name:<14} [{plugin.source}]  {' '.join(params)}"


def details(plugin: registry.Plugin, values: dict[str, Any] | None) -> str:
    """One plugin: its docstring's summary, then each parameter with the value a run would use and what
    the plugin's documentation says of it (its ``Args:`` section, or the comment beside a config field)."""
    docs = parameter_docs(plugin)
    summary = (inspect.getdoc(plugin.target) or "").split("\n\n")[0].replace("\n", " ")
    lines = [f"{plugin.kind} {plugin.name} [{plugin.source}]: {summary}"]
    for param in plugin.parameters():
        value = (values or {}).get(param.name, param.default)
        shown = "<required>" if value in ("???", inspect.Parameter.empty) else repr(value)
        lines.append(f"  {plugin.kind}.{param.name}={shown}")
        if docs.get(param.name):
            lines.append(f"      {docs[param.name]}")
    return "\n".join(lines)


def parameter_docs(plugin: registry.Plugin) -> dict[str, str]:
    """name -> description, from the ``Args:`` sections of the plugin's docstrings (Google style) and the
    comments beside its config dataclass's fields."""
    docs: dict[str, str] = {}
    target = plugin.target
    for doc in (inspect.getdoc(target), inspect.getdoc(getattr(target, "__init__", None))):
        docs.update(_args_section(doc or ""))
    config = plugin.config_class()
    for cls in reversed(config.__mro__ if config else ()):
        try:
            source = inspect.getsource(cls)
        except (OSError, TypeError):
            continue
        for name, comment in _FIELD_COMMENT.findall(source):
            docs.setdefault(name, comment.strip())
    return docs


_FIELD_COMMENT = re.compile(r"^\s+(\w+):[^#\n]*#\s*(.+)$", re.MULTILINE)


def _args_section(doc: str) -> dict[str, str]:
    """The ``Args:`` entries of a Google-style docstring, each joined onto one line."""
    docs: dict[str, str] = {}
    inside, current = False, None
    for line in doc.splitlines():
        if line.strip() == "Args:":
            inside = True
            continue
        if inside and line and not line.startswith(" "):  # the next section
            break
        match = re.match(r"^\s{4}(\w+)(?:\s*\(.*?\))?:\s*(.*)$", line) if inside else None
        if match:
            current = match.group(1)
            docs[current] = match.group(2)
        elif inside and current and line.strip():
            docs[current] += " " + line.strip()
    return docs


def run_values(kind: str, name: str, stored: bool = False) -> dict[str, Any] | None:
    """The parameters a run choosing ``kind=name`` would use: conf/'s config composed with that choice
    (None for kinds that are not config groups, the metrics). ``stored``: the plugins' config nodes are in
    Hydra's ConfigStore already (``config.store_schemas``)."""
    from lightning_llm import config  # deferred: config imports Hydra, which plain listing code need not

    if kind not in config.GROUP_KINDS:
        return None
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    if not stored:
        config.store_schemas()  # the plugins' config nodes
    with initialize_config_dir(config.config_dir(), version_base="1.3"):
        # the group's option alone (what config.yaml's choice of it composes to, its package being the
        # group): a listing composes one per plugin, and the whole config each time took ~0.3 s
        node = compose(f"{kind}/{name}")[kind]
    return {k: v for k, v in OmegaConf.to_container(node, resolve=False).items() if k != "name"}


def listing(kind: str | None = None, name: str | None = None) -> str:
    if kind is not None and kind not in registry.KINDS:
        hint = difflib.get_close_matches(kind, registry.KINDS, n=1)
        maybe = f" (did you mean '{hint[0]}'?)" if hint else ""
        valid = ", ".join(registry.KINDS)
        raise registry.PluginError(f"unknown plugin kind '{kind}'{maybe}; valid kinds: {valid}")
    if name is not None:
        valid = registry.names(kind)
        if name not in valid:
            raise registry.PluginError(registry.unknown_name_message(kind, name, valid))
        return details(registry.get(kind, name), run_values(kind, name))
    from lightning_llm import config  # deferred: config imports Hydra, which plain listing code need not

    config.store_schemas()  # once for the listing, rather than once per plugin
    lines = []
    for k in [kind] if kind else registry.KINDS:
        lines.append(f"{k}: {registry.CONTRACTS[k].returns}")
        lines.extend(describe(p, run_values(k, p.name, stored=True)) for p in registry.plugins(k))
    for package, error in registry.broken().items():
        lines.append(f"failed to load: {package}: {error}")
    return "\n".join(lines)


@ctrl_c_exits
def main(argv: list[str] | None = None) -> int:
    parser = ArgumentParser(
        prog="python -m lightning_llm.plugins",
        description="The plugins a run can choose, with the values a run would use (conf/ applied). "
        "A kind lists its plugins; a kind and a name show one plugin with what each parameter means.",
        epilog="examples:\n  python -m lightning_llm.plugins\n  python -m lightning_llm.plugins optim\n"
        "  python -m lightning_llm.plugins scheduler cosine",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("kind", nargs="?", help=f"one of: {', '.join(registry.KINDS)}")
    parser.add_argument("name", nargs="?", help="a plugin of that kind")
    args = parser.parse_args(sys.argv[1:] if argv is None else argv)
    load()
    try:
        print(listing(args.kind, args.name))
    except registry.PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
