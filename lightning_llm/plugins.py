"""Find plugins (the built-ins, then every ``lightning_llm.plugins`` entry point) and list them.

``python -m lightning_llm.plugins [kind]`` prints every plugin by kind with its package and parameters.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import warnings
from importlib.metadata import entry_points

from lightning_llm import registry
from lightning_llm.errors import ctrl_c_exits

ENTRY_POINT_GROUP = "lightning_llm.plugins"
BUILTIN_MODULES = (
    "lightning_llm.tokenizers",
    "lightning_llm.data.datamodule",
    "lightning_llm.models",
    "lightning_llm.objectives",
    "lightning_llm.optim",
    "lightning_llm.metrics",
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
    for entry_point in entry_points(group=ENTRY_POINT_GROUP):
        package = entry_point.dist.name if entry_point.dist else entry_point.name
        try:
            with registry.loading(package):
                entry_point.load()
        except Exception as error:  # a third party's bug must not take the CLI down
            registry.mark_broken(package, f"{type(error).__name__}: {error}")
            warnings.warn(
                f"plugin package '{package}' (entry point '{entry_point.value}') failed to load and is "
                f"skipped: {type(error).__name__}: {error}",
                stacklevel=2,
            )


def describe(plugin: registry.Plugin) -> str:
    """One line per plugin: name, package and parameters with their defaults."""
    params = []
    for param in plugin.parameters():
        default = "<required>" if param.default is inspect.Parameter.empty else repr(param.default)
        params.append(f"{param.name}={default}")
    return f"  {plugin.name:<14} [{plugin.source}]  {' '.join(params)}"


def listing(kind: str | None = None) -> str:
    if kind is not None and kind not in registry.KINDS:
        raise registry.PluginError(f"unknown plugin kind '{kind}'; valid kinds: {', '.join(registry.KINDS)}")
    lines = []
    for k in [kind] if kind else registry.KINDS:
        lines.append(f"{k}: {registry.CONTRACTS[k].returns}")
        lines.extend(describe(p) for p in registry.plugins(k))
    for package, error in registry.broken().items():
        lines.append(f"failed to load: {package}: {error}")
    return "\n".join(lines)


@ctrl_c_exits
def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    load()
    kind = args[0] if args else None
    try:
        print(listing(kind))
    except registry.PluginError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
