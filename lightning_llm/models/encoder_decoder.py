"""The encoder-decoder Transformer (Vaswani et al. 2017, "Attention Is All You Need"; T5's layout when
pre-LN), trained on (source, target) pairs with the seq2seq objective.

The encoder reads the whole source bidirectionally. The decoder predicts the target one token at a time:
each decoder layer attends causally to the target so far, then through cross-attention to the encoder's
output (the "memory"), then applies its MLP. Source and target share one token embedding, which is also
the output head (the paper's section 3.4). Generation is greedy or beam search over the decoder, with a
KV cache for the decoder's self-attention and the memory's keys and values computed once.

Shapes: B = batch, S = source length, T = target length, C = n_embd, V = vocab_size.
"""

import math
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_llm.models.blocks import (
    MLP_KINDS,
    Block,
    DecoderBlock,
    DecoderCache,
    KVCache,
    MLPKind,
    PositionsLayout,
    SinusoidalPositions,
    check_choice,
    check_shape,
    init_gpt2_,
    make_norm,
    padded_vocab_size,
    padding_mask,
)
from lightning_llm.models.chunked_head import TokenScores, linear_cross_entropy
from lightning_llm.models.sampling import Step, beam_search, greedy_search
from lightning_llm.registry import register

__all__ = ["EncoderDecoder", "EncoderDecoderConfig"]


@dataclass
class EncoderDecoderConfig:
    vocab_size: int  # from the tokenizer
    n_layer: int = 3  # encoder layers (the paper's base model: 6)
    n_decoder_layer: int | None = None  # decoder layers; None means as many as the encoder has
    n_head: int = 4  # attention heads per layer; must divide n_embd
    n_embd: int = 128  # d_model
    block_size: int = 128  # the longest source and the longest target (the size of the position table)
    dropout: float = 0.1  # the paper's P_drop: on the embeddings and every sub-layer's output
    # On the attention weights; None: as dropout (tensor2tensor's default; the paper names no such dropout).
    attn_dropout: float | None = None
    bias: bool = False
    # Pre-LN (T5, GPT-2) trains stably without a long warm-up; post-LN is the paper's original placement.
    prenorm: bool = True
    positions: Literal["sinusoidal", "learned"] = "sinusoidal"  # the paper's fixed encoding, or a table
    # The sinusoid table's feature order: the paper's sin/cos interleaved, or Marian's [sines | cosines].
    positions_layout: PositionsLayout = "interleaved"
    mlp: MLPKind = "gelu"  # relu is the paper's, silu (swish) Marian's
    # The token the decoder starts from; None: the tokenizer's bos. Marian starts from its pad token.
    decoder_start_id: int | None = None
    # A search that reaches max_new_tokens ends its last token with eos (Marian's forced_eos_token_id), so
    # a cut-off translation still ends as the model learned to end.
    forced_eos: bool = False
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    # Embedding and head rows are padded up to a multiple of this: matmuls run fastest on multiples of 64.
    pad_vocab_to: int = 64

    def __post_init__(self) -> None:
        if self.n_decoder_layer is None:
            self.n_decoder_layer = self.n_layer
        positive = (
            "vocab_size",
            "n_layer",
            "n_decoder_layer",
            "n_head",
            "n_embd",
            "block_size",
            "pad_vocab_to",
        )
        check_shape(self, positive)
        check_choice("positions", self.positions, ("sinusoidal", "learned"))
        check_choice("mlp", self.mlp, MLP_KINDS)
        check_choice("positions_layout", self.positions_layout, ("interleaved", "halves"))
        if self.attn_dropout is not None and not 0.0 <= self.attn_dropout < 1.0:
            raise ValueError(f"model.attn_dropout must be in [0, 1), got {self.attn_dropout}")
        if self.decoder_start_id is not None and not 0 <= self.decoder_start_id < self.vocab_size:
            raise ValueError(
                f"model.decoder_start_id must be a token id, 0 to {self.vocab_size - 1} (the tokenizer's "
                f"vocabulary), got {self.decoder_start_id}"
            )
        check_choice("norm", self.norm, ("layernorm", "rmsnorm"))
        if self.positions == "sinusoidal" and self.n_embd % 2:
            raise ValueError(f"model.positions=sinusoidal needs an even model.n_embd, got {self.n_embd}")

    @property
    def padded_vocab_size(self) -> int:
        return padded_vocab_size(self.vocab_size, self.pad_vocab_to)

    @property
    def embed_scale(self) -> float:
        """The paper multiplies the embeddings by sqrt(d_model) (section 3.4) so that, initialised with
        std d_model^-0.5, they are on the same unit scale as the sinusoids they are added to."""
        return math.sqrt(self.n_embd) if self.positions == "sinusoidal" else 1.0


@register("model", "decoder")
class EncoderDecoder(nn.Module):
    """Encoder-decoder Transformer (the original Transformer / T5 shape), trained with seq2seq."""

    objectives = ("seq2seq",)
    default_objective = "seq2seq"
    chunks_its_loss = True  # forward(..., labels=, loss_chunk=): the loss without whole logits
    output_heads = ("lm_head",)  # read as a weight by that loss: no LoRA adapter there (models/lora.py)

    def __init__(self, config: EncoderDecoderConfig):
        super().__init__()
        self.config = config
        C = config.n_embd
        self.wte = nn.Embedding(config.padded_vocab_size, C)  # shared by source, target and head
        # One position table for both sides: a source and a target token at position i share its vector.
        sinusoidal = config.positions == "sinusoidal"
        self.wpe = (
            SinusoidalPositions(C, config.block_size, layout=config.positions_layout)
            if sinusoidal
            else nn.Embedding(config.block_size, C)
        )
        self.drop = nn.Dropout(config.dropout)
        layer = dict(
            dropout=config.dropout,
            bias=config.bias,
            mlp=config.mlp,
            norm=config.norm,
            prenorm=config.prenorm,
            attn_dropout=config.attn_dropout,
        )
        encoder_layers = [Block(C, config.n_head, causal=False, **layer) for _ in range(config.n_layer)]
        decoder_layers = [DecoderBlock(C, config.n_head, **layer) for _ in range(config.n_decoder_layer)]
        # One list, encoder blocks first, that parallelism wraps block by block; ``encoder_blocks`` and
        # ``decoder_blocks`` are views of it, so a block replaced by a wrapper is the one that runs.
        self.blocks = nn.ModuleList(encoder_layers + decoder_layers)
        # Pre-LN leaves the residual stream unnormalised, so each stack ends with a norm; post-LN blocks
        # already end with one.
        self.ln_enc = make_norm(config.norm, C, config.bias) if config.prenorm else nn.Identity()
        self.ln_dec = make_norm(config.norm, C, config.bias) if config.prenorm else nn.Identity()
        self.lm_head = nn.Linear(C, config.padded_vocab_size, bias=False)
        self.init_weights()

    @property
    def encoder_blocks(self) -> nn.ModuleList:
        return self.blocks[: self.config.n_layer]

    @property
    def decoder_blocks(self) -> nn.ModuleList:
        return self.blocks[self.config.n_layer :]

    # ------------------------------------------------------------------------------ initialisation
    def init_weights(self) -> None:
        """GPT-2 initialisation of every parameter and buffer; safe to call again after ``to_empty()``."""
        self._tie_weights()
        init_gpt2_(self, self.config.n_layer)  # encoder residual projections: two additions per layer
        # The decoder's residual stream takes three additions per layer (self-, cross-attention, MLP).
        init_gpt2_(self.decoder_blocks, self.config.n_decoder_layer, residuals_per_layer=3)
        if self.config.embed_scale != 1.0:
            nn.init.normal_(self.wte.weight, mean=0.0, std=self.config.n_embd**-0.5)  # see embed_scale

    def _tie_weights(self) -> None:
        # Re-tied here, not only at construction: to_empty() materialises each Parameter separately.
        if self.lm_head.weight is not self.wte.weight:
            self.lm_head.weight = self.wte.weight

    # ------------------------------------------------------------------------------ forward
    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        decoder_input_ids: torch.Tensor,
        labels: torch.Tensor | None = None,
        loss_chunk: int = 0,
        label_smoothing: float = 0.0,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, TokenScores]:
        """Teacher forcing. input_ids: (B, S) source; attention_mask: (B, S) bool, True at real tokens (or
        None: no padding); decoder_input_ids: (B, T) = bos + target. Returns logits (B, T, V) where
        position t predicts target token t (the token after decoder_input_ids[:, t]).

        With ``labels`` (B, T) and ``loss_chunk`` > 0 it returns (summed cross-entropy with
        ``label_smoothing``, labelled tokens, TokenScores) instead, the logits computed ``loss_chunk``
        tokens at a time (``models/chunked_head.py``)."""
        memory = self.encode(input_ids, attention_mask)
        if labels is None or loss_chunk < 1:
            return self.decode(decoder_input_ids, memory, attention_mask)
        hidden = self.decode(decoder_input_ids, memory, attention_mask, hidden_only=True)
        head = self.lm_head.weight[: self.config.vocab_size]  # padding rows are never predicted
        return linear_cross_entropy(hidden, head, labels, loss_chunk, label_smoothing=label_smoothing)

    def encode(self, input_ids: torch.Tensor, attention_mask: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder's output, the "memory" (B, S, C). Padded positions hold values nobody reads."""
        x = self._embed(input_ids, offset=0, what="source")  # (B, S, C)
        mask = None if attention_mask is None else padding_mask(attention_mask)  # (B, 1, 1, S)
        for block in self.encoder_blocks:
            x = block(x, attn_mask=mask)
        return self.ln_enc(x)

    def decode(
        self,
        decoder_input_ids: torch.Tensor,
        memory: torch.Tensor,
        memory_mask: torch.Tensor | None = None,
        cache: list[DecoderCache] | None = None,
        hidden_only: bool = False,
    ) -> torch.Tensor:
        """Logits (B, T, V) for decoder_input_ids (B, T) given memory (B, S, C) and memory_mask (B, S).

        With ``cache`` (from ``new_cache``), decoder_input_ids are the tokens after the cached ones. With
        ``hidden_only``, the final hidden states (B, T, C) the head would read.
        """
        offset = 0 if cache is None else cache[0].self_attn.length  # target tokens already seen
        if offset == 0 and self.config.decoder_start_id is not None:  # the data writes bos first
            decoder_input_ids = decoder_input_ids.clone()
            decoder_input_ids[:, 0] = self.config.decoder_start_id
        x = self._embed(decoder_input_ids, offset=offset, what="target")  # (B, T, C)
        mask = None if memory_mask is None else padding_mask(memory_mask)  # (B, 1, 1, S)
        caches = cache if cache is not None else [None] * len(self.decoder_blocks)
        for block, layer_cache in zip(self.decoder_blocks, caches, strict=True):
            x = block(x, memory, mask, cache=layer_cache)
        if hidden_only:
            return self.ln_dec(x)
        logits = self.lm_head(self.ln_dec(x))  # (B, T, padded_vocab_size)
        return logits[..., : self.config.vocab_size]  # (B, T, V): padding rows are never predicted

    def _embed(self, ids: torch.Tensor, offset: int, what: str) -> torch.Tensor:
        if ids.dim() != 2:
            raise ValueError(f"{what} ids must have shape (batch, seq_len), got {tuple(ids.shape)}")
        end = offset + ids.size(1)
        if end > self.config.block_size:
            raise ValueError(f"{what} length {end} exceeds model.block_size={self.config.block_size}")
        x = self.wte(ids) * self.config.embed_scale  # (B, T, C)
        x = x + self.wpe(torch.arange(offset, end, device=ids.device))  # + (T, C), broadcast over B
        return self.drop(x)

    # ------------------------------------------------------------------------------ generation
    def new_cache(self, max_len: int | None = None, source_len: int | None = None) -> list[DecoderCache]:
        """An empty cache per decoder layer: self-attention for up to ``max_len`` target tokens, and the
        memory's keys and values for sources of up to ``source_len`` tokens (both default to block_size)."""
        max_len = max_len or self.config.block_size
        source_len = source_len or self.config.block_size
        return [DecoderCache(KVCache(max_len), KVCache(source_len)) for _ in self.decoder_blocks]

    @torch.no_grad()
    def generate(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        max_new_tokens: int,
        bos_id: int,
        eos_id: int,
        num_beams: int = 1,
        length_penalty: float = 1.0,
        use_cache: bool = True,
    ) -> list[list[int]]:
        """Target ids for each source (B, S): greedy when num_beams == 1, else beam search with scores
        divided by length ** length_penalty. Each list stops before eos or after max_new_tokens tokens and
        holds neither bos nor eos. The decoder starts from ``bos_id``, or from ``config.decoder_start_id``
        when set. Call it in eval mode, or dropout makes the search noisy."""
        if self.config.decoder_start_id is not None:
            bos_id = self.config.decoder_start_id
        if not 1 <= max_new_tokens <= self.config.block_size:
            raise ValueError(
                f"max_new_tokens must be in [1, model.block_size={self.config.block_size}], "
                f"got {max_new_tokens}"
            )
        batch_size = input_ids.size(0)
        memory = self.encode(input_ids, attention_mask)  # (B, S, C), once for the whole search
        if num_beams > 1:  # row b * K + k is beam k of example b
            memory = memory.repeat_interleave(num_beams, dim=0)  # (B*K, S, C)
            if attention_mask is not None:
                attention_mask = attention_mask.repeat_interleave(num_beams, dim=0)  # (B*K, S)
        step = self.decoding_step(memory, attention_mask, max_new_tokens, use_cache)
        if self.config.forced_eos:
            step = _forcing_eos_at(max_new_tokens, eos_id, step)
        if num_beams == 1:
            return greedy_search(step, batch_size, bos_id, eos_id, max_new_tokens, input_ids.device)
        return beam_search(
            step, batch_size, num_beams, bos_id, eos_id, max_new_tokens, input_ids.device, length_penalty
        )

    def decoding_step(
        self, memory: torch.Tensor, memory_mask: torch.Tensor | None, max_len: int, use_cache: bool
    ) -> Step:
        """The ``Step`` that greedy and beam search call: log-probabilities (N, V) of the next token after
        each row of tokens (N, t), given memory (N, S, C). With ``use_cache`` it holds a fresh cache for up
        to ``max_len`` target tokens and reorders it by ``origin``, which must stay within rows that share
        one memory (beams of one example)."""
        cache = self.new_cache(max_len, memory.size(1)) if use_cache else None

        def step(tokens: torch.Tensor, origin: torch.Tensor | None) -> torch.Tensor:
            if cache is None:
                logits = self.decode(tokens, memory, memory_mask)  # the whole target so far, every step
            else:
                if origin is not None:
                    # Beams move only within their example, whose rows share one memory, so the
                    # cross-attention caches need no reordering; the self-attention ones do.
                    for layer in cache:
                        layer.self_attn.reorder(origin)
                new = tokens[:, cache[0].self_attn.length :]  # the tokens not cached yet: (B, t) then (B, 1)
                logits = self.decode(new, memory, memory_mask, cache)
            return F.log_softmax(logits[:, -1].float(), dim=-1)  # (B, V)

        return step

    # ------------------------------------------------------------------------------ accounting
    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, the tied embedding counted once; ``non_embedding`` leaves out a learned position
        table (the token table stays: it is also the head's matmul)."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding and isinstance(self.wpe, nn.Embedding):
            n -= self.wpe.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per target token (forward + backward) for sources and targets of seq_len tokens:
        every target token comes with one source token, so each parameter is used once per token, 6 N in
        all (PaLM appendix B), plus 12 * n_embd * seq_len per attention layer (encoder self-attention,
        decoder self-attention and cross-attention)."""
        attention_layers = self.config.n_layer + 2 * self.config.n_decoder_layer
        return 6 * self.num_params() + 12 * attention_layers * self.config.n_embd * seq_len


def _forcing_eos_at(length: int, eos_id: int, step: Step) -> Step:
    """``step``, except that the ``length``-th token is eos whatever the model says (Hugging Face's
    ForcedEOSTokenLogitsProcessor: log-probability 0 for eos, -inf for every other token)."""

    def forced(tokens: torch.Tensor, origin: torch.Tensor | None) -> torch.Tensor:
        log_probs = step(tokens, origin)
        if tokens.size(1) == length:  # bos and length - 1 tokens so far: this is the last one
            log_probs = torch.full_like(log_probs, float("-inf"))
            log_probs[:, eos_id] = 0.0
        return log_probs

    return forced
