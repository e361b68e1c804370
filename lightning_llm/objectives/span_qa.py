"""Extractive question answering: point at the answer's first and last token in the passage (BERT's SQuAD
fine-tuning, Devlin et al. 2018, section 4.2).

The encoder reads ``<cls> question <sep> passage window <sep>``; its span head gives every position a start
and an end logit. The loss is the mean of the start and end cross-entropies, each a softmax over the
window's passage positions and ``<cls>`` (the only positions an answer can be at). An answer is the span
(start <= end, at most ``max_answer_tokens`` long, inside the passage) with the highest start + end logit
over all of a question's windows, mapped back to the passage's characters. On SQuAD 2.0 data
(``data.no_answer``) the answer is empty when the ``<cls>`` score (start + end logit at position 0, the
lowest over the windows) beats the best span, as the BERT paper scores it.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from lightning_llm.registry import register
from lightning_llm.tokenizers.base import Tokenizer

__all__ = ["SpanQA", "best_spans"]


@register("objective", "span_qa")
class SpanQA:
    """Start/end cross-entropy over the passage windows of ``data=squad``, for the encoder's span head.

    Args:
        max_answer_tokens: the longest answer, in tokens, that evaluation extracts (SQuAD's scripts use 30).
    """

    default_data = "squad"
    default_metrics = ("exact_match", "qa_f1")
    sample_mode = "predict"  # a run's samples.txt: answers to validation questions beside the references

    def __init__(self, tokenizer: Tokenizer, max_answer_tokens: int = 30):
        if max_answer_tokens < 1:
            raise ValueError(f"objective.max_answer_tokens must be >= 1, got {max_answer_tokens}")
        self.tokenizer = tokenizer  # unused by the loss; part of every objective's contract
        self.max_answer_tokens = max_answer_tokens

    def loss(
        self, model: nn.Module, batch: dict[str, Any]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (summed loss over the windows, number of windows, span logits (R, T, 2))."""
        labels = batch["labels"]
        if labels.dim() != 2 or labels.size(1) != 2:
            raise ValueError(
                f"span_qa needs (start, end) labels of shape (windows, 2), got {tuple(labels.shape)}; "
                "is the data plugin data=squad?"
            )
        hidden = model.encode(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
        # Only the passage's tokens and <cls> ("no answer here") can be pointed at: the softmax is over them.
        candidates = batch["offsets"][..., 0] >= 0
        candidates[:, 0] = True
        logits = model.span_logits(hidden).float().masked_fill(~candidates[..., None], float("-inf"))
        start_loss = F.cross_entropy(logits[..., 0], labels[:, 0], reduction="sum")
        end_loss = F.cross_entropy(logits[..., 1], labels[:, 1], reduction="sum")
        return (start_loss + end_loss) / 2, torch.tensor(labels.size(0), device=labels.device), logits

    @torch.no_grad()
    def predict_text(
        self, model: nn.Module, batch: dict[str, Any], outputs: torch.Tensor | None = None
    ) -> tuple[list[str], list[list[str]]]:
        """(the extracted answer of each question, its reference answers). ``outputs``: the span logits the
        loss already computed for this batch, if at hand."""
        if outputs is None:
            hidden = model.encode(batch["input_ids"], batch["attention_mask"], batch.get("token_type_ids"))
            outputs = model.span_logits(hidden).float()
        spans, span_scores = best_spans(outputs, batch["offsets"], self.max_answer_tokens)
        null_scores = (outputs[:, 0, 0] + outputs[:, 0, 1]).tolist()  # per window: the <cls> score
        answers = []
        question_of_row = batch["question_of_row"].tolist()
        for question, context in enumerate(batch["contexts"]):
            rows = [r for r, q in enumerate(question_of_row) if q == question]
            best = max(rows, key=lambda r: span_scores[r])
            no_span = span_scores[best] == float("-inf")  # no window reached the passage
            null_wins = batch["no_answer"] and min(null_scores[r] for r in rows) > span_scores[best]
            if no_span or null_wins:
                answers.append("")
            else:
                begin, end = spans[best]
                answers.append(context[begin:end].strip())
        return answers, batch["answers"]


def best_spans(
    logits: torch.Tensor, offsets: torch.Tensor, max_answer_tokens: int
) -> tuple[list[tuple[int, int]], list[float]]:
    """For each window: the character span (begin, end) of its best answer and its score.

    ``logits`` (R, T, 2) start and end logits; ``offsets`` (R, T, 2) each passage token's character span,
    -1 at every other position. The best span maximises start + end logit over token pairs i <= j inside
    the passage with j - i < ``max_answer_tokens``; a window with no passage token scores -inf.
    """
    R, T, _ = logits.shape
    in_passage = offsets[..., 0] >= 0  # (R, T)
    start, end = logits.unbind(-1)  # (R, T) each
    scores = start[:, :, None] + end[:, None, :]  # (R, T, T): start at i, end at j
    i = torch.arange(T, device=logits.device)
    width = i[None, :] - i[:, None]  # (T, T): j - i
    allowed = (width >= 0) & (width < max_answer_tokens)
    allowed = allowed[None] & in_passage[:, :, None] & in_passage[:, None, :]
    best, flat = scores.masked_fill(~allowed, float("-inf")).view(R, -1).max(dim=1)
    starts, ends = (flat // T).tolist(), (flat % T).tolist()
    spans = [(int(offsets[r, starts[r], 0]), int(offsets[r, ends[r], 1])) for r in range(R)]
    return spans, best.tolist()
