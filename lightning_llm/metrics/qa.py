"""SQuAD's metrics of extracted answers: exact match and token F1, each the best over a question's reference
answers, averaged over questions (the official SQuAD v1.1 / v2.0 evaluation script's definitions).

Answers are compared after SQuAD's normalisation: lower case, punctuation removed, the articles a/an/the
removed, whitespace collapsed. A question with no reference answer (SQuAD 2.0) scores 1 when the prediction
is empty and 0 otherwise. Both are *text* metrics (``input_kind = "text"``), updated with
``update(predictions, references)``: a string per question and its list of reference strings. States are
sums, so under DDP the synced value is exactly one process's over all the questions.
"""

from __future__ import annotations

import re
import string
from collections import Counter
from collections.abc import Sequence

from lightning_llm.metrics.generation import MeanTextScore

__all__ = ["ExactMatch", "QAF1", "exact_match_score", "normalize_answer", "token_f1"]

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def normalize_answer(text: str) -> str:
    """SQuAD's normalisation: lower case, no punctuation, no articles, single spaces."""
    return " ".join(_ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split())


def exact_match_score(prediction: str, references: Sequence[str]) -> float:
    """1.0 when the normalised prediction equals a normalised reference (or both are empty), else 0.0."""
    return float(any(normalize_answer(prediction) == normalize_answer(ref) for ref in references or [""]))


def token_f1(prediction: str, references: Sequence[str]) -> float:
    """The best over references of the F1 of the normalised words the prediction and reference share."""
    predicted = normalize_answer(prediction).split()
    return max(_f1(predicted, normalize_answer(ref).split()) for ref in references or [""])


def _f1(predicted: list[str], reference: list[str]) -> float:
    if not predicted or not reference:  # an empty answer scores only against an empty one
        return float(predicted == reference)
    common = sum((Counter(predicted) & Counter(reference)).values())
    if common == 0:
        return 0.0
    precision, recall = common / len(predicted), common / len(reference)
    return 2 * precision * recall / (precision + recall)


class _AnswerMetric(MeanTextScore):
    """The mean over questions of ``score(prediction, references)``: a reference *list* per question."""

    def check(self, predictions: Sequence[str], references: Sequence[object]) -> None:
        if len(predictions) != len(references):
            raise ValueError(f"got {len(predictions)} predictions but {len(references)} reference lists")
        for prediction, refs in zip(predictions, references, strict=True):
            if not isinstance(prediction, str) or isinstance(refs, str):
                raise TypeError("predictions must be strings and references lists of strings, one each")


class ExactMatch(_AnswerMetric):
    """Share of questions answered exactly (after normalisation), 0..1; the ``exact_match`` plugin."""

    def score(self, prediction: str, reference: object) -> float:
        return exact_match_score(prediction, reference)


class QAF1(_AnswerMetric):
    """Mean token F1 of the answers, 0..1; the ``qa_f1`` plugin."""

    def score(self, prediction: str, reference: object) -> float:
        return token_f1(prediction, reference)
