"""Every experiment preset composes, passes the config check, and has the shape it claims."""

from pathlib import Path

import pytest
import torch

from lightning_llm import config
from lightning_llm.train import train

PRESETS = sorted(p.stem for p in Path(config.config_dir(), "experiment").glob("*.yaml"))
# Each large preset states its exact parameter count in its comment, and what differs from the published
# model (GPT-2 small 124,439,808 as GPT2LMHeadModel counts it; BERT-base's BertForMaskedLM 109,514,298; the
# Transformer base "65M", Vaswani et al. 2017, Table 3). gpt2_124m_exact and bert_base are GPT-2 small and
# BERT-base to the parameter.
EXACT_COUNTS = {
    "gpt2_124m": 124_373_760,
    "gpt2_124m_exact": 124_439_808,
    "bert_base": 109_514_298,
    "transformer_base": 63_082_496,
}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_checks(make_cfg, preset):
    cfg = make_cfg(f"experiment={preset}", tiny=False)
    config.check(cfg)


# The choices a researcher swaps inside a recipe: another tokenizer (a pretrained one), another schedule.
SWAPS = ["tokenizer=pretrained", "scheduler=constant"]


@pytest.mark.parametrize("swap", SWAPS)
@pytest.mark.parametrize("preset", PRESETS)
def test_preset_takes_another_option_of_the_groups_users_swap(make_cfg, preset, swap):
    """A preset's settings of a swappable group live in that group's option (``tokenizer: wordpiece_2k``),
    not in the preset's body, where they would not fit the option the user picks instead."""
    cfg = make_cfg(f"experiment={preset}", swap, tiny=False)
    group, option = swap.split("=")
    assert cfg[group].name == option


def test_a_preset_setting_another_option_replaces_says_so(tmp_path):
    from lightning_llm import cli

    searchpath = f"hydra.searchpath=[file://{tmp_path}]"
    (tmp_path / "experiment").mkdir()
    (tmp_path / "experiment" / "mine.yaml").write_text(
        "# @package _global_\ndefaults:\n  - override /optim: adamw\noptim:\n  beta2: 0.95\n"
    )
    assert cli.compose_config(["experiment=mine", searchpath]).optim.beta2 == 0.95
    with pytest.raises(cli.ConfigError) as refused:
        cli.compose_config(["experiment=mine", "optim=sgd", searchpath])
    assert str(refused.value).startswith("experiment/mine: optim.beta2: Key 'beta2' not in 'optim_sgd'; ")
    assert "which optim=sgd replaces" in str(refused.value)


@pytest.mark.parametrize("preset", sorted(EXACT_COUNTS))
def test_large_preset_has_the_parameter_count_it_states(make_cfg, preset):
    cfg = make_cfg(f"experiment={preset}", tiny=False)
    plugin, params = config.plugin_params("model", cfg.model)
    with torch.device("meta"):  # no memory: the shape is all this test needs
        model = plugin(vocab_size=cfg.tokenizer.vocab_size, **params)
    count = sum(p.numel() for p in model.parameters())
    assert count == EXACT_COUNTS[preset]
    comment = Path(config.config_dir(), "experiment", f"{preset}.yaml").read_text()
    assert f"{count:,}" in comment  # the preset says it


def test_exact_presets_count_what_transformers_builds():
    transformers = pytest.importorskip("transformers")
    with torch.device("meta"):
        gpt2 = transformers.GPT2LMHeadModel(transformers.GPT2Config())
        bert = transformers.BertForMaskedLM(transformers.BertConfig())
    assert sum(p.numel() for p in gpt2.parameters()) == EXACT_COUNTS["gpt2_124m_exact"]
    assert sum(p.numel() for p in bert.parameters()) == EXACT_COUNTS["bert_base"]


TINY_RUN = [
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "logger=none",
    "callbacks.samples.max_new_tokens=4",
]


@pytest.mark.slow
@pytest.mark.parametrize("preset", [p for p in PRESETS if p.endswith(("tiny", "tiny_classify"))])
def test_tiny_preset_trains(make_cfg, tmp_path, preset):
    summary, _ = train(make_cfg(f"experiment={preset}", *TINY_RUN, tiny=False), run_dir=tmp_path)
    assert summary["step"] == 2


def test_a_warmup_given_beside_the_presets_own_says_which_to_clear(make_cfg):
    """gpt_tiny gives its warmup as a share; a user giving it in steps was told "not both" as if they had
    set both."""
    from lightning_llm.config import ConfigError

    cfg = make_cfg("experiment=gpt_tiny", "scheduler.warmup_steps=5", tiny=False)
    with pytest.raises(ConfigError, match=r"warmup_steps=5 and scheduler.warmup_fraction=0.05 are both set"):
        config.check(cfg)
    config.check(
        make_cfg(
            "experiment=gpt_tiny", "scheduler.warmup_steps=5", "scheduler.warmup_fraction=null", tiny=False
        )
    )
