"""What loads at start-up: discovering the plugins, filling Hydra's ConfigStore and composing a config (all
that ``--help``, ``--cfg`` and ``python -m lightning_llm.plugins`` do) must not import Lightning,
torchmetrics or torch._dynamo, about three seconds together. Registering a plugin needs its signature only;
its heavy class is imported when the plugin is built. Timings are left to bench/startup.py."""

import json
import subprocess
import sys

HEAVY = ("lightning", "torchmetrics", "torch._dynamo")
DISCOVER = (
    "import lightning_llm.plugins as p; p.load(); "
    "from lightning_llm import cli, config; config.store_schemas()"
)


def heavy_modules_after(code: str) -> list[str]:
    probe = f"import json, sys\n{code}\nprint(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))"
    result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_plugin_discovery_and_config_schemas_import_no_heavy_module():
    assert heavy_modules_after(DISCOVER) == []


def test_composing_a_config_imports_no_heavy_module():
    compose = "cli.compose_config(['model=decoder', 'experiment=transformer_tiny'])"
    assert heavy_modules_after(f"{DISCOVER}; {compose}") == []


def test_lazy_exports_resolve_to_their_classes():
    from lightning_llm import data, metrics
    from lightning_llm.data.pair_module import PairDataModule
    from lightning_llm.metrics.text import Perplexity

    assert data.PairDataModule is PairDataModule and metrics.Perplexity is Perplexity
    for package in (data, metrics):
        for name in package.__all__:
            getattr(package, name)  # AttributeError if an export no longer resolves


def test_no_module_imports_itself_back():
    """No import circle among lightning_llm's modules, counting the imports deferred into functions: a circle
    is a dependency nobody can reason about, and each one so far came from a lazy-import split."""
    import ast
    from pathlib import Path

    package = Path(__file__).resolve().parent.parent / "lightning_llm"
    modules = {
        ".".join(path.relative_to(package.parent).with_suffix("").parts).removesuffix(".__init__"): path
        for path in package.rglob("*.py")
    }
    imports: dict[str, set[str]] = {}
    for name, path in modules.items():
        found = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module:
                found |= {node.module, *(f"{node.module}.{alias.name}" for alias in node.names)}
            elif isinstance(node, ast.Import):
                found |= {alias.name for alias in node.names}
        imports[name] = {other for other in found & modules.keys() if other != name}
    circles = [cycle for cycle in _cycles(imports)]
    assert circles == [], circles


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one node (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for other in graph[node]:
            if other not in index:
                visit(other)
                low[node] = min(low[node], low[other])
            elif other in stack:
                low[node] = min(low[node], index[other])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in graph:
        if node not in index:
            visit(node)
    return found
