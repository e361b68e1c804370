"""The Transformer's building blocks, shared by every model in this package.

Read top to bottom: normalisation, the feed-forward MLP, positions (rotary and sinusoidal), the key/value
cache that generation uses, attention, the encoder/GPT block and the encoder-decoder's decoder block (each
pre-LN or post-LN), and the GPT-2 initialisation that every model applies through ``init_weights()``.
Names follow nanoGPT (``c_attn``, ``c_proj``, ``ln_1``); every module whose output is added to the residual
stream is called ``c_proj``, which is how ``init_gpt2_`` finds the projections it scales down.

Shapes: B = batch, T = query length, S = key/value length, C = n_embd, nh = n_head, hs = C // nh.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MLP",
    "Attention",
    "Block",
    "DecoderBlock",
    "DecoderCache",
    "KVCache",
    "RotaryEmbedding",
    "SinusoidalPositions",
    "apply_rotary",
    "init_gpt2_",
    "make_norm",
    "padding_mask",
    "residual",
    "swiglu_hidden_size",
]

NormKind = Literal["layernorm", "rmsnorm"]
MLPKind = Literal["gelu", "gelu_erf", "relu", "silu", "swiglu"]
MLP_KINDS: tuple[str, ...] = ("gelu", "gelu_erf", "relu", "silu", "swiglu")
PositionsLayout = Literal["interleaved", "halves"]


# --------------------------------------------------------------------------- normalisation


MAX_LAYERS = 10_000  # the deepest published Transformers have a few hundred


def check_shape(config: object, positive: tuple[str, ...]) -> None:
    """The checks every Transformer config shares; messages name the ``model.<key>`` to fix."""
    for key in positive:
        if getattr(config, key) < 1:
            raise ValueError(f"model.{key} must be >= 1, got {getattr(config, key)}")
        if "layer" in key and getattr(config, key) > MAX_LAYERS:  # building it would take hours, then fail
            raise ValueError(f"model.{key}={getattr(config, key)}: at most {MAX_LAYERS:,} layers")
    n_embd, n_head = config.n_embd, config.n_head
    if n_embd % n_head:
        raise ValueError(f"model.n_embd={n_embd} is not divisible by model.n_head={n_head}")
    if not 0.0 <= config.dropout < 1.0:
        raise ValueError(f"model.dropout must be in [0, 1), got {config.dropout}")


def check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ValueError(f"model.{key}={value!r} is not valid; choose one of: {', '.join(choices)}")


def padded_vocab_size(vocab_size: int, multiple: int) -> int:
    """Embedding and head rows rounded up to a multiple: matmuls run fastest on multiples of 64."""
    return multiple * math.ceil(vocab_size / multiple)


def make_norm(kind: NormKind, dim: int, bias: bool = False, eps: float = 1e-5) -> nn.Module:
    """LayerNorm (GPT-2, BERT) or RMSNorm (T5, LLaMA: no mean subtraction, no bias, a little cheaper).
    ``eps`` is 1e-5 in GPT-2 and Marian, 1e-12 in BERT."""
    if kind == "layernorm":
        return nn.LayerNorm(dim, eps=eps, bias=bias)
    if kind == "rmsnorm":
        # RMSNorm has no bias by definition; an explicit eps keeps it small under bf16 parameters too
        # (torch's default is the dtype's machine epsilon, 0.0078 for bf16).
        return nn.RMSNorm(dim, eps=eps)
    raise ValueError(f"unknown norm '{kind}'; valid norms: layernorm, rmsnorm")


# --------------------------------------------------------------------------- feed-forward


def swiglu_hidden_size(n_embd: int, multiple_of: int = 64) -> int:
    """8/3 * n_embd rounded up to a multiple of ``multiple_of``: three matrices then cost what GELU's two
    4x ones do (Shazeer 2020, "GLU Variants Improve Transformer"; LLaMA), at a matmul-friendly width."""
    hidden = int(8 * n_embd / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


class MLP(nn.Module):
    """The position-wise feed-forward network: expand, non-linearity, project back to the residual stream.

    ``gelu``: Linear(C, 4C) -> GELU (tanh approximation) -> Linear(4C, C), as in GPT-2.
    ``gelu_erf``: the same with the exact (erf) GELU, as in BERT.
    ``relu``: the same with ReLU, as in the original Transformer (Vaswani et al. 2017).
    ``silu``: the same with SiLU ("swish"), as in the Marian (OPUS-MT) translation models.
    ``swiglu``: (SiLU(x W_gate) * x W_up) W_down, as in LLaMA; gate and up share one fused Linear.
    """

    def __init__(self, n_embd: int, kind: MLPKind = "gelu", bias: bool = False, dropout: float = 0.0):
        super().__init__()
        if kind not in MLP_KINDS:
            raise ValueError(f"unknown mlp '{kind}'; valid mlps: {', '.join(MLP_KINDS)}")
        self.kind = kind
        hidden = swiglu_hidden_size(n_embd) if kind == "swiglu" else 4 * n_embd
        fc_out = 2 * hidden if kind == "swiglu" else hidden  # swiglu: gate and up in one matmul
        self.c_fc = nn.Linear(n_embd, fc_out, bias=bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        if self.kind == "gelu":
            h = F.gelu(h, approximate="tanh")  # GPT-2's tanh approximation
        elif self.kind == "gelu_erf":
            h = F.gelu(h)
        elif self.kind == "relu":
            h = F.relu(h)
        elif self.kind == "silu":
            h = F.silu(h)
        else:
            gate, up = h.chunk(2, dim=-1)  # (B, T, hidden) each
            h = F.silu(gate) * up
        return self.dropout(self.c_proj(h))


# --------------------------------------------------------------------------- positions


def apply_rotary(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each (first half, second half) feature pair of q and k by its position's angle.

    q, k: (B, nh, T, hs); cos, sin: (T, hs // 2), or (B, 1, T, hs // 2) per row. This is the "rotate half"
    layout of GPT-NeoX and LLaMA, which pairs feature i with i + hs/2 (RoFormer pairs neighbours; the two are
    equivalent up to a fixed permutation of the head dimension). The dot product q_m . k_n then depends only
    on m - n.
    """
    cos, sin = cos.to(q.dtype), sin.to(q.dtype)  # fp32 tables, bf16 activations under autocast

    def rotate(x: torch.Tensor) -> torch.Tensor:
        x1, x2 = x.chunk(2, dim=-1)  # (B, nh, T, hs/2) each
        return torch.cat((x1 * cos - x2 * sin, x1 * sin + x2 * cos), dim=-1)  # (B, nh, T, hs)

    return rotate(q), rotate(k)


class RotaryEmbedding(nn.Module):
    """Rotary position embedding (Su et al. 2021, RoFormer), with cos/sin tables for ``max_seq_len``.

    The tables are non-persistent buffers: they are derived, so they stay out of checkpoints, and
    ``reset_parameters()`` recomputes them after a model built on the meta device is materialised.
    """

    def __init__(self, head_dim: int, max_seq_len: int, base: float = 10000.0):
        super().__init__()
        if head_dim % 2:
            raise ValueError(f"rotary embeddings need an even head size, got {head_dim}")
        self.head_dim, self.max_seq_len, self.base = head_dim, max_seq_len, base
        self.register_buffer("cos", torch.empty(max_seq_len, head_dim // 2), persistent=False)
        self.register_buffer("sin", torch.empty(max_seq_len, head_dim // 2), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        device = self.cos.device
        # theta_i = base^(-2i / hs), one frequency per feature pair
        inv_freq = self.base ** -(torch.arange(0, self.head_dim, 2, device=device).float() / self.head_dim)
        positions = torch.arange(self.max_seq_len, device=device).float()
        angles = torch.outer(positions, inv_freq)  # (max_seq_len, hs/2)
        self.cos.copy_(angles.cos())
        self.sin.copy_(angles.sin())

    def forward(
        self, q: torch.Tensor, k: torch.Tensor, offset: int = 0, positions: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate q and k (B, nh, T, hs) for positions offset..offset+T-1 (offset: tokens already cached),
        or for each row's own ``positions`` (B, T) (left-padded batches, whose rows start at different
        columns)."""
        if positions is not None:  # (B, T) -> (B, 1, T, hs/2), broadcast over the heads
            return apply_rotary(q, k, self.cos[positions][:, None], self.sin[positions][:, None])
        T = q.size(-2)
        if offset + T > self.max_seq_len:
            raise ValueError(f"positions up to {offset + T} exceed the rotary table's {self.max_seq_len}")
        return apply_rotary(q, k, self.cos[offset : offset + T], self.sin[offset : offset + T])


class SinusoidalPositions(nn.Module):
    """The original Transformer's fixed encoding (Vaswani et al. 2017, section 3.5):
    PE[pos, 2i] = sin(pos / 10000^(2i/C)), PE[pos, 2i+1] = cos(pos / 10000^(2i/C)).

    ``layout="halves"`` stores the same values as [all sines | all cosines] (Marian, fairseq): a fixed
    permutation of the features, equivalent for a model trained with it, but not interchangeable.
    Called like ``nn.Embedding`` with a tensor of positions, so it can stand in for a learned ``wpe``.
    """

    def __init__(
        self, dim: int, max_len: int, base: float = 10000.0, layout: PositionsLayout = "interleaved"
    ):
        super().__init__()
        if dim % 2:
            raise ValueError(f"sinusoidal positions need an even dimension, got {dim}")
        if layout not in ("interleaved", "halves"):
            raise ValueError(f"unknown positions layout '{layout}'; valid layouts: interleaved, halves")
        self.dim, self.max_len, self.base, self.layout = dim, max_len, base, layout
        self.register_buffer("pe", torch.empty(max_len, dim), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        device = self.pe.device
        inv_freq = self.base ** -(torch.arange(0, self.dim, 2, device=device).float() / self.dim)
        angles = torch.outer(torch.arange(self.max_len, device=device).float(), inv_freq)  # (max_len, C/2)
        if self.layout == "halves":
            self.pe.copy_(torch.cat((angles.sin(), angles.cos()), dim=-1))
        else:
            self.pe[:, 0::2] = angles.sin()
            self.pe[:, 1::2] = angles.cos()

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.pe[positions]  # (*positions.shape, C)


# --------------------------------------------------------------------------- key/value cache


class KVCache:
    """One attention layer's keys and values, kept between generation steps.

    Without a cache every new token recomputes the keys and values of the whole prefix; with one, each step
    projects only the new positions and appends them. The buffers, (B, nh, max_len, hs) each, are allocated
    at the first ``append`` with that call's batch size, dtype and device, so under autocast they hold what
    attention actually computes (bf16) and one cache type serves every model and precision.
    """

    def __init__(self, max_len: int):
        if max_len < 1:
            raise ValueError(f"a KVCache needs max_len >= 1, got {max_len}")
        self.max_len = max_len
        self.length = 0  # positions filled so far
        self.keys: torch.Tensor | None = None  # (B, nh, max_len, hs) once allocated
        self.values: torch.Tensor | None = None

    def append(self, k: torch.Tensor, v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Store k, v (B, nh, T, hs) after the cached positions; return every cached key and value
        (B, nh, length, hs), the new ones included."""
        T = k.size(2)
        if self.length + T > self.max_len:
            raise ValueError(
                f"KVCache is full: it holds {self.max_len} positions, {self.length} are used and "
                f"{T} more were appended; make the cache with a larger max_len"
            )
        if self.keys is None:
            B, nh, _, hs = k.shape
            self.keys = k.new_empty(B, nh, self.max_len, hs)  # (B, nh, max_len, hs)
            self.values = v.new_empty(B, nh, self.max_len, hs)
        self.keys[:, :, self.length : self.length + T] = k
        self.values[:, :, self.length : self.length + T] = v
        self.length += T
        return self.cached()

    def cached(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The keys and values stored so far, (B, nh, length, hs) each (views, not copies)."""
        if self.keys is None:
            raise ValueError("the KVCache is empty; append keys and values first")
        return self.keys[:, :, : self.length], self.values[:, :, : self.length]

    def reorder(self, index: torch.Tensor) -> None:
        """Make row ``index[i]`` the new row i (beam search: each surviving beam extends some earlier beam,
        so it inherits that beam's keys and values)."""
        if self.keys is not None:
            self.keys = self.keys.index_select(0, index)
            self.values = self.values.index_select(0, index)


@dataclass
class DecoderCache:
    """What one decoder layer keeps between generation steps."""

    self_attn: KVCache  # the generated tokens' keys and values; grows by the new tokens at every step
    cross_attn: KVCache  # the encoder output's keys and values: computed at the first step, then reused


def padding_mask(attention_mask: torch.Tensor) -> torch.Tensor:
    """A key-padding mask for ``Attention``: (B, S), True = real token -> bool (B, 1, 1, S), which
    broadcasts over heads and queries so that no query attends to a padded key."""
    if attention_mask.dim() != 2:
        raise ValueError(
            f"attention_mask must have shape (batch, seq_len), got {tuple(attention_mask.shape)}"
        )
    return attention_mask.bool()[:, None, None, :]  # (B, 1, 1, S)


# --------------------------------------------------------------------------- attention


class Attention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017), computed by
    ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels where available).

    Self-attention when ``memory`` is None: queries, keys and values all come from x, through one fused
    Linear ``c_attn`` holding [W_q; W_k; W_v]. Cross-attention (the encoder-decoder's decoder) passes the
    encoder output as ``memory``: queries come from x through W_q, keys and values from memory through
    [W_k; W_v], the same weights applied as two matmuls, so one module type serves both uses.

    With a ``kv_cache``, self-attention appends the new positions' keys and values and attends over all
    cached ones; cross-attention projects the memory into the (empty) cache once and reads it afterwards.
    """

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        dropout: float = 0.0,
        bias: bool = False,
        causal: bool = True,
        attn_dropout: float | None = None,
    ):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} is not divisible by n_head={n_head}")
        self.n_embd, self.n_head, self.head_size = n_embd, n_head, n_embd // n_head
        self.causal = causal
        # On the attention weights, inside the SDPA kernel; None: ``dropout``, as on the output.
        self.dropout = dropout if attn_dropout is None else attn_dropout
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        rope: RotaryEmbedding | None = None,
        attn_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, T, C); memory: (B, S, C) or None; attn_mask: bool, True where a query may attend to a key,
        broadcastable to (B, nh, T, S) (e.g. a key-padding mask of shape (B, 1, 1, S)), where S counts the
        cached positions too; kv_cache: see the class docstring; positions: (B, T) each row's positions for
        rope (left-padded rows), None: the columns'. Returns (B, T, C)."""
        if memory is not None and (self.causal or rope is not None):
            raise ValueError(
                "cross-attention (memory given) must be built with causal=False and used without rope"
            )
        B, T, C = x.shape
        if memory is None:
            q, k, v = self._self_qkv(x, rope, kv_cache, positions)  # (B, nh, T, hs), (B, nh, S, hs) x 2
        else:
            q, k, v = self._cross_qkv(x, memory, kv_cache)
        attn_mask, is_causal = self._mask(attn_mask, T, k.size(2), x.device)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=attn_mask,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=is_causal,
        )  # (B, nh, T, hs)
        y = y.transpose(1, 2).contiguous().view(B, T, C)  # (B, T, C): heads side by side again
        return self.resid_dropout(self.c_proj(y))

    def _self_qkv(
        self,
        x: torch.Tensor,
        rope: RotaryEmbedding | None,
        kv_cache: KVCache | None,
        positions: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        q, k, v = self.c_attn(x).split(self.n_embd, dim=2)  # one matmul for q, k, v: (B, T, C) each
        q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)  # (B, nh, T, hs)
        offset = 0 if kv_cache is None else kv_cache.length  # the new tokens' first position
        if rope is not None:
            q, k = rope(q, k, offset=offset, positions=positions)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)  # (B, nh, offset + T, hs)
        return q, k, v

    def _cross_qkv(
        self, x: torch.Tensor, memory: torch.Tensor, kv_cache: KVCache | None
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        weight = (
            self.c_attn.effective_weight() if hasattr(self.c_attn, "effective_weight") else self.c_attn.weight
        )
        w_q, w_kv = weight.split([self.n_embd, 2 * self.n_embd])  # LoRA's adapter included (models/lora.py)
        b_q, b_kv = (
            (None, None)
            if self.c_attn.bias is None
            else self.c_attn.bias.split([self.n_embd, 2 * self.n_embd])
        )
        q = self._split_heads(F.linear(x, w_q, b_q))  # (B, nh, T, hs)
        if kv_cache is not None and kv_cache.length > 0:
            return q, *kv_cache.cached()  # the memory's keys and values, projected at the first step
        k, v = F.linear(memory, w_kv, b_kv).split(self.n_embd, dim=2)  # (B, S, C) each
        k, v = self._split_heads(k), self._split_heads(v)  # (B, nh, S, hs)
        if kv_cache is not None:
            k, v = kv_cache.append(k, v)
        return q, k, v

    def _mask(
        self, attn_mask: torch.Tensor | None, T: int, S: int, device: torch.device
    ) -> tuple[torch.Tensor | None, bool]:
        """The (attn_mask, is_causal) pair for SDPA, with causality folded into the mask where needed.

        The T queries are the last T of the S key positions (S > T when earlier ones are cached). SDPA's
        is_causal aligns its triangle to the top-left, which is right only when S == T; a single new query
        may attend to everything, so it needs no mask at all.
        """
        if not self.causal or T == 1:
            return attn_mask, False
        if attn_mask is None and S == T:
            return None, True
        causal = torch.ones(T, S, dtype=torch.bool, device=device).tril(diagonal=S - T)  # (T, S)
        return (causal if attn_mask is None else attn_mask & causal), False

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        B, L, _ = t.shape
        return t.view(B, L, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, L, hs)


# --------------------------------------------------------------------------- the blocks


def residual(
    x: torch.Tensor, norm: nn.Module, sublayer: Callable[[torch.Tensor], torch.Tensor], prenorm: bool
) -> torch.Tensor:
    """One residual sub-layer, pre-LN or post-LN.

    Pre-LN (GPT-2, T5): ``x + sublayer(norm(x))``; the residual stream itself is never normalised, so
    gradients flow straight through it and deep stacks train without warm-up tricks.
    Post-LN (Vaswani et al. 2017, BERT): ``norm(x + sublayer(x))``; every block's output is normalised.
    """
    if prenorm:
        return x + sublayer(norm(x))
    return norm(x + sublayer(x))


class Block(nn.Module):
    """A Transformer block: self-attention, then the MLP, each a residual sub-layer (pre-LN by default).
    Causal for GPT and the encoder-decoder's decoder side, bidirectional (causal=False) for encoders."""

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        dropout: float = 0.0,
        bias: bool = False,
        causal: bool = True,
        mlp: MLPKind = "gelu",
        norm: NormKind = "layernorm",
        prenorm: bool = True,
        norm_eps: float = 1e-5,
        attn_dropout: float | None = None,
    ):
        super().__init__()
        self.prenorm = prenorm
        self.ln_1 = make_norm(norm, n_embd, bias, norm_eps)
        self.attn = Attention(n_embd, n_head, dropout, bias, causal, attn_dropout)
        self.ln_2 = make_norm(norm, n_embd, bias, norm_eps)
        self.mlp = MLP(n_embd, mlp, bias, dropout)

    def forward(
        self,
        x: torch.Tensor,
        rope: RotaryEmbedding | None = None,
        attn_mask: torch.Tensor | None = None,
        kv_cache: KVCache | None = None,
        positions: torch.Tensor | None = None,
    ) -> torch.Tensor:
        def attend(h: torch.Tensor) -> torch.Tensor:
            return self.attn(h, rope=rope, attn_mask=attn_mask, kv_cache=kv_cache, positions=positions)

        x = residual(x, self.ln_1, attend, self.prenorm)
        return residual(x, self.ln_2, self.mlp, self.prenorm)


class DecoderBlock(nn.Module):
    """The encoder-decoder's decoder layer (Vaswani et al. 2017, section 3.1): causal self-attention over
    the target so far, cross-attention over the encoder's output (``memory``), then the MLP, each a
    residual sub-layer with its own norm."""

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        dropout: float = 0.0,
        bias: bool = False,
        mlp: MLPKind = "gelu",
        norm: NormKind = "layernorm",
        prenorm: bool = True,
        norm_eps: float = 1e-5,
        attn_dropout: float | None = None,
    ):
        super().__init__()
        self.prenorm = prenorm
        self.ln_1 = make_norm(norm, n_embd, bias, norm_eps)
        self.attn = Attention(n_embd, n_head, dropout, bias, True, attn_dropout)
        self.ln_2 = make_norm(norm, n_embd, bias, norm_eps)
        self.cross_attn = Attention(n_embd, n_head, dropout, bias, False, attn_dropout)
        self.ln_3 = make_norm(norm, n_embd, bias, norm_eps)
        self.mlp = MLP(n_embd, mlp, bias, dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        cache: DecoderCache | None = None,
    ) -> torch.Tensor:
        """x: (B, T, C) target; memory: (B, S, C) encoder output; memory_mask: bool, True at real source
        tokens, broadcastable to (B, nh, T, S) (``padding_mask(attention_mask)``). Returns (B, T, C)."""
        self_cache, cross_cache = (None, None) if cache is None else (cache.self_attn, cache.cross_attn)

        def attend_self(h: torch.Tensor) -> torch.Tensor:
            return self.attn(h, kv_cache=self_cache)

        def attend_memory(h: torch.Tensor) -> torch.Tensor:
            return self.cross_attn(h, memory=memory, attn_mask=memory_mask, kv_cache=cross_cache)

        x = residual(x, self.ln_1, attend_self, self.prenorm)
        x = residual(x, self.ln_2, attend_memory, self.prenorm)
        return residual(x, self.ln_3, self.mlp, self.prenorm)


# --------------------------------------------------------------------------- initialisation


@torch.no_grad()
def init_gpt2_(model: nn.Module, n_layer: int, std: float = 0.02, residuals_per_layer: int = 2) -> None:
    """GPT-2 initialisation, in place (Radford et al. 2019; nanoGPT): Linear and Embedding weights from
    N(0, std), biases zero, norms and position tables reset, and every residual projection (``c_proj``)
    from N(0, std / sqrt(residuals_per_layer * n_layer)) so the residual stream's variance does not grow
    with depth (a GPT block adds to it twice; a decoder block with cross-attention, three times).

    Written for models built on the meta device and materialised with ``to_empty()``: it touches every
    parameter and buffer, relying on nothing the constructor did.
    """
    for module in model.modules():
        if isinstance(module, nn.Linear | nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if getattr(module, "bias", None) is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm | nn.RMSNorm | RotaryEmbedding | SinusoidalPositions):
            module.reset_parameters()
    residual_std = std / math.sqrt(residuals_per_layer * n_layer)
    for name, module in model.named_modules():
        if name.split(".")[-1] == "c_proj":
            nn.init.normal_(module.weight, mean=0.0, std=residual_std)
