"""GPT: a decoder-only Transformer language model (Radford et al. 2018, 2019), after nanoGPT.

Tokens are embedded, positions added (learned, or rotary inside attention), ``n_layer`` pre-LN blocks with
causal self-attention transform the sequence, and a final norm plus the language-model head give the
next-token logits at every position. The blocks come from ``lightning_llm.models.blocks``.

Generation passes a KV cache (``new_kv_cache()``) so each new token is one position's worth of work; the
logits are the same as without it (``lightning_llm.models.sampling.generate`` drives the loop).
"""

from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn

from lightning_llm.models.blocks import (
    MLP_KINDS,
    Block,
    KVCache,
    MLPKind,
    RotaryEmbedding,
    check_choice,
    check_shape,
    init_gpt2_,
    make_norm,
    padded_vocab_size,
)
from lightning_llm.models.chunked_head import TokenScores, linear_cross_entropy
from lightning_llm.registry import register

__all__ = ["GPT", "GPTConfig", "padded_positions"]


@dataclass
class GPTConfig:
    vocab_size: int  # from the tokenizer
    n_layer: int = 4  # Transformer blocks
    n_head: int = 4  # attention heads per block; must divide n_embd
    n_embd: int = 256  # width of the residual stream
    block_size: int = 256  # the longest sequence the model accepts (the size of the position table)
    dropout: float = 0.0  # pretraining on enough data rarely needs it; fine-tuning may
    bias: bool = False  # biases in Linear and LayerNorm: GPT-2 had them; without is a little faster, no worse
    positions: Literal["learned", "rotary"] = "learned"  # GPT-2's table, or RoPE (relative, extrapolates)
    mlp: MLPKind = "gelu"  # tanh GELU at 4x width (GPT-2), or gated at ~8/3x width (swiglu, LLaMA)
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"  # GPT-2's, or LLaMA's and T5's
    tie_embeddings: bool = True  # the head reuses the token embedding: fewer parameters, no loss in quality
    # Embedding and head rows are padded up to a multiple of this: matmul kernels run fastest when the
    # dimensions are multiples of 64 (nanoGPT pads GPT-2's 50257 to 50304 for a ~25% faster head).
    pad_vocab_to: int = 64

    def __post_init__(self) -> None:
        check_shape(self, ("vocab_size", "n_layer", "n_head", "n_embd", "block_size", "pad_vocab_to"))
        check_choice("positions", self.positions, ("learned", "rotary"))
        check_choice("mlp", self.mlp, MLP_KINDS)
        check_choice("norm", self.norm, ("layernorm", "rmsnorm"))
        if self.positions == "rotary" and self.head_size % 2:
            raise ValueError(
                f"model.positions=rotary needs an even head size, but model.n_embd={self.n_embd} / "
                f"model.n_head={self.n_head} = {self.head_size}"
            )

    @property
    def head_size(self) -> int:
        return self.n_embd // self.n_head

    @property
    def padded_vocab_size(self) -> int:
        return padded_vocab_size(self.vocab_size, self.pad_vocab_to)


def padded_positions(attention_mask: torch.Tensor, T: int) -> tuple[torch.Tensor, torch.Tensor]:
    """For the last T columns of a left-padded ``attention_mask`` (B, S): each row's positions (B, T),
    counted from its first real token, and the attention mask (B, 1, T, S): causal, never a padded key, and
    every query its own key too (a padding query with no key at all would give NaN, which the next layer's
    values would carry into real rows)."""
    keys = attention_mask.bool()
    S = keys.size(1)
    positions = (keys.long().cumsum(dim=1) - 1).clamp(min=0)[:, S - T :]  # (B, T)
    query_columns = torch.arange(S - T, S, device=keys.device)[:, None]  # (T, 1)
    key_columns = torch.arange(S, device=keys.device)[None, :]  # (1, S)
    allowed = (keys[:, None, :] & (key_columns <= query_columns)) | (key_columns == query_columns)
    return positions, allowed[:, None]  # (B, T), (B, 1, T, S)


@register("model", "gpt")
class GPT(nn.Module):
    """Decoder-only GPT language model (GPT-2 shape with modern options), trained with causal_lm."""

    objectives = ("causal_lm",)
    default_objective = "causal_lm"
    chunks_its_loss = True  # forward(input_ids, labels=..., loss_chunk=n): the loss without whole logits
    output_heads = ("lm_head",)  # read as a weight by that loss: no LoRA adapter there (models/lora.py)

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = config
        self.wte = nn.Embedding(config.padded_vocab_size, config.n_embd)
        learned = config.positions == "learned"
        self.wpe = nn.Embedding(config.block_size, config.n_embd) if learned else None
        self.rope = None if learned else RotaryEmbedding(config.head_size, config.block_size)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(
                config.n_embd,
                config.n_head,
                config.dropout,
                config.bias,
                causal=True,
                mlp=config.mlp,
                norm=config.norm,
            )
            for _ in range(config.n_layer)
        )
        self.ln_f = make_norm(config.norm, config.n_embd, config.bias)
        self.lm_head = nn.Linear(config.n_embd, config.padded_vocab_size, bias=False)
        self.init_weights()

    def init_weights(self) -> None:
        """GPT-2 initialisation of every parameter and buffer; safe to call again after ``to_empty()``."""
        self._tie_weights()
        init_gpt2_(self, self.config.n_layer)

    def _tie_weights(self) -> None:
        # Press & Wolf 2017: input and output embeddings share one matrix. Done here rather than only in
        # the constructor because to_empty() materialises each module's Parameter separately, untying them.
        if self.config.tie_embeddings and self.lm_head.weight is not self.wte.weight:
            self.lm_head.weight = self.wte.weight

    def forward(
        self,
        input_ids: torch.Tensor,
        kv_cache: list[KVCache] | None = None,
        labels: torch.Tensor | None = None,
        loss_chunk: int = 0,
        attention_mask: torch.Tensor | None = None,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, TokenScores]:
        """input_ids: (B, T) token ids -> logits (B, T, vocab_size) for the token after each position.

        With ``kv_cache`` (from ``new_kv_cache``), input_ids are the tokens after the cached ones: their
        positions start at the cache's length, and their keys and values are appended to it.

        ``attention_mask`` (B, cached + T), False at left padding: rows of different lengths in one batch
        (``sampling.generate``). Each row's positions then count from its first real token, and no token
        attends to padding.

        With ``labels`` (B, T) and ``loss_chunk`` > 0 it returns (summed cross-entropy, labelled tokens,
        TokenScores) instead, computed ``loss_chunk`` tokens at a time so the logits never exist whole
        (``objectives/chunked_head.py``). Inside forward, so FSDP has the head's weight gathered.
        """
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, seq_len), got {tuple(input_ids.shape)}")
        offset = 0 if kv_cache is None else kv_cache[0].length  # tokens already seen
        end = offset + input_ids.size(1)
        if end > self.config.block_size:
            raise ValueError(
                f"sequence length {end} exceeds model.block_size={self.config.block_size}"
                + (f" ({offset} cached + {input_ids.size(1)} new)" if offset else "")
            )
        positions, padding = None, {}  # padding: only for left-padded batches (a plugin's blocks need not)
        if attention_mask is not None:
            positions, attn_mask = padded_positions(attention_mask, input_ids.size(1))
            padding = {"attn_mask": attn_mask, "positions": positions}
        x = self.wte(input_ids)  # (B, T, C)
        if self.wpe is not None:
            columns = torch.arange(offset, end, device=input_ids.device)  # (T,), broadcast over B
            x = x + self.wpe(columns if positions is None else positions)
        x = self.drop(x)
        caches = kv_cache if kv_cache is not None else [None] * len(self.blocks)
        for block, cache in zip(self.blocks, caches, strict=True):
            x = block(x, rope=self.rope, kv_cache=cache, **padding)
        x = self.ln_f(x)
        if labels is not None and loss_chunk > 0:
            head = self.lm_head.weight[: self.config.vocab_size]  # padding rows are never predicted
            return linear_cross_entropy(x, head, labels, loss_chunk)
        logits = self.lm_head(x)  # (B, T, padded_vocab_size)
        return logits[..., : self.config.vocab_size]  # (B, T, vocab_size): padding rows are never predicted

    def new_kv_cache(self, max_len: int | None = None) -> list[KVCache]:
        """An empty cache, one KVCache per block, for sequences of up to ``max_len`` tokens (prompt and
        generated ones together; default and maximum: block_size). Its batch size, dtype and device are
        those of the first forward that uses it."""
        max_len = self.config.block_size if max_len is None else max_len
        if not 1 <= max_len <= self.config.block_size:
            raise ValueError(
                f"max_len must be in [1, model.block_size={self.config.block_size}], got {max_len}"
            )
        return [KVCache(max_len) for _ in self.blocks]

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, each shared one counted once. ``non_embedding`` leaves out lookup tables (the
        position table, and the token table when untied); a tied table is counted, as it is also the
        head's matmul (the count nanoGPT and Kaplan et al. 2020 use for compute)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            if self.wpe is not None:
                n -= self.wpe.weight.numel()
            if not self.config.tie_embeddings:
                n -= self.wte.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token (forward + backward) with the standard PaLM / nanoGPT estimate:
        6 N for the parameter matmuls (2 forward, 4 backward) plus 12 * n_layer * n_embd * seq_len for the
        attention scores and weighted sum (PaLM appendix B; causal masking's savings are not subtracted)."""
        return 6 * self.num_params() + 12 * self.config.n_layer * self.config.n_embd * seq_len
