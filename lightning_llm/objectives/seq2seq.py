"""Sequence-to-sequence learning: predict a target text from a source text (translation, summarisation,
the toy reverse-the-words task), for encoder-decoder models such as ``model=decoder``.

Training uses teacher forcing: the decoder reads bos + the true target and predicts each next target token,
eos last. Validation can also generate (greedy or beam search) and score the decoded text with BLEU/ROUGE.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_llm.models.chunked_head import chunk_tokens
from lightning_llm.objectives.causal_lm import IGNORE_INDEX, check_logits
from lightning_llm.registry import register
from lightning_llm.tokenizers.base import Tokenizer

__all__ = ["Seq2Seq"]


@register("objective", "seq2seq")
class Seq2Seq:
    """Teacher-forced cross-entropy on the target tokens; greedy or beam-search predictions for text metrics.

    The batch holds ``input_ids`` (B, S) source ids, ``attention_mask`` (B, S) bool (True at real tokens),
    ``decoder_input_ids`` (B, T) = bos + target ids, ``labels`` (B, T) = target ids + eos with -100 at
    padding, and ``target_text`` (the references).

    Args:
        label_smoothing: share of each target's probability spread over the whole vocabulary (the paper
            used 0.1); 0 is plain cross-entropy.
        num_beams: beams for validation predictions; 1 is greedy decoding.
        max_new_tokens: longest prediction generated at validation (capped at the model's block_size).
        logits_chunk: target tokens whose logits exist at once (``models/chunked_head.py``): null picks ~256
            MB of float32 logits per chunk when a batch's logits are larger, else the full logits; 0
            always computes the full logits.
    """

    default_data = "reverse_words"
    sample_mode = "predict"  # a run's samples.txt: decodes of validation sources beside their references
    default_metrics = ("perplexity", "accuracy", "bleu", "rouge")  # bleu/rouge score greedy/beam decodes

    def __init__(
        self,
        tokenizer: Tokenizer,
        label_smoothing: float = 0.0,
        num_beams: int = 1,
        max_new_tokens: int = 64,
        logits_chunk: int | None = None,
    ) -> None:
        if not 0.0 <= label_smoothing < 1.0:
            raise ValueError(f"objective.label_smoothing must be in [0, 1), got {label_smoothing}")
        if num_beams < 1:
            raise ValueError(f"objective.num_beams must be >= 1, got {num_beams}")
        if max_new_tokens < 1:
            raise ValueError(f"objective.max_new_tokens must be >= 1, got {max_new_tokens}")
        if logits_chunk is not None and logits_chunk < 0:
            raise ValueError(f"objective.logits_chunk must be >= 0 or null (auto), got {logits_chunk}")
        self.tokenizer = tokenizer
        self.label_smoothing, self.num_beams, self.max_new_tokens = label_smoothing, num_beams, max_new_tokens
        self.logits_chunk = logits_chunk

    def loss(
        self, model: nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (summed loss over target tokens, number of target tokens, logits (B, T, V) or, computed in
        chunks, the tokens' TokenScores)."""
        sources = (batch["input_ids"], batch["attention_mask"], batch["decoder_input_ids"])
        labels = batch["labels"]
        if getattr(model, "chunks_its_loss", False):
            chunk = chunk_tokens(labels.numel(), model.config.vocab_size, self.logits_chunk)
            if chunk:
                return model(*sources, labels=labels, loss_chunk=chunk, label_smoothing=self.label_smoothing)
        logits = model(*sources)
        check_logits(logits, labels, "seq2seq", "model(input_ids, attention_mask, decoder_input_ids)")
        loss = F.cross_entropy(
            logits.float().flatten(0, -2),  # (B*T, V); float32 for an exact log-softmax
            labels.flatten(),  # (B*T,)
            ignore_index=IGNORE_INDEX,
            reduction="sum",
            label_smoothing=self.label_smoothing,
        )
        n_target_tokens = (labels != IGNORE_INDEX).sum()  # a tensor: reading it would sync host and device
        return loss, n_target_tokens, logits

    @torch.no_grad()
    def predict_text(self, model: nn.Module, batch: dict[str, Any]) -> tuple[list[str], list[str]]:
        """(decoded predictions, reference texts) for the batch's sources; call it in eval mode."""
        max_new_tokens = min(self.max_new_tokens, model.config.block_size)
        predictions = model.generate(
            batch["input_ids"],
            batch["attention_mask"],
            max_new_tokens,
            bos_id=self.tokenizer.bos_id,
            eos_id=self.tokenizer.eos_id,
            num_beams=self.num_beams,
        )
        return [self.tokenizer.decode(ids) for ids in predictions], list(batch["target_text"])
