"""Metrics of generated text against references: BLEU and ROUGE-L.

Both are *text* metrics (class attribute ``input_kind = "text"``): they are updated with
``update(predictions, references)``, two equally long lists of strings, one reference per prediction,
instead of with logits and labels. Both report on a 0..1 scale, like every other metric here (papers quote
BLEU x 100, as sacreBLEU prints it).

Every state is a sum reduced with ``"sum"``, so under DDP the synced value over N processes is exactly the
value of one process over all the data, and a process that saw no example simply adds zeros.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torchmetrics import Metric
from torchmetrics.functional.text.rouge import rouge_score
from torchmetrics.text import BLEUScore

__all__ = ["BLEU", "ROUGE", "MeanTextScore"]


def _check_texts(predictions: Sequence[str], references: Sequence[str]) -> None:
    for name, texts in (("predictions", predictions), ("references", references)):
        if isinstance(texts, str) or not all(isinstance(text, str) for text in texts):
            raise TypeError(f"{name} must be a list of strings (one per example), got {type(texts).__name__}")
    if len(predictions) != len(references):
        raise ValueError(
            f"got {len(predictions)} predictions but {len(references)} references; pass one reference each"
        )


class BLEU(BLEUScore):
    """Corpus BLEU, 0..1.

    The ``bleu`` metric plugin (``lightning_llm.metrics.plugins``) documents it and its parameters.
    """

    input_kind = "text"
    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, n_gram: int = 4, smooth: bool = False) -> None:
        if n_gram < 1:
            raise ValueError(f"bleu n_gram must be >= 1, got {n_gram}")
        super().__init__(n_gram=n_gram, smooth=smooth)

    def update(self, predictions: Sequence[str], references: Sequence[str]) -> None:
        _check_texts(predictions, references)
        super().update(list(predictions), [[reference] for reference in references])


def _normalize(text: str) -> str:
    """Lower case, every run of non-alphanumeric characters a space. The same as ROUGE's standard
    ``[^a-z0-9]+`` rule on ASCII text, but it keeps letters of every script instead of deleting them."""
    return re.sub(r"[\W_]+", " ", text.lower())


class MeanTextScore(Metric):
    """The mean over examples of a per-example score of a prediction against its reference, kept as a sum
    and a count (DDP then merges processes holding different numbers of examples exactly). Subclasses give
    ``score(prediction, reference)`` and may check their inputs in ``check``."""

    input_kind = "text"
    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self) -> None:
        super().__init__()
        self.add_state("score_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_examples", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def score(self, prediction: str, reference: object) -> float:
        raise NotImplementedError

    def check(self, predictions: Sequence[str], references: Sequence[object]) -> None:
        _check_texts(predictions, references)

    def update(self, predictions: Sequence[str], references: Sequence[object]) -> None:
        self.check(predictions, references)
        for prediction, reference in zip(predictions, references, strict=True):
            self.score_sum += self.score(prediction, reference)
        self.n_examples += len(predictions)

    def compute(self) -> torch.Tensor:
        return self.score_sum / self.n_examples  # nan before any example


class ROUGE(MeanTextScore):
    """ROUGE-L F-measure, 0..1, kept as a sum of scores and a count.

    The ``rouge`` metric plugin (``lightning_llm.metrics.plugins``) documents it and its parameters.
    """

    def score(self, prediction: str, reference: object) -> float:
        scores = rouge_score(prediction, reference, rouge_keys="rougeL", normalizer=_normalize)
        return scores["rougeL_fmeasure"].double().item()
