import math

import pytest
import torch

from lightning_llm import registry
from lightning_llm.models.encoder import Encoder, EncoderConfig

VOCAB = 100  # deliberately not a multiple of 64


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def tiny(**overrides) -> Encoder:
    params = dict(vocab_size=VOCAB, n_layer=2, n_head=4, n_embd=32, block_size=16)
    return Encoder(EncoderConfig(**(params | overrides))).eval()


def random_ids(*shape: int) -> torch.Tensor:
    return torch.randint(7, VOCAB, shape, generator=torch.Generator().manual_seed(1))


def test_registered_with_objectives_and_its_config():
    model = registry.build("model", "encoder", vocab_size=VOCAB, n_layer=1, n_embd=32, n_head=2)
    assert isinstance(model, Encoder) and len(model.blocks) == 1
    plugin = registry.get("model", "encoder")
    assert plugin.product() is Encoder and plugin.config_class() is EncoderConfig
    assert Encoder.objectives == ("masked_lm", "masked_lm_nsp", "classification", "span_qa")
    assert Encoder.default_objective == "masked_lm"
    assert all(not block.attn.causal for block in model.blocks)


def test_shapes_and_padded_vocab():
    model = tiny(num_classes=3)
    input_ids = random_ids(2, 10)
    hidden = model.encode(input_ids)
    assert hidden.shape == (2, 10, 32)
    assert model.wte.weight.shape == (128, 32)  # 100 padded up to a multiple of 64
    assert model.mlm_logits(hidden).shape == (2, 10, VOCAB)
    torch.testing.assert_close(model(input_ids), model.mlm_logits(hidden))
    assert model.classify(hidden).shape == (2, 3)
    assert tiny(pad_vocab_to=1).wte.weight.shape == (VOCAB, 32)


def test_without_classes_there_is_no_classifier():
    model = tiny()
    assert model.pooler is None and model.classifier is None
    with pytest.raises(ValueError, match="no classifier .model.num_classes=0"):
        model.classify(model.encode(random_ids(1, 4)))


def test_attention_is_bidirectional():
    model = tiny()
    input_ids = random_ids(2, 12)
    changed = input_ids.clone()
    t = 7
    changed[:, t + 1] = (changed[:, t + 1] + 1) % VOCAB
    before, after = model.encode(input_ids), model.encode(changed)
    assert not torch.allclose(before[:, t], after[:, t])  # position t sees t + 1
    assert not torch.allclose(before[:, 0], after[:, 0])


def test_padding_is_never_attended_to():
    model = tiny(num_classes=2)
    input_ids = random_ids(2, 10)
    attention_mask = torch.ones(2, 10, dtype=torch.bool)
    attention_mask[0, 6:] = False  # row 0 has 6 real tokens
    changed = input_ids.clone()
    changed[0, 6:] = (changed[0, 6:] + 5) % VOCAB
    before = model.encode(input_ids, attention_mask)
    after = model.encode(changed, attention_mask)
    torch.testing.assert_close(before[0, :6], after[0, :6])
    torch.testing.assert_close(before[1], after[1])
    torch.testing.assert_close(model.classify(before), model.classify(after))
    unmasked = model.encode(changed)  # without the mask the change does reach the real positions
    assert not torch.allclose(before[0, :6], unmasked[0, :6])
    # a 0/1 integer mask works like a bool one
    torch.testing.assert_close(model.encode(input_ids, attention_mask.long()), before)


def test_segments_default_to_zero():
    model = tiny()
    input_ids = random_ids(2, 8)
    zeros = torch.zeros_like(input_ids)
    torch.testing.assert_close(model.encode(input_ids), model.encode(input_ids, token_type_ids=zeros))
    second = torch.ones_like(input_ids)
    assert not torch.allclose(model.encode(input_ids), model.encode(input_ids, token_type_ids=second))


def test_mlm_decoder_is_tied_to_the_token_embedding():
    model = tiny()
    assert model.mlm_head.decoder.weight is model.wte.weight
    assert sum(p is model.wte.weight for p in model.parameters()) == 1
    assert model.mlm_head.decoder.bias is not None  # BERT's per-token output bias


def assert_bert_init(model: Encoder) -> None:
    residual_std = 0.02 / math.sqrt(2 * model.config.n_layer)
    for block in model.blocks:
        assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)
        assert block.attn.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
        assert block.mlp.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert model.wte.weight.std().item() == pytest.approx(0.02, rel=0.05)
    assert model.mlm_head.dense.bias.abs().sum() == 0
    assert torch.equal(model.ln_emb.weight, torch.ones_like(model.ln_emb.weight))


@pytest.mark.parametrize("positions", ["learned", "sinusoidal"])
def test_meta_device_build_then_to_empty_and_init_weights(positions):
    params = dict(vocab_size=1000, n_layer=4, n_head=4, n_embd=256, block_size=64, num_classes=3)
    with torch.device("meta"):
        model = Encoder(EncoderConfig(**params, positions=positions))
    assert model.wte.weight.is_meta
    model.to_empty(device="cpu")
    model.init_weights()
    for name, tensor in list(model.named_parameters()) + list(model.named_buffers()):
        assert torch.isfinite(tensor).all(), name
    assert_bert_init(model)
    assert model.mlm_head.decoder.weight is model.wte.weight  # to_empty unties; init_weights ties again
    if positions == "sinusoidal":
        torch.testing.assert_close(model.wpe.pe, Encoder(EncoderConfig(**params, positions=positions)).wpe.pe)
    hidden = model.eval().encode(torch.randint(0, 1000, (1, 8)))
    assert torch.isfinite(model.classify(hidden)).all()


def test_same_seed_same_weights():
    torch.manual_seed(3)
    a = tiny(num_classes=2)
    torch.manual_seed(3)
    b = tiny(num_classes=2)
    for pa, pb in zip(a.parameters(), b.parameters(), strict=True):
        assert torch.equal(pa, pb)


@pytest.mark.parametrize(
    "variant",
    [
        dict(positions="sinusoidal"),
        dict(norm="rmsnorm", bias=False),
        dict(prenorm=False, mlp="gelu_erf", norm_eps=1e-12),
        dict(mlp="relu"),
    ],
)
def test_variants_run(variant):
    model = tiny(num_classes=2, **variant)
    hidden = model.encode(random_ids(2, 16))
    assert torch.isfinite(model.mlm_logits(hidden)).all() and model.classify(hidden).shape == (2, 2)


def test_post_ln_is_berts_layout_with_no_final_norm():
    """prenorm=False: every sub-layer's output is normalised (BERT), so the stack needs no final norm."""
    model = tiny(prenorm=False, norm_eps=1e-12)
    assert isinstance(model.ln_f, torch.nn.Identity)
    assert not any("ln_f" in name for name in model.state_dict())
    assert model.blocks[0].ln_1.eps == model.ln_emb.eps == model.mlm_head.norm.eps == 1e-12
    block, x = model.blocks[0], torch.randn(2, 5, 32)
    attended = block.ln_1(x + block.attn(x))
    torch.testing.assert_close(block(x), block.ln_2(attended + block.mlp(attended)))
    assert tiny().num_params() - model.num_params() == 2 * 32  # the final LayerNorm's weight and bias


def test_dropout_is_off_in_eval():
    model = tiny(dropout=0.3).train()
    input_ids = random_ids(2, 8)
    assert not torch.allclose(model(input_ids), model(input_ids))
    model.eval()
    torch.testing.assert_close(model(input_ids), model(input_ids))


def test_num_params_and_flops_per_token():
    C, L, padded_V, T, S, K = 32, 2, 128, 16, 2, 3
    model = tiny(num_classes=K)
    norm = 2 * C  # LayerNorm weight + bias
    per_block = norm + (3 * C * C + 3 * C) + (C * C + C) + norm + (4 * C * C + 4 * C) + (4 * C * C + C)
    mlm_head = (C * C + C) + norm + padded_V  # dense, norm, decoder bias (weight tied to wte)
    classifier = (C * C + C) + (C * K + K)  # pooler + classifier
    expected = padded_V * C + norm + L * per_block + norm + mlm_head + classifier  # wte, ln_emb, ..., ln_f
    assert model.num_params() == expected
    assert model.num_params(non_embedding=False) == expected + T * C + S * C  # + wpe, wse
    assert model.flops_per_token(T) == 6 * expected + 12 * L * C * T
    assert tiny(positions="sinusoidal").num_params(non_embedding=False) == tiny().num_params() + S * C


def test_bad_inputs_are_refused():
    model = tiny()
    with pytest.raises(ValueError, match="sequence length 17 exceeds model.block_size=16"):
        model(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match="input_ids must have shape"):
        model(torch.zeros(17, dtype=torch.long))
    with pytest.raises(ValueError, match="attention_mask must have the shape of input_ids"):
        model(torch.zeros(2, 8, dtype=torch.long), attention_mask=torch.ones(2, 7, dtype=torch.bool))


@pytest.mark.parametrize(
    "overrides,message",
    [
        (dict(n_embd=100, n_head=6), "model.n_embd=100 is not divisible by model.n_head=6"),
        (dict(vocab_size=0), "model.vocab_size must be >= 1, got 0"),
        (dict(n_segments=0), "model.n_segments must be >= 1, got 0"),
        (dict(num_classes=-1), "model.num_classes must be >= 0"),
        (dict(dropout=1.0), "model.dropout must be in"),
        (
            dict(positions="rotary"),
            "model.positions='rotary' is not valid; choose one of: learned, sinusoidal",
        ),
        (dict(norm="batchnorm"), "model.norm='batchnorm'"),
        (
            dict(mlp="tanh"),
            "model.mlp='tanh' is not valid; choose one of: gelu, gelu_erf, relu, silu, swiglu",
        ),
        (dict(norm_eps=0.0), "model.norm_eps must be in"),
        (dict(n_embd=33, n_head=1, positions="sinusoidal"), "needs an even model.n_embd"),
    ],
)
def test_config_errors(overrides, message):
    params = dict(vocab_size=VOCAB, n_layer=1, n_head=4, n_embd=32) | overrides
    with pytest.raises(ValueError, match=message):
        EncoderConfig(**params)
