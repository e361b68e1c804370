"""``parallelize`` on one process: recomputation changes memory, not numbers; float8 stays within its
rounding; compile wraps every block; the FSDP unit plan keeps tied weights together."""

from __future__ import annotations

import pytest
import torch

from lightning_llm.distributed.parallelize import ParallelPlan, _untied_edges, parallelize
from lightning_llm.models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig
from lightning_llm.models.gpt import GPT, GPTConfig
from lightning_llm.models.lora import LoRALinear, LoraSettings, apply_lora
from lightning_llm.train import train
from tests.distributed.test_equivalence import train_losses


@pytest.mark.slow  # three training runs
def test_recomputation_trains_exactly_and_float8_within_its_rounding(make_cfg, tmp_path):
    common = ["trainer.max_steps=6", "trainer.log_every_n_steps=1", "model.dropout=0.0"]
    runs = {
        "plain": [],
        "recomputed": ["parallel.activation_checkpointing=true"],
        "float8": ["parallel.float8=true"],
    }
    losses = {}
    for name, options in runs.items():
        train(make_cfg(*common, *options), run_dir=tmp_path / name)
        losses[name] = [loss for _, loss in sorted(train_losses(tmp_path / name).items())]
    assert len(losses["plain"]) == 6
    assert losses["recomputed"] == pytest.approx(losses["plain"], rel=1e-6)
    assert losses["float8"] == pytest.approx(losses["plain"], rel=0.02)  # emulated float8 on a CPU
    assert losses["float8"] != pytest.approx(losses["plain"], rel=1e-6)


def test_checkpointed_blocks_keep_their_parameter_names_and_recompute_in_backward():
    model = GPT(GPTConfig(vocab_size=40, n_layer=2, n_head=2, n_embd=16, block_size=8))
    names = list(model.state_dict())
    parallelize(model, ParallelPlan(activation_checkpointing=True))
    assert list(model.state_dict()) == names  # checkpoints load the same with or without recomputation
    calls = []
    for block in model.blocks:
        block.attn.c_attn.register_forward_hook(lambda *_: calls.append("c_attn"))
    out = model(torch.randint(0, 40, (2, 8)))
    assert len(calls) == 2  # the forward keeps no activations inside a block...
    out.sum().backward()
    assert len(calls) == 4  # ...so backward runs each block again to get them
    assert all(p.grad is not None for p in model.parameters())


def test_float8_converts_the_blocks_linear_layers_only_and_keeps_names_and_values():
    """torchao's Float8Linear in the blocks (emulated here, on a CPU): the output moves by float8's rounding
    (a few percent), not more; embeddings and the head keep their precision; a checkpoint loads either way."""
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=40, n_layer=2, n_head=2, n_embd=32, block_size=8))
    before = {name: value.clone() for name, value in model.state_dict().items()}
    idx = torch.randint(0, 40, (2, 8))
    reference = model(idx).detach()
    parallelize(model, ParallelPlan(float8=True), device_type="cpu")
    converted = {name for name, module in model.named_modules() if type(module).__name__ == "Float8Linear"}
    assert converted == {f"blocks.{i}.{layer}" for i in range(2) for layer in LINEARS}
    assert model.state_dict().keys() == before.keys()
    assert all(torch.equal(model.state_dict()[name], value) for name, value in before.items())
    out = model(idx)
    error = (out - reference).norm() / reference.norm()
    assert 1e-4 < error < 0.1  # float8 is used, and close
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


LINEARS = ("attn.c_attn", "attn.c_proj", "mlp.c_fc", "mlp.c_proj")


def test_float8_leaves_lora_layers_as_they_are():
    """A LoRA layer computes more than its matmul: swapped for a Float8Linear it would lose its adapters."""
    model = GPT(GPTConfig(vocab_size=40, n_layer=1, n_head=2, n_embd=32, block_size=8))
    apply_lora(model, LoraSettings(rank=4, targets=["c_attn"]))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    parallelize(model, ParallelPlan(float8=True), device_type="cpu")
    assert type(model.blocks[0].attn.c_attn) is LoRALinear
    assert type(model.blocks[0].mlp.c_fc).__name__ == "Float8Linear"
    assert {name for name, p in model.named_parameters() if p.requires_grad} == trainable


def test_compile_wraps_every_block_in_place():
    model = GPT(GPTConfig(vocab_size=40, n_layer=3, n_head=2, n_embd=16, block_size=8))
    names = list(model.state_dict())
    parallelize(model, ParallelPlan(compile=True))
    assert all(block._compiled_call_impl is not None for block in model.blocks)
    assert list(model.state_dict()) == names


def test_tied_embeddings_stay_with_the_root():
    tied = GPT(GPTConfig(vocab_size=40, n_layer=1, n_head=2, n_embd=16, block_size=8))
    assert tied.lm_head.weight is tied.wte.weight
    edges = _untied_edges(tied, list(tied.blocks))
    assert tied.wpe in edges and tied.wte not in edges and tied.lm_head not in edges
    seq2seq = EncoderDecoder(
        EncoderDecoderConfig(vocab_size=40, n_layer=1, n_decoder_layer=1, n_head=2, n_embd=16, block_size=8)
    )
    assert all(edge is not seq2seq.wte for edge in _untied_edges(seq2seq, list(seq2seq.blocks)))
