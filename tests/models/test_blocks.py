import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lightning_llm.models.blocks import (
    MLP,
    Attention,
    Block,
    DecoderBlock,
    DecoderCache,
    KVCache,
    RotaryEmbedding,
    SinusoidalPositions,
    init_gpt2_,
    make_norm,
    padding_mask,
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


@pytest.mark.parametrize("kind", ["gelu", "gelu_erf", "relu", "silu", "swiglu"])
def test_mlp_shapes(kind):
    mlp = MLP(32, kind)
    assert mlp(torch.randn(2, 5, 32)).shape == (2, 5, 32)
    expected_hidden = swiglu_hidden_size(32) if kind == "swiglu" else 128
    assert mlp.c_proj.in_features == expected_hidden
    with pytest.raises(ValueError, match="valid mlps: gelu, gelu_erf, relu, silu, swiglu"):
        MLP(32, "tanh")


@pytest.mark.parametrize(
    ("kind", "activation"),
    [
        ("gelu", lambda h: F.gelu(h, approximate="tanh")),
        ("gelu_erf", F.gelu),
        ("relu", F.relu),
        ("silu", F.silu),
    ],
)
def test_mlp_applies_its_named_non_linearity(kind, activation):
    """GPT-2's tanh GELU, BERT's exact GELU, the original Transformer's ReLU: each kind is its own."""
    mlp = MLP(16, kind)
    x = torch.randn(3, 16)
    torch.testing.assert_close(mlp(x), mlp.c_proj(activation(mlp.c_fc(x))))


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


def test_the_halves_layout_is_the_same_sinusoids_as_all_sines_then_all_cosines():
    """Marian's (and fairseq's) table: feature i of the first half is the paper's column 2i, of the second
    half its column 2i + 1."""
    paper = SinusoidalPositions(dim=6, max_len=10)(torch.arange(10))
    halves = SinusoidalPositions(dim=6, max_len=10, layout="halves")(torch.arange(10))
    torch.testing.assert_close(halves, torch.cat((paper[:, 0::2], paper[:, 1::2]), dim=-1))
    with pytest.raises(ValueError, match="valid layouts: interleaved, halves"):
        SinusoidalPositions(dim=6, max_len=10, layout="sin-cos")


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


def test_init_gpt2_residuals_per_layer_sets_the_projection_scale():
    blocks = nn.ModuleList(DecoderBlock(256, 4) for _ in range(4))
    init_gpt2_(blocks, 4, residuals_per_layer=3)
    expected = 0.02 / math.sqrt(3 * 4)
    assert blocks[0].cross_attn.c_proj.weight.std().item() == pytest.approx(expected, rel=0.05)
    assert blocks[0].cross_attn.c_attn.weight.std().item() == pytest.approx(0.02, rel=0.05)


# --------------------------------------------------------------------------- post-LN


def test_post_ln_block_normalises_after_each_residual():
    block = Block(16, 4, prenorm=False)
    x = torch.randn(2, 5, 16)
    h = block.ln_1(x + block.attn(x))
    torch.testing.assert_close(block(x), block.ln_2(h + block.mlp(h)))


@pytest.mark.parametrize("prenorm", [True, False])
def test_pre_ln_and_post_ln_stacks_both_train(prenorm):
    """A tiny causal LM built from Blocks memorises one batch, with either norm placement."""
    vocab, width = 16, 32
    wte, head = nn.Embedding(vocab, width), nn.Linear(width, vocab)
    blocks = nn.ModuleList(Block(width, 4, prenorm=prenorm) for _ in range(2))
    model = nn.ModuleList([wte, *blocks, head])
    ids = torch.randint(0, vocab, (4, 12), generator=torch.Generator().manual_seed(1))
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-3)
    losses = []
    for _ in range(60):
        x = wte(ids[:, :-1])
        for block in blocks:
            x = block(x)
        loss = F.cross_entropy(head(x).flatten(0, 1), ids[:, 1:].flatten())
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


# --------------------------------------------------------------------------- KV cache


def test_kv_cache_appends_and_returns_everything_cached():
    cache = KVCache(max_len=5)
    k1, v1 = torch.randn(2, 3, 3, 4), torch.randn(2, 3, 3, 4)  # (B, nh, T, hs)
    keys, values = cache.append(k1, v1)
    assert cache.length == 3 and keys.shape == (2, 3, 3, 4)
    k2, v2 = torch.randn(2, 3, 2, 4), torch.randn(2, 3, 2, 4)
    keys, values = cache.append(k2, v2)
    torch.testing.assert_close(keys, torch.cat([k1, k2], dim=2))
    torch.testing.assert_close(values, torch.cat([v1, v2], dim=2))
    with pytest.raises(ValueError, match="KVCache is full: it holds 5 positions, 5 are used and 1 more"):
        cache.append(k2[:, :, :1], v2[:, :, :1])


def test_kv_cache_reorder_moves_rows():
    cache = KVCache(max_len=4)
    k = torch.arange(3.0).view(3, 1, 1, 1).expand(3, 2, 2, 4)  # row b holds the value b
    cache.append(k, k)
    cache.reorder(torch.tensor([2, 2, 0]))
    keys, _ = cache.cached()
    assert keys[:, 0, 0, 0].tolist() == [2.0, 2.0, 0.0]
    with pytest.raises(ValueError, match="max_len >= 1"):
        KVCache(0)
    with pytest.raises(ValueError, match="empty"):
        KVCache(3).cached()


@pytest.mark.parametrize("use_rope", [False, True])
def test_cached_attention_equals_full_attention(use_rope):
    """A prompt, single tokens, then a chunk: every query sees exactly its own past, as without a cache."""
    attn = Attention(16, 4, causal=True).eval()
    rope = RotaryEmbedding(4, 16) if use_rope else None
    x = torch.randn(2, 10, 16)
    full = attn(x, rope=rope)
    cache = KVCache(10)
    chunks = [(0, 4), (4, 5), (5, 6), (6, 9), (9, 10)]
    cached = torch.cat([attn(x[:, a:b], rope=rope, kv_cache=cache) for a, b in chunks], dim=1)
    torch.testing.assert_close(cached, full, atol=1e-5, rtol=1e-5)
    assert cache.length == 10


def test_cached_attention_combines_causality_with_a_key_mask():
    attn = Attention(16, 4, causal=True).eval()
    x = torch.randn(1, 6, 16)
    keep = torch.tensor([True, False, True, True, True, True]).view(1, 1, 1, 6)  # key 1 is hidden
    full = attn(x, attn_mask=keep)
    cache = KVCache(6)
    first = attn(x[:, :3], attn_mask=keep[..., :3], kv_cache=cache)
    rest = attn(x[:, 3:], attn_mask=keep, kv_cache=cache)
    torch.testing.assert_close(torch.cat([first, rest], dim=1), full, atol=1e-5, rtol=1e-5)


def test_rotary_offset_matches_the_full_table():
    rope = RotaryEmbedding(8, 16)
    q, k = torch.randn(1, 2, 10, 8), torch.randn(1, 2, 10, 8)
    q_full, k_full = rope(q, k)
    q_tail, k_tail = rope(q[:, :, 6:], k[:, :, 6:], offset=6)
    torch.testing.assert_close(q_tail, q_full[:, :, 6:])
    torch.testing.assert_close(k_tail, k_full[:, :, 6:])
    with pytest.raises(ValueError, match="exceed the rotary table's 16"):
        rope(q, k, offset=7)


def test_cross_attention_cache_projects_memory_once():
    attn = Attention(16, 4, causal=False).eval()
    x, memory = torch.randn(2, 3, 16), torch.randn(2, 7, 16)
    cache = KVCache(7)
    first = attn(x, memory=memory, kv_cache=cache)
    torch.testing.assert_close(first, attn(x, memory=memory))
    # once filled, the cached keys and values are used, whatever memory is passed
    torch.testing.assert_close(attn(x, memory=memory + 1.0, kv_cache=cache), first)
    assert cache.length == 7


def test_padding_mask_shape_and_errors():
    mask = padding_mask(torch.tensor([[1, 1, 0], [1, 0, 0]]))
    assert mask.shape == (2, 1, 1, 3) and mask.dtype == torch.bool
    with pytest.raises(ValueError, match=r"\(batch, seq_len\)"):
        padding_mask(torch.ones(3, dtype=torch.bool))


# --------------------------------------------------------------------------- decoder block


@pytest.fixture
def decoder_block() -> DecoderBlock:
    return DecoderBlock(16, 4).eval()


def test_decoder_block_reads_memory(decoder_block):
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    out = decoder_block(x, memory)
    assert out.shape == (2, 5, 16)
    assert not torch.allclose(out, decoder_block(x, memory + 0.5))


def test_decoder_block_ignores_padded_memory(decoder_block):
    x, memory = torch.randn(2, 5, 16), torch.randn(2, 7, 16)
    real = torch.tensor([[True] * 7, [True] * 4 + [False] * 3])  # row 1: last 3 source positions are padding
    out = decoder_block(x, memory, padding_mask(real))
    changed = memory.clone()
    changed[1, 4:] = torch.randn(3, 16) * 10
    torch.testing.assert_close(decoder_block(x, changed, padding_mask(real)), out)
    # and padding is the same as a shorter memory
    torch.testing.assert_close(out[1:], decoder_block(x[1:], memory[1:, :4]))


def test_decoder_block_self_attention_does_not_see_the_future(decoder_block):
    x, memory = torch.randn(1, 8, 16), torch.randn(1, 6, 16)
    changed = x.clone()
    changed[:, 5] += 1.0
    before, after = decoder_block(x, memory), decoder_block(changed, memory)
    torch.testing.assert_close(before[:, :5], after[:, :5])
    assert not torch.allclose(before[:, 5:], after[:, 5:])


@pytest.mark.parametrize("prenorm", [True, False])
def test_decoder_block_with_cache_equals_without(prenorm):
    block = DecoderBlock(16, 4, prenorm=prenorm).eval()
    x, memory = torch.randn(2, 6, 16), torch.randn(2, 5, 16)
    mask = padding_mask(torch.tensor([[True] * 5, [True] * 3 + [False] * 2]))
    full = block(x, memory, mask)
    cache = DecoderCache(KVCache(6), KVCache(5))
    steps = [block(x[:, :3], memory, mask, cache=cache)] + [
        block(x[:, t : t + 1], memory, mask, cache=cache) for t in range(3, 6)
    ]
    torch.testing.assert_close(torch.cat(steps, dim=1), full, atol=1e-5, rtol=1e-5)


def test_post_ln_decoder_block_normalises_after_each_residual():
    block = DecoderBlock(16, 4, prenorm=False).eval()
    x, memory = torch.randn(2, 4, 16), torch.randn(2, 6, 16)
    h = block.ln_1(x + block.attn(x))
    h = block.ln_2(h + block.cross_attn(h, memory=memory))
    torch.testing.assert_close(block(x, memory), block.ln_3(h + block.mlp(h)))
