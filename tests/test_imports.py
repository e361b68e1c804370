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
    compose = "cli.share_config_store(); cli.compose_config(['model=decoder', 'experiment=transformer_tiny'])"
    assert heavy_modules_after(f"{DISCOVER}; {compose}") == []


def test_lazy_exports_resolve_to_their_classes():
    from lightning_llm import data, metrics
    from lightning_llm.data.pair_module import PairDataModule
    from lightning_llm.metrics.text import Perplexity

    assert data.PairDataModule is PairDataModule and metrics.Perplexity is Perplexity
    for package in (data, metrics):
        for name in package.__all__:
            getattr(package, name)  # AttributeError if an export no longer resolves
