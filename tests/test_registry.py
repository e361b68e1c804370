import warnings

import pytest

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
        return ("fake", params, lr)

    @register("metric")
    class Counter:
        def __init__(self, start: int = 0):
            self.start = start

    assert registry.build("optim", "fake", params=[1], lr=0.5) == ("fake", [1], 0.5)
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
    assert registry.build("optim", "same", params=None) == "first"
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        register("optim", "same", replace=True)(second)
    assert registry.build("optim", "same", params=None) == "second"


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
