"""A BERT-style bidirectional Transformer encoder (Devlin et al. 2018, "BERT: Pre-training of Deep
Bidirectional Transformers for Language Understanding").

Token, position and segment embeddings are summed and normalised, ``n_layer`` blocks with bidirectional
self-attention (every position sees every real position, left and right) transform the sequence, and a final
norm gives the hidden states. Two heads read them: the masked-LM head (BERT's "transform" of dense + the
blocks' activation + norm, then a decoder tied to the token embedding) predicts the token at every position,
and, when ``num_classes > 0``, the pooler (a tanh dense layer on the first, ``<cls>``, position) feeds a
linear classifier; with ``span_head`` a linear layer gives every position an answer-start and an answer-end
logit (extractive question answering). The blocks are those of ``lightning_llm.models.blocks``: pre-LN with a
final norm by default (it trains stably without BERT's learning-rate warm-up tricks, Xiong et al. 2020), or
BERT's own post-LN with no final norm (``prenorm=False``, with ``mlp=gelu_erf`` and ``norm_eps=1e-12``:
exactly ``transformers``' ``BertForMaskedLM``, tests/test_huggingface.py).

Shapes: B = batch, T = sequence length, C = n_embd, V = vocab_size, K = num_classes.
"""

import functools
from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import nn

from lightning_llm.models.blocks import (
    MLP_KINDS,
    Block,
    MLPKind,
    SinusoidalPositions,
    check_choice,
    check_shape,
    init_gpt2_,
    make_norm,
    padded_vocab_size,
)
from lightning_llm.models.chunked_head import IGNORE_INDEX, TokenScores, linear_cross_entropy
from lightning_llm.registry import register

__all__ = ["Encoder", "EncoderConfig", "MaskedLMHead"]


# --------------------------------------------------------------------------- the config


@dataclass
class EncoderConfig:
    vocab_size: int  # from the tokenizer
    n_layer: int = 4  # Transformer blocks
    n_head: int = 4  # attention heads per block; must divide n_embd
    n_embd: int = 128  # width of the residual stream
    block_size: int = 128  # the longest sequence the model accepts (the size of the position table)
    dropout: float = 0.1  # BERT's value for pretraining and fine-tuning alike
    n_segments: int = 2  # segment (token type) embeddings: sentence A / sentence B of a pair, as in BERT
    # Size of the classifier head; 0 builds none (masked-LM pretraining; a classification run fills it in).
    num_classes: int = 0
    # A span head (start and end logits at every position) for extractive question answering; a span_qa
    # run turns it on.
    span_head: bool = False
    positions: Literal["learned", "sinusoidal"] = "learned"  # BERT's table, or the fixed original encoding
    norm: Literal["layernorm", "rmsnorm"] = "layernorm"
    norm_eps: float = 1e-5  # BERT's LayerNorm uses 1e-12
    # Pre-LN plus a final norm (stable without warm-up), or BERT's post-LN, which ends with no final norm.
    prenorm: bool = True
    mlp: MLPKind = "gelu"  # the feed-forward's non-linearity: gelu (tanh approximation) or BERT's gelu_erf
    bias: bool = True  # biases in Linear and LayerNorm, as BERT has
    # Embedding and decoder rows are padded up to a multiple of this: matmul kernels run fastest when the
    # dimensions are multiples of 64 (as for GPT; the padding rows are never predicted).
    pad_vocab_to: int = 64

    def __post_init__(self) -> None:
        positive = ("vocab_size", "n_layer", "n_head", "n_embd", "block_size", "n_segments", "pad_vocab_to")
        check_shape(self, positive)
        if self.num_classes < 0:
            raise ValueError(f"model.num_classes must be >= 0 (0: no classifier), got {self.num_classes}")
        check_choice("positions", self.positions, ("learned", "sinusoidal"))
        check_choice("norm", self.norm, ("layernorm", "rmsnorm"))
        check_choice("mlp", self.mlp, MLP_KINDS)
        if not 0.0 < self.norm_eps < 1.0:
            raise ValueError(f"model.norm_eps must be in (0, 1), got {self.norm_eps}")
        if self.positions == "sinusoidal" and self.n_embd % 2:
            raise ValueError(f"model.positions=sinusoidal needs an even model.n_embd, got {self.n_embd}")

    @property
    def padded_vocab_size(self) -> int:
        return padded_vocab_size(self.vocab_size, self.pad_vocab_to)


# --------------------------------------------------------------------------- the heads


# The masked-LM transform's activation for each MLP kind: BERT's head uses its blocks' (its hidden_act);
# a gated MLP's non-linearity is its gate's SiLU.
HEAD_ACTIVATIONS = {
    "gelu": functools.partial(F.gelu, approximate="tanh"),
    "gelu_erf": F.gelu,
    "relu": F.relu,
    "silu": F.silu,
    "swiglu": F.silu,
}


class MaskedLMHead(nn.Module):
    """BERT's masked-LM head: dense + activation + norm (the "transform"), then a decoder to vocabulary
    logits. The activation is the blocks' (``mlp``), as BERT's head uses its ``hidden_act``.

    The decoder's weight is the token embedding (tied by the Encoder); its bias is the head's own, one
    learned prior per token, as in BERT.
    """

    def __init__(
        self,
        n_embd: int,
        vocab_size: int,
        norm: str,
        bias: bool,
        norm_eps: float = 1e-5,
        mlp: MLPKind = "gelu_erf",
    ):
        super().__init__()
        self.dense = nn.Linear(n_embd, n_embd, bias=bias)
        self.mlp = mlp  # the activation's name (a module attribute that pickles)
        self.norm = make_norm(norm, n_embd, bias, norm_eps)
        self.decoder = nn.Linear(n_embd, vocab_size, bias=bias)

    def transform(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.norm(HEAD_ACTIVATIONS[self.mlp](self.dense(hidden)))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.transform(hidden))  # (B, T, padded V)


# --------------------------------------------------------------------------- the model


@register("model", "encoder")
class Encoder(nn.Module):
    """BERT-style bidirectional encoder, pretrained with masked_lm or fine-tuned with classification."""

    objectives = ("masked_lm", "masked_lm_nsp", "classification", "span_qa")
    default_objective = "masked_lm"
    chunks_its_loss = True  # forward(..., labels=, loss_chunk=): the masked-LM loss at the labelled tokens
    output_heads = ("mlm_head.decoder",)  # read as a weight by that loss: no LoRA adapter (models/lora.py)
    # what a fine-tuning task adds: trained in full under LoRA, sized by the task's data (not the checkpoint)
    task_heads = ("pooler", "classifier", "qa_outputs")
    task_params = ("num_classes", "span_head")

    def __init__(self, config: EncoderConfig):
        super().__init__()
        self.config = config
        C = config.n_embd
        self.wte = nn.Embedding(config.padded_vocab_size, C)
        self.wpe = (
            nn.Embedding(config.block_size, C)
            if config.positions == "learned"
            else SinusoidalPositions(C, config.block_size)
        )
        self.wse = nn.Embedding(config.n_segments, C)  # segment embeddings
        norm = dict(kind=config.norm, dim=C, bias=config.bias, eps=config.norm_eps)
        self.ln_emb = make_norm(**norm)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(
            Block(
                C,
                config.n_head,
                config.dropout,
                config.bias,
                causal=False,
                mlp=config.mlp,
                norm=config.norm,
                prenorm=config.prenorm,
                norm_eps=config.norm_eps,
            )
            for _ in range(config.n_layer)
        )
        # Pre-LN blocks leave the residual stream unnormalised; post-LN blocks end with a norm already.
        self.ln_f = make_norm(**norm) if config.prenorm else nn.Identity()
        self.mlm_head = MaskedLMHead(
            C, config.padded_vocab_size, config.norm, config.bias, config.norm_eps, config.mlp
        )
        has_classifier = config.num_classes > 0
        self.pooler = nn.Linear(C, C, bias=config.bias) if has_classifier else None
        self.classifier = nn.Linear(C, config.num_classes, bias=config.bias) if has_classifier else None
        # BertForQuestionAnswering's head (and its name): a start and an end logit per position.
        self.qa_outputs = nn.Linear(C, 2, bias=config.bias) if config.span_head else None
        self.init_weights()

    def init_weights(self) -> None:
        """BERT / GPT-2 initialisation (normal 0.02, residual projections scaled down with depth) of every
        parameter and buffer; safe to call again after ``to_empty()`` on a model built on the meta device."""
        self._tie_weights()
        init_gpt2_(self, self.config.n_layer)

    def _tie_weights(self) -> None:
        # The MLM decoder reuses the token embedding (BERT; Press & Wolf 2017). Re-tied on every init
        # because to_empty() materialises each module's Parameter separately, untying them.
        if self.mlm_head.decoder.weight is not self.wte.weight:
            self.mlm_head.decoder.weight = self.wte.weight

    # -- the encoder

    def encode(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """input_ids (B, T); attention_mask (B, T), True (or 1) at real tokens, None when nothing is padded;
        token_type_ids (B, T) segment ids, all 0 when None -> hidden states (B, T, C).

        Padded positions are never attended to, so they cannot change the real positions' states; their own
        states are computed but meaningless."""
        self._check_inputs(input_ids, attention_mask, token_type_ids)
        x = self.drop(self.ln_emb(self._embed(input_ids, token_type_ids)))
        # key-padding mask, broadcast over heads and queries: (B, T) -> (B, 1, 1, T)
        attn_mask = None if attention_mask is None else attention_mask.bool()[:, None, None, :]
        for block in self.blocks:
            x = block(x, attn_mask=attn_mask)
        return self.ln_f(x)

    def _embed(self, input_ids: torch.Tensor, token_type_ids: torch.Tensor | None) -> torch.Tensor:
        positions = torch.arange(input_ids.size(1), device=input_ids.device)
        x = self.wte(input_ids) + self.wpe(positions)  # (B, T, C) + (T, C), broadcast over B
        if token_type_ids is None:
            return x + self.wse.weight[0]  # every token in segment 0: no (B, T) lookup needed
        return x + self.wse(token_type_ids)

    def _check_inputs(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None,
        token_type_ids: torch.Tensor | None,
    ) -> None:
        if input_ids.dim() != 2:
            raise ValueError(f"input_ids must have shape (batch, seq_len), got {tuple(input_ids.shape)}")
        if input_ids.size(1) > self.config.block_size:
            raise ValueError(
                f"sequence length {input_ids.size(1)} exceeds model.block_size={self.config.block_size}"
            )
        for name, tensor in (("attention_mask", attention_mask), ("token_type_ids", token_type_ids)):
            if tensor is not None and tensor.shape != input_ids.shape:
                raise ValueError(
                    f"{name} must have the shape of input_ids, {tuple(input_ids.shape)}; "
                    f"got {tuple(tensor.shape)}"
                )

    # -- the heads

    def mlm_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, T, C) -> logits (B, T, vocab_size) for the original token at every position."""
        logits = self.mlm_head(hidden)  # (B, T, padded V)
        return logits[..., : self.config.vocab_size]  # padding rows are never predicted

    def classify(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, T, C) -> class logits (B, num_classes), from the first (``<cls>``) position."""
        if self.pooler is None or self.classifier is None:
            raise ValueError(
                "this encoder has no classifier (model.num_classes=0); set model.num_classes to the number "
                "of classes, or let a classification data module fill it in"
            )
        pooled = torch.tanh(self.pooler(hidden[:, 0]))  # (B, C): BERT's pooled [CLS] representation
        return self.classifier(self.drop(pooled))  # (B, K)

    def span_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden (B, T, C) -> (B, T, 2): the logit of each position being the answer's start, and its end."""
        if self.qa_outputs is None:
            raise ValueError(
                "this encoder has no span head (model.span_head=false); set model.span_head=true, or let "
                "a question-answering data module (data=squad) turn it on"
            )
        return self.qa_outputs(hidden)

    def forward(
        self,
        input_ids: torch.Tensor,
        attention_mask: torch.Tensor | None = None,
        token_type_ids: torch.Tensor | None = None,
        labels: torch.Tensor | None = None,
        loss_chunk: int = 0,
    ) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor, TokenScores]:
        """Masked-LM logits (B, T, vocab_size): ``mlm_logits(encode(...))``.

        With ``labels`` (B, T), -100 where nothing is predicted, it returns (summed cross-entropy, labelled
        tokens, TokenScores (B, T)) instead: the head runs on the labelled positions only (15% of them in
        BERT's masking), ``loss_chunk`` of them at a time (0: all at once; ``models/chunked_head.py``).
        """
        hidden = self.encode(input_ids, attention_mask, token_type_ids)
        if labels is None:
            return self.mlm_logits(hidden)
        picked = labels != IGNORE_INDEX  # (B, T)
        V, decoder = self.config.vocab_size, self.mlm_head.decoder
        loss, n_tokens, scores = linear_cross_entropy(
            self.mlm_head.transform(hidden[picked]),  # (N, C): the labelled positions only
            decoder.weight[:V],  # padding rows are never predicted
            labels[picked],
            loss_chunk or max(1, labels.numel()),
            bias=None if decoder.bias is None else decoder.bias[:V],
        )
        nll = torch.zeros(labels.shape, dtype=scores.nll.dtype, device=labels.device).masked_scatter(
            picked, scores.nll
        )
        predicted = torch.full_like(labels, IGNORE_INDEX).masked_scatter(picked, scores.predicted)
        return loss, n_tokens, TokenScores(nll, predicted)

    # -- size and compute

    def num_params(self, non_embedding: bool = True) -> int:
        """Parameters, the tied token table counted once. ``non_embedding`` leaves out the lookup-only tables
        (positions and segments); the token table stays, as it is also the MLM decoder's matmul."""
        n = sum(p.numel() for p in self.parameters())
        if non_embedding:
            n -= self.wse.weight.numel()
            if isinstance(self.wpe, nn.Embedding):
                n -= self.wpe.weight.numel()
        return n

    def flops_per_token(self, seq_len: int) -> int:
        """Training FLOPs per token (forward + backward), the PaLM / nanoGPT estimate: 6 N for the parameter
        matmuls plus 12 * n_layer * n_embd * seq_len for attention scores and weighted sums. N includes the
        MLM head, which masked-LM training runs at every position."""
        return 6 * self.num_params() + 12 * self.config.n_layer * self.config.n_embd * seq_len
