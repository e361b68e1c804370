import re
import warnings

import pytest
import torch
import torchmetrics

from lightning_llm import registry
from lightning_llm.registry import CONTRACTS, KINDS, PluginError, register


@pytest.fixture
def clean_registry(monkeypatch):
    """An empty registry for the test, restored afterwards."""
    monkeypatch.setattr(registry, "_PLUGINS", {kind: {} for kind in KINDS})
    monkeypatch.setattr(registry, "_BROKEN", {})


def test_kinds_are_the_documented_ones():
    assert KINDS == ("tokenizer", "data", "model", "objective", "optim", "scheduler", "metric", "callback")
    assert CONTRACTS["optim"].supplied == ("params",)
    assert CONTRACTS["scheduler"].supplied == ("optimizer", "total_steps")
    assert CONTRACTS["model"].supplied == ("vocab_size",)
    assert CONTRACTS["data"].supplied == ("tokenizer", "cache_dir")
    assert CONTRACTS["objective"].supplied == ("tokenizer",)


def test_register_function_and_class_then_build(clean_registry):
    @register("optim", "fake")
    def fake(params, lr: float = 0.1):
        return torch.optim.SGD(params, lr=lr)

    @register("metric")
    class Counter(torchmetrics.SumMetric):
        def __init__(self, start: int = 0):
            super().__init__()
            self.start = start

    weight = torch.zeros(2, requires_grad=True)
    optimizer = registry.build("optim", "fake", params=[weight], lr=0.5)
    assert optimizer.param_groups[0]["params"] == [weight] and optimizer.param_groups[0]["lr"] == 0.5
    assert registry.build("metric", "Counter", start=3).start == 3
    assert registry.names("optim") == ["fake"]
    plugin = registry.get("optim", "fake")
    assert [p.name for p in plugin.parameters()] == ["lr"]  # `params` is supplied, not config
    assert plugin.source == "tests" or plugin.source.startswith("test")


def test_unknown_name_lists_valid_names_and_suggests(clean_registry):
    register("model", "gpt")(lambda vocab_size: None)
    register("model", "encoder")(lambda vocab_size: None)
    with pytest.raises(PluginError) as error:
        registry.get("model", "gtp")
    message = str(error.value)
    assert "unknown model 'gtp'" in message
    assert "did you mean 'gpt'" in message
    assert "encoder, gpt" in message


@pytest.mark.parametrize("name", ["null", "True", "off", "lé", "数", "a.b", "1x"])
def test_a_name_no_override_can_choose_is_refused(clean_registry, name):
    """optim=null chose nothing, optim=true was read as a bool, and optim=lé did not parse."""
    with pytest.raises(PluginError, match="a plugin name is ASCII letters, digits, '_' and '-'"):
        register("optim", name)(lambda params: None)


def test_unknown_kind(clean_registry):
    with pytest.raises(PluginError, match="valid kinds: tokenizer, data"):
        register("optimizer", "x")


def test_duplicate_name_keeps_first_and_warns(clean_registry):
    def first(params):
        return "first"

    def second(params):
        return "second"

    register("optim", "same")(first)
    with pytest.warns(UserWarning, match="already provides"):
        register("optim", "same")(second)
    assert registry.get("optim", "same").target is first
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register("optim", "same", replace=True)(second)
    assert registry.get("optim", "same").target is second


def test_broken_packages_are_named_when_a_name_is_missing(clean_registry):
    registry.mark_broken("acme-llm", "ImportError: no module named flash")
    with pytest.raises(PluginError, match="acme-llm: ImportError"):
        registry.get("optim", "acme_lion")


def test_loading_attributes_source(clean_registry):
    with registry.loading("my-package"):
        register("optim", "mine")(lambda params: None)
    assert registry.get("optim", "mine").source == "my-package"


def test_builtins_cover_every_kind():
    from lightning_llm import plugins

    plugins.load()
    expected = {
        "tokenizer": {"byte_bpe", "bpe", "wordpiece", "unigram", "char", "pretrained"},
        "data": {"pydoc", "text", "jsonl"},
        "model": {"gpt"},
        "objective": {"causal_lm"},
        "optim": {"adam", "adamw", "sgd"},
        "scheduler": {"cosine", "linear", "constant"},
        "metric": {"perplexity", "accuracy"},
    }
    for kind, names in expected.items():
        assert names <= set(registry.names(kind)), kind
        assert all(p.source == "lightning_llm" for p in registry.plugins(kind) if p.name in names)


@pytest.mark.parametrize(
    ("kind", "product", "expected"),
    [
        (
            "optim",
            None,
            "optim 'odd' [tests] returned a NoneType; optim plugins must return a torch.optim.Optimizer",
        ),
        ("model", {}, "returned a dict; model plugins must return a torch.nn.Module"),
        ("scheduler", [], "must return a torch.optim.lr_scheduler.LRScheduler"),
        ("objective", object(), "must return an object with a loss method"),
        ("data", 3, "must return a lightning.pytorch.LightningDataModule"),
    ],
)
def test_what_a_plugin_returns_is_checked_against_its_kind(clean_registry, kind, product, expected):
    """Before, each of these failed later, deep in the framework or torch, without naming the plugin."""
    with registry.loading("tests"):
        register(kind, "odd")(lambda **_: product)
    with pytest.raises(PluginError, match=re.escape(expected)):
        registry.build(kind, "odd")
