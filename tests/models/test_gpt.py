import math

import pytest
import torch
import torch.nn.functional as F

from lightning_llm import registry
from lightning_llm.models.gpt import GPT, GPTConfig

VOCAB = 100  # deliberately not a multiple of 64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny(**overrides) -> GPT:
    params = dict(vocab_size=VOCAB, n_layer=2, n_head=4, n_embd=32, block_size=16)
    return GPT(GPTConfig(**(params | overrides)))


def train(model: GPT, steps: int, lr: float = 3e-3) -> tuple[float, float]:
    """Fit one fixed batch; return the first and last loss."""
    input_ids = torch.randint(0, VOCAB, (4, 16), generator=torch.Generator().manual_seed(1))
    labels = torch.roll(input_ids, -1, dims=1)
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(steps):
        loss = F.cross_entropy(model(input_ids).flatten(0, 1), labels.flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    return losses[0], losses[-1]


def test_registered_with_objectives():
    model = registry.build("model", "gpt", vocab_size=VOCAB, n_layer=1, n_embd=32, n_head=2, block_size=8)
    assert isinstance(model, GPT)
    assert model.objectives == ("causal_lm",) and model.default_objective == "causal_lm"
    assert len(model.blocks) == 1


def test_forward_shapes_and_padded_vocab():
    model = tiny()
    assert model.wte.weight.shape == (128, 32)  # 100 padded up to a multiple of 64
    assert model.lm_head.out_features == 128
    logits = model(torch.randint(0, VOCAB, (3, 10)))
    assert logits.shape == (3, 10, VOCAB)
    assert tiny(pad_vocab_to=1).wte.weight.shape == (VOCAB, 32)


def test_no_future_leakage():
    model = tiny().eval()
    input_ids = torch.randint(0, VOCAB, (2, 12))
    changed = input_ids.clone()
    t = 7
    changed[:, t] = (changed[:, t] + 1) % VOCAB
    before, after = model(input_ids), model(changed)
    torch.testing.assert_close(before[:, :t], after[:, :t])
    assert not torch.allclose(before[:, t:], after[:, t:])


def test_tied_weights_share_storage():
    model = tiny()
    assert model.lm_head.weight.data_ptr() == model.wte.weight.data_ptr()
    assert sum(p is model.wte.weight for p in model.parameters()) == 1
    untied = tiny(tie_embeddings=False)
    assert untied.lm_head.weight.data_ptr() != untied.wte.weight.data_ptr()


def assert_gpt2_init(model: GPT) -> None:
    residual_std = 0.02 / math.sqrt(2 * model.config.n_layer)
    for block in model.blocks:
        assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert block.mlp.c_fc.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert block.attn.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
        assert block.mlp.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert torch.equal(model.ln_f.weight, torch.ones_like(model.ln_f.weight))


def test_init_is_gpt2():
    model = GPT(GPTConfig(vocab_size=1000, n_layer=4, n_head=4, n_embd=256, block_size=64, bias=True))
    assert_gpt2_init(model)
    assert all(block.attn.c_attn.bias.abs().sum() == 0 for block in model.blocks)


@pytest.mark.parametrize("positions", ["learned", "rotary"])
def test_meta_device_build_then_to_empty_and_init_weights(positions):
    with torch.device("meta"):
        model = GPT(
            GPTConfig(vocab_size=1000, n_layer=4, n_head=4, n_embd=256, block_size=64, positions=positions)
        )
    assert model.wte.weight.is_meta
    model.to_empty(device="cpu")
    model.init_weights()
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        assert torch.isfinite(tensor).all(), name
    assert_gpt2_init(model)
    assert model.lm_head.weight is model.wte.weight  # to_empty unties; init_weights ties again
    if positions == "rotary":
        torch.testing.assert_close(model.rope.cos, GPT(model.config).rope.cos)
    assert torch.isfinite(model(torch.randint(0, 1000, (1, 8)))).all()


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a = tiny()
    torch.manual_seed(3)
    b = tiny()
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


def test_tiny_gpt_overfits_a_fixed_batch():
    first, last = train(tiny(), steps=100)
    assert first == pytest.approx(math.log(VOCAB), rel=0.1)  # GPT-2 init starts near uniform
    assert last < 0.2 * first


@pytest.mark.parametrize(
    "variant",
    [
        dict(positions="rotary"),
        dict(mlp="swiglu"),
        dict(norm="rmsnorm"),
        dict(bias=True, tie_embeddings=False),
        dict(positions="rotary", mlp="swiglu", norm="rmsnorm"),
    ],
)
def test_variants_run_and_learn(variant):
    first, last = train(tiny(**variant), steps=40)
    assert last < 0.5 * first


def test_dropout_is_off_in_eval():
    model = tiny(dropout=0.3)
    input_ids = torch.randint(0, VOCAB, (2, 8))
    assert not torch.allclose(model(input_ids), model(input_ids))
    model.eval()
    torch.testing.assert_close(model(input_ids), model(input_ids))


def test_num_params_and_flops_per_token():
    model = tiny()
    C, L, padded_V, T = 32, 2, 128, 16
    per_block = C + 3 * C * C + C * C + C + 4 * C * C + 4 * C * C  # ln_1, attn, ln_2, mlp (no biases)
    expected = padded_V * C + L * per_block + C  # tied wte/head, blocks, ln_f (no wpe)
    assert model.num_params() == expected
    assert model.num_params(non_embedding=False) == expected + T * C
    assert model.flops_per_token(T) == 6 * expected + 12 * L * C * T
    untied = tiny(tie_embeddings=False)
    assert untied.num_params() == expected  # the untied table is a lookup, the head is counted
    assert untied.num_params(non_embedding=False) == expected + padded_V * C + T * C


def test_sequence_longer_than_block_size_is_refused():
    with pytest.raises(ValueError, match="sequence length 17 exceeds model.block_size=16"):
        tiny()(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids must have shape"):
        tiny()(torch.zeros(17, dtype=torch.long))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(n_embd=100, n_head=6), "model.n_embd=100 is not divisible by model.n_head=6"),
        (dict(vocab_size=0), "model.vocab_size must be >= 1, got 0"),
        (dict(dropout=1.0), "model.dropout must be in"),
        (dict(positions="alibi"), "model.positions='alibi' is not valid; choose one of: learned, rotary"),
        (
            dict(mlp="tanh"),
            "model.mlp='tanh' is not valid; choose one of: gelu, gelu_erf, relu, silu, swiglu",
        ),
        (dict(norm="batchnorm"), "model.norm='batchnorm'"),
        (dict(n_embd=36, n_head=4, positions="rotary"), "needs an even head size"),
    ],
)
def test_config_errors(overrides, message):
    params = dict(vocab_size=VOCAB, n_layer=1, n_head=4, n_embd=32) | overrides
    with pytest.raises(ValueError, match=message):
        GPTConfig(**params)
