import pytest
import torch
from omegaconf import OmegaConf

from lightning_llm.config import ConfigError, plugin_params
from lightning_llm.parts import check_fits_memory


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
    with pytest.raises(
        ConfigError, match=r"^model=gpt: its 0.000\d+B parameters take 0.0 GiB to build, more than"
    ):
        check_fits_memory(model, node, available=needed - 1)
