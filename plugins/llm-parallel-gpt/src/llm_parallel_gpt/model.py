"""GPT with parallel blocks: attention and MLP read the same normalised input and are added together.

    serial (GPT-2):       x = x + attn(ln_1(x));  x = x + mlp(ln_2(x))
    parallel (GPT-J, PaLM): x = x + attn(ln(x)) + mlp(ln(x))

Wang & Komatsuzaki 2021 (GPT-J-6B) and Chowdhery et al. 2022 (PaLM, section 2): with one input the two
branches' first matmuls can be fused, about 15% faster training at large scale, with a small quality cost
at 8B parameters and none measured at 62B. One norm per block instead of two.

Everything but the block is GPT's (``lightning_llm.models.gpt``): embeddings, positions, final norm, tied
head, KV-cache generation, GPT-2 initialisation (each block still adds two ``c_proj`` outputs to the
residual stream, so their scaling by 1 / sqrt(2 n_layer) holds) and the FLOP count (the same matmuls).
"""

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lightning_llm import register
from lightning_llm.models.blocks import MLP, Attention, KVCache, RotaryEmbedding, make_norm
from lightning_llm.models.gpt import GPT, GPTConfig

__all__ = ["ParallelBlock", "ParallelGPT", "ParallelGPTConfig"]


class ParallelBlock(nn.Module):
    """x + attn(ln(x)) + mlp(ln(x)), with causal self-attention. Called like lightning_llm's ``Block``."""

    def __init__(
        self,
        n_embd: int,
        n_head: int,
        dropout: float = 0.0,
        bias: bool = False,
        mlp: Literal["gelu", "swiglu"] = "gelu",
        norm: Literal["layernorm", "rmsnorm"] = "layernorm",
    ):
        super().__init__()
        self.ln = make_norm(norm, n_embd, bias)
        self.attn = Attention(n_embd, n_head, dropout, bias, causal=True)
        self.mlp = MLP(n_embd, mlp, bias, dropout)

    def forward(
        self, x: torch.Tensor, rope: RotaryEmbedding | None = None, kv_cache: KVCache | None = None
    ) -> torch.Tensor:
        h = self.ln(x)  # (B, T, C): the one normalised input both branches read
        return x + self.attn(h, rope=rope, kv_cache=kv_cache) + self.mlp(h)


@dataclass
class ParallelGPTConfig(GPTConfig):
    """GPT's settings (``GPTConfig``: one declaration, shared), with GPT-J's and PaLM's rotary positions."""

    positions: Literal["learned", "rotary"] = "rotary"


@register("model", "parallel_gpt")
class ParallelGPT(GPT):
    """Decoder-only GPT with parallel attention + MLP blocks (GPT-J, PaLM), trained with causal_lm.
    Forward, generation and initialisation are GPT's."""

    objectives = ("causal_lm",)
    default_objective = "causal_lm"

    def __init__(self, config: ParallelGPTConfig):
        super().__init__(config)
        # GPT's constructor builds serial blocks; swap them for parallel ones (a one-off cost at construction)
        # and initialise again, so every weight comes from init_weights() as in any lightning_llm model.
        self.blocks = nn.ModuleList(
            ParallelBlock(config.n_embd, config.n_head, config.dropout, config.bias, config.mlp, config.norm)
            for _ in range(config.n_layer)
        )
        self.init_weights()
