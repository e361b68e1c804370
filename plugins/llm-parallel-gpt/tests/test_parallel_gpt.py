"""parallel_gpt: the model contract, causality, KV-cache generation and a CLI run whose loss falls."""

import csv
import subprocess
import sys

import pytest
import torch
import yaml
from llm_parallel_gpt import ParallelBlock, ParallelGPT, ParallelGPTConfig
from torch import nn

import lightning_llm
from lightning_llm.distributed.parallelize import ParallelPlan, parallelize

VOCAB = 50


def tiny(**overrides) -> ParallelGPT:
    torch.manual_seed(0)
    shape = {"n_layer": 2, "n_head": 2, "n_embd": 32, "block_size": 16}
    return ParallelGPT(ParallelGPTConfig(vocab_size=VOCAB, **{**shape, **overrides}))


def test_follows_the_model_contract():
    plugin = lightning_llm.get("model", "parallel_gpt")  # through the installed package's entry point
    assert plugin.source == "llm-parallel-gpt" and plugin.product() is ParallelGPT
    model = tiny()
    assert ParallelGPT.objectives == ("causal_lm",) and ParallelGPT.default_objective == "causal_lm"
    assert isinstance(model.blocks, nn.ModuleList) and all(isinstance(b, ParallelBlock) for b in model.blocks)
    assert model.flops_per_token(16) > 6 * model.num_params()
    assert model.lm_head.weight is model.wte.weight  # tied, as GPT's init_weights() ties them


def test_one_norm_per_block_and_parallel_sum():
    block = ParallelBlock(n_embd=16, n_head=2)
    assert sum(isinstance(m, nn.LayerNorm) for m in block.modules()) == 1
    x = torch.randn(2, 5, 16)
    h = block.ln(x)
    torch.testing.assert_close(block(x), x + block.attn(h) + block.mlp(h))


def test_init_weights_is_deterministic():
    a, b = tiny(), tiny()
    torch.manual_seed(1)
    b.init_weights()
    torch.manual_seed(1)
    a.init_weights()
    for (name, pa), pb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(pa, pb), name


def test_activation_checkpointing_wraps_the_blocks_and_keeps_the_gradients():
    """lightning_llm's parallelize() finds blocks by the name ``blocks`` (so do FSDP and compile)."""
    ids = torch.randint(0, VOCAB, (2, 12))
    reference, checkpointed = tiny(), tiny()
    parallelize(checkpointed, ParallelPlan(activation_checkpointing=True))
    norm_calls = {"reference": 0, "checkpointed": 0}
    for key, model in (("reference", reference), ("checkpointed", checkpointed)):
        for block in model.blocks:
            block.ln.register_forward_hook(lambda *_, key=key: norm_calls.update({key: norm_calls[key] + 1}))
        model(ids).logsumexp(dim=-1).sum().backward()
    assert norm_calls == {"reference": 2, "checkpointed": 4}  # each of the 2 blocks ran again in backward
    for (name, a), b in zip(reference.named_parameters(), checkpointed.parameters(), strict=True):
        torch.testing.assert_close(a.grad, b.grad, msg=name)


@pytest.mark.parametrize("positions", ["rotary", "learned"])
def test_no_future_leakage(positions):
    model = tiny(positions=positions).eval()
    ids = torch.randint(0, VOCAB, (2, 12))
    changed = ids.clone()
    changed[:, 7:] = (ids[:, 7:] + 1) % VOCAB  # change every token from position 7 on
    with torch.no_grad():
        before, after = model(ids), model(changed)
    torch.testing.assert_close(before[:, :7], after[:, :7])  # earlier positions cannot see the change
    assert not torch.allclose(before[:, 7:], after[:, 7:])


def test_kv_cache_gives_the_same_logits():
    model = tiny().eval()
    ids = torch.randint(0, VOCAB, (2, 10))
    cache = model.new_kv_cache()
    with torch.no_grad():
        full = model(ids)
        prompt = model(ids[:, :6], kv_cache=cache)  # the first 6 tokens at once, then one at a time
        steps = [prompt] + [model(ids[:, t : t + 1], kv_cache=cache) for t in range(6, 10)]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, rtol=1e-4, atol=1e-5)


def test_trains_through_the_cli_and_the_loss_falls(train_cli):
    run_dir, summary = train_cli(
        "model=parallel_gpt", "optim.lr=1e-2", "logger=csv", "trainer.log_every_n_steps=1"
    )
    assert summary["step"] == 8
    resolved = (run_dir / ".hydra" / "config.yaml").read_text()
    assert "name: parallel_gpt" in resolved and "positions: rotary" in resolved  # the signature's defaults
    (metrics,) = run_dir.glob("csv/version_*/metrics.csv")
    losses = [float(row["train/loss"]) for row in csv.DictReader(metrics.open()) if row.get("train/loss")]
    assert len(losses) == 8
    assert sum(losses[-2:]) < sum(losses[:2]) - 0.2  # the last two steps' loss well below the first two


def test_the_packaged_yaml_defaults_refine_the_signature():
    """conf/model/parallel_gpt.yaml inside the package sets what model=parallel_gpt gives."""
    result = subprocess.run(
        [sys.executable, "-m", "lightning_llm", "model=parallel_gpt", "--cfg", "job"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    model = yaml.safe_load(result.stdout)["model"]
    assert (model["n_layer"], model["n_head"], model["n_embd"], model["dropout"]) == (6, 6, 192, 0.1)
    assert model["positions"] == "rotary"  # untouched keys keep the signature's defaults
