import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_llm.models.blocks import (
    MLP,
    Attention,
    Block,
    RotaryEmbedding,
    SinusoidalPositions,
    init_gpt2_,
    make_norm,
    swiglu_hidden_size,
)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def reference_attention(attn: Attention, x: torch.Tensor, causal: bool) -> torch.Tensor:
    """Attention written out as in the paper: softmax(Q K^T / sqrt(d)) V, per head."""
    B, T, C = x.shape
    nh, hs = attn.n_head, C // attn.n_head
    q, k, v = (x @ attn.c_attn.weight.T).split(C, dim=2)
    q, k, v = (t.view(B, T, nh, hs).transpose(1, 2) for t in (q, k, v))
    scores = q @ k.transpose(-2, -1) / math.sqrt(hs)
    if causal:
        scores = scores.masked_fill(torch.ones(T, T).triu(1).bool(), float("-inf"))
    y = (scores.softmax(-1) @ v).transpose(1, 2).reshape(B, T, C)
    return attn.c_proj(y)


def test_make_norm_kinds():
    assert isinstance(make_norm("layernorm", 8, bias=True), nn.LayerNorm)
    assert make_norm("layernorm", 8, bias=False).bias is None
    assert isinstance(make_norm("rmsnorm", 8, bias=True), nn.RMSNorm)
    with pytest.raises(ValueError, match="valid norms: layernorm, rmsnorm"):
        make_norm("batchnorm", 8)


def test_swiglu_hidden_size_is_a_multiple_of_64_near_eight_thirds():
    for n_embd in (64, 256, 768, 4096):
        hidden = swiglu_hidden_size(n_embd)
        assert hidden % 64 == 0
        assert 8 * n_embd / 3 <= hidden < 8 * n_embd / 3 + 64
    assert swiglu_hidden_size(4096, multiple_of=256) == 11008  # LLaMA-7B rounds to 256


@pytest.mark.parametrize("kind", ["gelu", "swiglu"])
def test_mlp_shapes(kind):
    mlp = MLP(32, kind)
    assert mlp(torch.randn(2, 5, 32)).shape == (2, 5, 32)
    expected_hidden = 128 if kind == "gelu" else swiglu_hidden_size(32)
    assert mlp.c_proj.in_features == expected_hidden
    with pytest.raises(ValueError, match="valid mlps"):
        MLP(32, "relu")


def test_swiglu_is_gate_times_up():
    mlp = MLP(16, "swiglu")
    x = torch.randn(3, 16)
    w_gate, w_up = mlp.c_fc.weight.chunk(2, dim=0)
    expected = mlp.c_proj(F.silu(x @ w_gate.T) * (x @ w_up.T))
    torch.testing.assert_close(mlp(x), expected)


def test_rotary_scores_depend_only_on_relative_position():
    rope = RotaryEmbedding(head_dim=8, max_seq_len=16)
    q = torch.randn(8).expand(1, 1, 16, 8)  # the same vector at every position
    k = torch.randn(8).expand(1, 1, 16, 8)
    q_rot, k_rot = rope(q, k)
    scores = (q_rot @ k_rot.transpose(-2, -1))[0, 0]  # (T, T)
    torch.testing.assert_close(scores[5, 2], scores[9, 6])  # both m - n = 3
    torch.testing.assert_close(scores[3, 3], scores[11, 11])
    assert not torch.allclose(scores[5, 2], scores[5, 3])
    torch.testing.assert_close(q_rot.norm(dim=-1), q.norm(dim=-1))  # a rotation keeps lengths
    torch.testing.assert_close(q_rot[..., 0, :], q[..., 0, :])  # position 0 is not rotated


def test_rotary_rejects_odd_head_size():
    with pytest.raises(ValueError, match="even head size"):
        RotaryEmbedding(head_dim=7, max_seq_len=4)


def test_position_tables_are_rebuilt_after_meta_materialisation():
    fresh_rope, fresh_pe = RotaryEmbedding(8, 16), SinusoidalPositions(8, 16)
    with torch.device("meta"):
        rope, pe = RotaryEmbedding(8, 16), SinusoidalPositions(8, 16)
    rope.to_empty(device="cpu").reset_parameters()
    pe.to_empty(device="cpu").reset_parameters()
    torch.testing.assert_close(rope.cos, fresh_rope.cos)
    torch.testing.assert_close(rope.sin, fresh_rope.sin)
    torch.testing.assert_close(pe.pe, fresh_pe.pe)
    assert "cos" not in rope.state_dict() and "pe" not in pe.state_dict()  # derived, not checkpointed


def test_sinusoidal_positions_follow_the_paper():
    pe = SinusoidalPositions(dim=6, max_len=10)
    table = pe(torch.arange(10))  # (10, 6)
    pos, i = 7, 2  # feature pair i -> columns 2i (sin) and 2i + 1 (cos)
    angle = pos / 10000 ** (2 * i / 6)
    torch.testing.assert_close(table[pos, 2 * i], torch.tensor(math.sin(angle)))
    torch.testing.assert_close(table[pos, 2 * i + 1], torch.tensor(math.cos(angle)))
    assert pe(torch.zeros(2, 3, dtype=torch.long)).shape == (2, 3, 6)


@pytest.mark.parametrize("causal", [True, False])
def test_attention_matches_the_textbook_formula(causal):
    attn = Attention(16, 4, causal=causal)
    x = torch.randn(2, 6, 16)
    torch.testing.assert_close(attn(x), reference_attention(attn, x, causal))


def test_causal_attention_does_not_see_the_future_and_bidirectional_does():
    x = torch.randn(1, 8, 16)
    changed = x.clone()
    changed[:, 5] += 1.0
    causal, bidirectional = Attention(16, 4, causal=True), Attention(16, 4, causal=False)
    bidirectional.load_state_dict(causal.state_dict())
    before, after = causal(x), causal(changed)
    torch.testing.assert_close(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])
    assert not torch.allclose(bidirectional(x)[:, :5], bidirectional(changed)[:, :5])


def test_cross_attention_reads_memory():
    attn = Attention(16, 4, causal=False)
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 9, 16)  # different lengths: T=5, S=9
    out = attn(x, memory=memory)
    assert out.shape == (2, 5, 16)
    assert not torch.allclose(out, attn(x, memory=memory + 1.0))
    # with memory = x, cross-attention is exactly (bidirectional) self-attention
    torch.testing.assert_close(attn(x, memory=x), attn(x))


def test_cross_attention_must_not_be_causal():
    with pytest.raises(ValueError, match="causal=False"):
        Attention(16, 4, causal=True)(torch.randn(1, 3, 16), memory=torch.randn(1, 4, 16))


@pytest.mark.parametrize("causal", [True, False])
def test_padding_mask_equals_attention_over_the_unpadded_sequence(causal):
    attn = Attention(16, 4, causal=causal)
    x = torch.randn(1, 6, 16)
    keep = torch.tensor([True] * 4 + [False] * 2).view(1, 1, 1, 6)  # the last two positions are padding
    masked = attn(x, attn_mask=keep)
    torch.testing.assert_close(masked[:, :4], attn(x[:, :4]))


def test_attention_dropout_only_in_training():
    attn = Attention(16, 4, dropout=0.5).eval()
    x = torch.randn(2, 6, 16)
    torch.testing.assert_close(attn(x), attn(x))
    attn.train()
    assert not torch.allclose(attn(x), attn(x))


def test_attention_rejects_indivisible_heads():
    with pytest.raises(ValueError, match="n_embd=10 is not divisible by n_head=3"):
        Attention(10, 3)


@pytest.mark.parametrize("mlp,norm", [("gelu", "layernorm"), ("swiglu", "rmsnorm")])
def test_block_is_pre_ln_residual(mlp, norm):
    block = Block(16, 4, mlp=mlp, norm=norm)
    x = torch.randn(2, 5, 16)
    h = x + block.attn(block.ln_1(x))
    torch.testing.assert_close(block(x), h + block.mlp(block.ln_2(h)))


def test_block_with_rotary_runs():
    block, rope = Block(16, 4), RotaryEmbedding(4, 8)
    assert block(torch.randn(2, 8, 16), rope=rope).shape == (2, 8, 16)


def test_init_gpt2_scales_residual_projections():
    n_layer = 8
    model = nn.ModuleList(Block(256, 4, bias=True) for _ in range(n_layer))
    init_gpt2_(model, n_layer)
    block = model[0]
    assert block.attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)
    residual_std = 0.02 / math.sqrt(2 * n_layer)
    assert block.attn.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert block.mlp.c_proj.weight.std().item() == pytest.approx(residual_std, rel=0.05)
    assert block.attn.c_attn.bias.abs().sum() == 0
    assert torch.equal(block.ln_1.weight, torch.ones(256))
