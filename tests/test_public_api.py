"""The plugin API third parties build on, frozen: a change here breaks installed plugin packages, so it must
be a deliberate, versioned decision (update this test, the guide in plugins/README.md and the version
together).
"""

from __future__ import annotations

import inspect

import lightning_llm
from lightning_llm import plugins, registry

PUBLIC = ["CONTRACTS", "KINDS", "PluginError", "build", "get", "names", "register"]
KINDS = ("tokenizer", "data", "model", "objective", "optim", "scheduler", "metric", "callback")
SUPPLIED = {
    "tokenizer": (),
    "data": ("tokenizer", "cache_dir"),
    "model": ("vocab_size",),
    "objective": ("tokenizer",),
    "optim": ("params",),
    "scheduler": ("optimizer", "total_steps"),
    "metric": (),
    "callback": (),
}


def test_top_level_names_are_the_registry_api():
    assert sorted(lightning_llm.__all__) == sorted(PUBLIC)
    assert lightning_llm.register is registry.register and lightning_llm.build is registry.build


def test_kinds_and_what_the_framework_supplies_to_each():
    assert lightning_llm.KINDS == KINDS
    assert {kind: contract.supplied for kind, contract in lightning_llm.CONTRACTS.items()} == SUPPLIED
    assert all(contract.returns for contract in lightning_llm.CONTRACTS.values())


def test_signatures_of_the_registry_functions():
    def signature(function) -> str:
        return str(inspect.signature(function))

    assert (
        signature(registry.register)
        == "(kind: 'str', name: 'str | None' = None, *, replace: 'bool' = False) -> 'Callable'"
    )
    assert signature(registry.get) == "(kind: 'str', name: 'str') -> 'Plugin'"
    assert signature(registry.names) == "(kind: 'str') -> 'list[str]'"
    assert signature(registry.build) == "(kind: 'str', name: 'str', /, **kwargs: 'Any') -> 'Any'"
    assert issubclass(registry.PluginError, ValueError)


def test_entry_point_group():
    assert plugins.ENTRY_POINT_GROUP == "lightning_llm.plugins"


def test_built_in_models_keep_the_model_contract():
    """What the framework relies on from any model: the names below (parallelism wraps ``blocks``)."""
    plugins.load()
    for name in registry.names("model"):
        model = registry.build("model", name, vocab_size=50, n_layer=1, n_head=2, n_embd=16, block_size=8)
        assert callable(model.init_weights) and callable(model.flops_per_token), name
        assert model.default_objective in model.objectives, name
        assert len(model.blocks) >= 1, name
