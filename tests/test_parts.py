import re

import pytest
import torch
from omegaconf import OmegaConf

from lightning_llm.config import ConfigError, plugin_params
from lightning_llm.parts import check_fits_memory, check_model_fits


def test_a_model_whose_weights_exceed_free_memory_is_refused_naming_its_size():
    """Building it would get the process killed without a word (the kernel's OOM killer): the weights of a
    meta-device build (tied ones once) are compared with what is free."""
    node = OmegaConf.create({"name": "gpt", "n_layer": 2, "n_embd": 64, "n_head": 2})
    plugin, params = plugin_params("model", node)
    with torch.device("meta"):
        model = plugin(vocab_size=1000, **params)
    embedding = 1000 * 64 * 4  # the tied token embedding and head: one table of float32
    assert model.lm_head.weight is model.wte.weight
    needed = sum(p.numel() * 4 for p in model.parameters()) + sum(
        b.numel() * b.element_size() for b in model.buffers()
    )
    assert needed > embedding
    check_fits_memory(model, node, available=needed)  # exactly enough
    with pytest.raises(ConfigError) as refused:
        check_fits_memory(model, node, available=needed - 1)
    assert re.match(
        r"model=gpt: its 0.000\d+B parameters and its buffers .* take 0.0 GiB to build", str(refused.value)
    )
    assert str(refused.value).endswith("make it smaller (model.n_layer=2, model.n_embd=64)")


@pytest.mark.parametrize("setting", ["model.n_embd=1000000000", "model.block_size=100000000000000000"])
def test_a_model_too_large_for_torch_to_count_is_refused_not_a_traceback(make_cfg, setting):
    """torch's "Storage size calculation overflowed" at the meta-device build was taken for a plugin that
    needs its data's settings, and the run went on to crash building it."""
    cfg = make_cfg(setting, "model.n_head=1")
    with pytest.raises(
        ConfigError, match=r"^model=gpt: has more elements in a tensor than torch can address"
    ):
        check_model_fits(cfg, vocab_size=100)
