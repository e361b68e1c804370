import re
from pathlib import Path
from typing import Literal

import pytest
from hydra.core.config_store import ConfigStore
from omegaconf import OmegaConf

from lightning_llm import config, registry
from lightning_llm.config import ConfigError, plugin_params, schema


def _plugin(fn, kind="optim", name="probe"):
    return registry.Plugin(kind, name, fn, "tests")


def test_schema_comes_from_the_signature():
    def probe(
        params,
        lr: float = 1e-3,
        steps: int = 10,
        fused: bool | None = None,
        mode: Literal["a", "b"] = "a",
        betas: tuple[float, float] = (0.9, 0.95),
        path: str = "x",
    ):
        pass

    node = OmegaConf.structured(schema(_plugin(probe)))
    assert OmegaConf.to_container(node) == {
        "name": "probe",
        "lr": 1e-3,
        "steps": 10,
        "fused": None,
        "mode": "a",
        "betas": [0.9, 0.95],
        "path": "x",
        "decay_embeddings": True,  # every optim plugin's, handled by the framework (param_groups)
    }
    with pytest.raises(Exception, match="could not be converted"):
        node.steps = "many"
    node.fused = True  # Optional[bool] accepts a bool and None
    node.fused = None


def test_required_parameter_is_missing_until_set():
    def probe(path: str):
        pass

    with pytest.raises(ConfigError, match="probe.path is required"):
        _check(probe, {"name": "probe"})


def test_plugin_params_reports_unknown_key_with_suggestion():
    def probe(params, lr: float = 0.1, momentum: float = 0.9):
        pass

    with pytest.raises(ConfigError) as error:
        _check(probe, {"name": "probe", "lrr": 1})
    assert "probe.lrr: optim 'probe' has no parameter 'lrr' (did you mean 'lr'?)" in str(error.value)
    assert "lr, momentum" in str(error.value)


def test_a_fixed_length_tuple_takes_that_many_values():
    """``betas: tuple[float, float]`` is a list in the config: [0.5] reached the plugin (the docs say tuples
    are enforced)."""

    def probe(params, betas: tuple[float, float] = (0.9, 0.95), sizes: tuple[int, ...] = (1,)):
        pass

    for betas in ([0.5], [0.1, 0.2, 0.3]):
        with pytest.raises(
            ConfigError, match=re.escape(f"probe.betas={betas}: optim 'probe' takes 2 values")
        ):
            _check(probe, {"name": "probe", "betas": betas})
    _check(probe, {"name": "probe", "betas": [0.8, 0.9], "sizes": [1, 2, 3]})


def test_a_bad_list_item_or_nested_setting_is_named_by_its_whole_key():
    """Were ``optim.optim.sizes[0]='a' is not a valid another type`` and ``model.targets='c_attn'``."""

    def probe(params, sizes: list[int] = (1,)):
        pass

    with pytest.raises(ConfigError, match=re.escape("probe.sizes[0]='a' is not a valid list[int] for optim")):
        _check(probe, {"name": "probe", "sizes": ["a"]})
    with pytest.raises(ConfigError, match=re.escape("model.lora.targets='c_attn' is not a valid list[str]")):
        plugin_params("model", {"name": "gpt", "lora": {"targets": "c_attn"}})


def test_plugin_params_reports_bad_type_and_literal():
    def probe(params, lr: float = 0.1, mode: Literal["fast", "slow"] = "fast"):
        pass

    with pytest.raises(ConfigError, match=r"probe.lr='abc' is not a valid float for optim 'probe'"):
        _check(probe, {"name": "probe", "lr": "abc"})
    with pytest.raises(ConfigError, match="choose one of: fast, slow"):
        _check(probe, {"name": "probe", "mode": "medium"})
    _, kwargs = _check(probe, {"name": "probe", "lr": "0.5"})  # strings from the CLI become floats
    assert kwargs == {"lr": 0.5, "mode": "fast"}


def _check(fn, node):
    plugin = _plugin(fn)
    registry._PLUGINS["optim"]["probe"] = plugin
    try:
        return plugin_params("optim", node, key="probe")
    finally:
        del registry._PLUGINS["optim"]["probe"]


def test_every_plugin_is_in_the_config_store():
    repo = ConfigStore.instance().repo
    for plugin in registry.plugins():
        assert f"{plugin.name}.yaml" in repo["schema"][plugin.kind]
        refined = Path(config.config_dir(), plugin.kind, f"{plugin.name}.yaml").is_file()
        if plugin.kind in config.GROUP_KINDS and not refined:
            assert f"{plugin.name}.yaml" in repo[plugin.kind]


def test_default_config_composes_and_checks(make_cfg):
    cfg = make_cfg(tiny=False)
    config.check(cfg)
    assert cfg.model.name == "gpt" and cfg.tokenizer.name == "byte_bpe" and cfg.data.name == "pydoc"
    assert list(cfg.metrics) == ["perplexity", "accuracy"]


def test_yaml_refines_a_plugin_and_keeps_its_schema(make_cfg):
    """conf/model/gpt.yaml changes defaults, yet every signature parameter stays overridable and typed."""
    cfg = make_cfg("model.positions=rotary", tiny=False)
    gpt = registry.get("model", "gpt")
    framework = set(config.FRAMEWORK_PARAMS["model"])  # init_from
    assert set(cfg.model) == {"name"} | {p.name for p in gpt.parameters()} | framework
    with pytest.raises(Exception, match="Error merging override model.n_layer=deep") as error:
        make_cfg("model.n_layer=deep", tiny=False)
    assert "could not be converted to Integer" in str(error.value.__cause__)


def test_every_plugin_composes_from_its_signature(make_cfg):
    for kind in ("optim", "scheduler", "tokenizer"):
        for name in registry.names(kind):
            if name == "pretrained":
                continue
            cfg = make_cfg(f"{kind}={name}")
            config.check(cfg)
            assert cfg[kind].name == name


def test_target_in_a_config_is_refused(make_cfg):
    cfg = make_cfg("+optim._target_=os.system")
    with pytest.raises(ConfigError, match="_target_"):
        config.check(cfg)


def test_bad_trainer_argument_is_named(make_cfg):
    cfg = make_cfg("+trainer.max_step=3")
    with pytest.raises(
        ConfigError,
        match=r"trainer.max_step is not a lightning.Trainer argument \(did you mean 'trainer.max_steps'",
    ):
        config.check(cfg)


def test_metrics_must_be_known(make_cfg):
    cfg = make_cfg("metrics=[perplexity,bleu_score]")
    with pytest.raises(
        registry.PluginError, match="unknown metric 'bleu_score'.*valid metric names: accuracy"
    ):
        config.check(cfg)


def test_an_objective_plugin_may_name_the_built_in_models_it_trains():
    """A new objective could never run with the built-in models, whose ``objectives`` are fixed tuples."""
    saved = registry.snapshot()
    try:

        class Denoise:
            models = ("gpt",)

            def __init__(self, tokenizer=None) -> None: ...

        class Other:
            def __init__(self, tokenizer=None) -> None: ...

        registry.register("objective", "denoise")(Denoise)
        registry.register("objective", "other")(Other)
        config.check_objective("gpt", "denoise")
        with pytest.raises(
            ConfigError,
            match=r"objective=other does not fit model=gpt; it supports: causal_lm "
            r"\(an objective plugin names the models it trains: models = \(\.\.\.\) on its class\)",
        ):
            config.check_objective("gpt", "other")
        with pytest.raises(
            ConfigError, match=r"objective=masked_lm does not fit model=gpt; it supports: causal_lm$"
        ):
            config.check_objective("gpt", "masked_lm")
    finally:
        registry.restore(saved)
