"""Every experiment preset composes, passes the config check, and has the shape it claims."""

from pathlib import Path

import pytest
import torch

from lightning_llm import config
from lightning_llm.train import train

PRESETS = sorted(p.stem for p in Path(config.config_dir(), "experiment").glob("*.yaml"))
# Published sizes: GPT-2 small 124M (nanoGPT counts 124.4M with the padded vocab and position table);
# BERT-base 110M; the original Transformer base 65M (Vaswani et al. 2017, Table 3, with a 37k shared vocab).
EXPECTED_MILLIONS = {"gpt2_124m": (123, 126), "bert_base": (108, 111), "transformer_base": (60, 66)}


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_composes_and_checks(make_cfg, preset):
    cfg = make_cfg(f"experiment={preset}", tiny=False)
    config.check(cfg)


@pytest.mark.parametrize("preset", sorted(EXPECTED_MILLIONS))
def test_large_preset_has_its_published_size(make_cfg, preset):
    cfg = make_cfg(f"experiment={preset}", tiny=False)
    plugin, params = config.plugin_params("model", cfg.model)
    with torch.device("meta"):  # no memory: the shape is all this test needs
        model = plugin(vocab_size=cfg.tokenizer.vocab_size, **params)
    millions = sum(p.numel() for p in model.parameters()) / 1e6
    low, high = EXPECTED_MILLIONS[preset]
    assert low <= millions <= high, f"{preset}: {millions:.1f}M parameters"


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
