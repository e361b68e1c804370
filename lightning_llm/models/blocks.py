"""The Transformer's building blocks, shared by every model in this package.

Read top to bottom: normalisation, the feed-forward MLP, positions (rotary and sinusoidal), attention, the
pre-LN block, and the GPT-2 initialisation that every model applies through ``init_weights()``.
Names follow nanoGPT (``c_attn``, ``c_proj``, ``ln_1``); every module whose output is added to the residual
stream is called ``c_proj``, which is how ``init_gpt2_`` finds the projections it scales down.

Shapes: B = batch, T = query length, S = key/value length, C = n_embd, nh = n_head, hs = C // nh.
"""

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

__all__ = [
    "MLP",
    "Attention",
    "Block",
    "RotaryEmbedding",
    "SinusoidalPositions",
    "apply_rotary",
    "init_gpt2_",
    "make_norm",
    "swiglu_hidden_size",
]

NormKind = Literal["layernorm", "rmsnorm"]
MLPKind = Literal["gelu", "swiglu"]


# --------------------------------------------------------------------------- normalisation


def make_norm(kind: NormKind, dim: int, bias: bool = False) -> nn.Module:
    """LayerNorm (GPT-2, BERT) or RMSNorm (T5, LLaMA: no mean subtraction, no bias, a little cheaper)."""
    if kind == "layernorm":
        return nn.LayerNorm(dim, bias=bias)
    if kind == "rmsnorm":
        # RMSNorm has no bias by definition; an explicit eps keeps it small under bf16 parameters too
        # (torch's default is the dtype's machine epsilon, 0.0078 for bf16).
        return nn.RMSNorm(dim, eps=1e-5)
    raise ValueError(f"unknown norm '{kind}'; valid norms: layernorm, rmsnorm")


# --------------------------------------------------------------------------- feed-forward


def swiglu_hidden_size(n_embd: int, multiple_of: int = 64) -> int:
    """8/3 * n_embd rounded up to a multiple of ``multiple_of``: three matrices then cost what GELU's two
    4x ones do (Shazeer 2020, "GLU Variants Improve Transformer"; LLaMA), at a matmul-friendly width."""
    hidden = int(8 * n_embd / 3)
    return multiple_of * math.ceil(hidden / multiple_of)


class MLP(nn.Module):
    """The position-wise feed-forward network: expand, non-linearity, project back to the residual stream.

    ``gelu``: Linear(C, 4C) -> GELU -> Linear(4C, C), as in GPT-2 and BERT.
    ``swiglu``: (SiLU(x W_gate) * x W_up) W_down, as in LLaMA; gate and up share one fused Linear.
    """

    def __init__(self, n_embd: int, kind: MLPKind = "gelu", bias: bool = False, dropout: float = 0.0):
        super().__init__()
        if kind not in ("gelu", "swiglu"):
            raise ValueError(f"unknown mlp '{kind}'; valid mlps: gelu, swiglu")
        self.kind = kind
        hidden = 4 * n_embd if kind == "gelu" else swiglu_hidden_size(n_embd)
        fc_out = hidden if kind == "gelu" else 2 * hidden  # swiglu: gate and up in one matmul
        self.c_fc = nn.Linear(n_embd, fc_out, bias=bias)
        self.c_proj = nn.Linear(hidden, n_embd, bias=bias)
        self.dropout = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.c_fc(x)
        if self.kind == "gelu":
            h = F.gelu(h, approximate="tanh")  # GPT-2's tanh approximation
        else:
            gate, up = h.chunk(2, dim=-1)  # (B, T, hidden) each
            h = F.silu(gate) * up
        return self.dropout(self.c_proj(h))


# --------------------------------------------------------------------------- positions


def apply_rotary(
    q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate each (first half, second half) feature pair of q and k by its position's angle.

    q, k: (B, nh, T, hs); cos, sin: (T, hs // 2). This is the "rotate half" layout of GPT-NeoX and LLaMA,
    which pairs feature i with i + hs/2 (RoFormer pairs neighbours; the two are equivalent up to a fixed
    permutation of the head dimension). The dot product q_m . k_n then depends only on m - n.
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

    def forward(self, q: torch.Tensor, k: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate q and k (B, nh, T, hs) for positions 0..T-1."""
        T = q.size(-2)
        return apply_rotary(q, k, self.cos[:T], self.sin[:T])


class SinusoidalPositions(nn.Module):
    """The original Transformer's fixed encoding (Vaswani et al. 2017, section 3.5):
    PE[pos, 2i] = sin(pos / 10000^(2i/C)), PE[pos, 2i+1] = cos(pos / 10000^(2i/C)).

    Called like ``nn.Embedding`` with a tensor of positions, so it can stand in for a learned ``wpe``.
    """

    def __init__(self, dim: int, max_len: int, base: float = 10000.0):
        super().__init__()
        if dim % 2:
            raise ValueError(f"sinusoidal positions need an even dimension, got {dim}")
        self.dim, self.max_len, self.base = dim, max_len, base
        self.register_buffer("pe", torch.empty(max_len, dim), persistent=False)
        self.reset_parameters()

    @torch.no_grad()
    def reset_parameters(self) -> None:
        device = self.pe.device
        inv_freq = self.base ** -(torch.arange(0, self.dim, 2, device=device).float() / self.dim)
        angles = torch.outer(torch.arange(self.max_len, device=device).float(), inv_freq)  # (max_len, C/2)
        self.pe[:, 0::2] = angles.sin()
        self.pe[:, 1::2] = angles.cos()

    def forward(self, positions: torch.Tensor) -> torch.Tensor:
        return self.pe[positions]  # (*positions.shape, C)


# --------------------------------------------------------------------------- attention


class Attention(nn.Module):
    """Multi-head scaled dot-product attention (Vaswani et al. 2017), computed by
    ``F.scaled_dot_product_attention`` (flash / memory-efficient kernels where available).

    Self-attention when ``memory`` is None: queries, keys and values all come from x, through one fused
    Linear ``c_attn`` holding [W_q; W_k; W_v]. Cross-attention (the encoder-decoder's decoder) passes the
    encoder output as ``memory``: queries come from x through W_q, keys and values from memory through
    [W_k; W_v], the same weights applied as two matmuls, so one module type serves both uses.
    """

    def __init__(
        self, n_embd: int, n_head: int, dropout: float = 0.0, bias: bool = False, causal: bool = True
    ):
        super().__init__()
        if n_embd % n_head:
            raise ValueError(f"n_embd={n_embd} is not divisible by n_head={n_head}")
        self.n_embd, self.n_head, self.head_size = n_embd, n_head, n_embd // n_head
        self.causal = causal
        self.dropout = dropout  # on the attention weights, applied inside the SDPA kernel
        self.c_attn = nn.Linear(n_embd, 3 * n_embd, bias=bias)
        self.c_proj = nn.Linear(n_embd, n_embd, bias=bias)
        self.resid_dropout = nn.Dropout(dropout)

    def forward(
        self,
        x: torch.Tensor,
        memory: torch.Tensor | None = None,
        rope: RotaryEmbedding | None = None,
        attn_mask: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """x: (B, T, C); memory: (B, S, C) or None; attn_mask: bool, True where a query may attend to a key,
        broadcastable to (B, nh, T, S) (e.g. a key-padding mask of shape (B, 1, 1, S)). Returns (B, T, C)."""
        if memory is not None and (self.causal or rope is not None):
            raise ValueError(
                "cross-attention (memory given) must be built with causal=False and used without rope"
            )
        B, T, C = x.shape
        q, k, v = self._project(x, memory)  # (B, T, C), (B, S, C), (B, S, C)
        q, k, v = self._split_heads(q), self._split_heads(k), self._split_heads(v)  # (B, nh, T|S, hs)
        if rope is not None:
            q, k = rope(q, k)
        is_causal = self.causal
        if attn_mask is not None and is_causal:  # SDPA takes one or the other, so fold causality in
            attn_mask = attn_mask & torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            is_causal = False
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

    def _project(self, x: torch.Tensor, memory: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
        if memory is None:
            return self.c_attn(x).split(self.n_embd, dim=2)  # one matmul for q, k, v
        w_q, w_kv = self.c_attn.weight.split([self.n_embd, 2 * self.n_embd])
        b_q, b_kv = (
            (None, None)
            if self.c_attn.bias is None
            else self.c_attn.bias.split([self.n_embd, 2 * self.n_embd])
        )
        k, v = F.linear(memory, w_kv, b_kv).split(self.n_embd, dim=2)
        return F.linear(x, w_q, b_q), k, v

    def _split_heads(self, t: torch.Tensor) -> torch.Tensor:
        B, L, _ = t.shape
        return t.view(B, L, self.n_head, self.head_size).transpose(1, 2)  # (B, nh, L, hs)


# --------------------------------------------------------------------------- the block


class Block(nn.Module):
    """A pre-LN Transformer block (GPT-2): normalise, then add each sub-layer's output to the residual
    stream, so the stream itself is never normalised and gradients flow straight through it."""

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        dropout: float = 0.0,
        bias: bool = False,
        causal: bool = True,
        mlp: MLPKind = "gelu",
        norm: NormKind = "layernorm",
    ):
        super().__init__()
        self.ln_1 = make_norm(norm, n_embd, bias)
        self.attn = Attention(n_embd, n_head, dropout, bias, causal)
        self.ln_2 = make_norm(norm, n_embd, bias)
        self.mlp = MLP(n_embd, mlp, bias, dropout)

    def forward(
        self, x: torch.Tensor, rope: RotaryEmbedding | None = None, attn_mask: torch.Tensor | None = None
    ) -> torch.Tensor:
        x = x + self.attn(self.ln_1(x), rope=rope, attn_mask=attn_mask)
        x = x + self.mlp(self.ln_2(x))
        return x


# --------------------------------------------------------------------------- initialisation


@torch.no_grad()
def init_gpt2_(model: nn.Module, n_layer: int, std: float = 0.02) -> None:
    """GPT-2 initialisation, in place (Radford et al. 2019; nanoGPT): Linear and Embedding weights from
    N(0, std), biases zero, norms and position tables reset, and every residual projection (``c_proj``)
    from N(0, std / sqrt(2 * n_layer)) so the residual stream's variance does not grow with depth
    (each block adds to it twice).

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
    residual_std = std / math.sqrt(2 * n_layer)
    for name, module in model.named_modules():
        if name.split(".")[-1] == "c_proj":
            nn.init.normal_(module.weight, mean=0.0, std=residual_std)
