"""The ``metric`` plugins: each builds one of the torchmetrics classes of this package.

The classes live in ``text`` (perplexity, accuracy), ``classification`` (macro precision, recall, F1),
``generation`` (BLEU, ROUGE-L) and ``qa`` (SQuAD's exact match and F1); each plugin imports its class when
called, because torchmetrics takes most of a second to import and listing the plugins or composing a config
needs only these signatures.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from lightning_llm.registry import register

if TYPE_CHECKING:
    from lightning_llm.metrics.classification import F1, Precision, Recall
    from lightning_llm.metrics.generation import BLEU, ROUGE
    from lightning_llm.metrics.qa import QAF1, ExactMatch
    from lightning_llm.metrics.text import Accuracy, Perplexity

__all__ = ["accuracy", "bleu", "exact_match", "f1", "perplexity", "precision", "qa_f1", "recall", "rouge"]


@register("metric", "perplexity")
def perplexity(ignore_index: int = -100) -> Perplexity:
    """exp(mean token cross-entropy): the effective number of equally likely choices per token.

    Args:
        ignore_index: label value of positions that are not scored.
    """
    from lightning_llm.metrics.text import Perplexity

    return Perplexity(ignore_index=ignore_index)


@register("metric", "accuracy")
def accuracy(ignore_index: int = -100) -> Accuracy:
    """Top-1 accuracy over scored positions (tokens, or sequences for classification).

    Args:
        ignore_index: label value of positions that are not scored.
    """
    from lightning_llm.metrics.text import Accuracy

    return Accuracy(ignore_index=ignore_index)


@register("metric", "precision")
def precision(num_classes: int | None = None, ignore_index: int = -100) -> Precision:
    """Macro-averaged precision: of the items predicted as a class, the share that were it; mean over classes.

    Args:
        num_classes: how many classes there are; null: the model's (what classification data decides).
        ignore_index: label value of positions that are not scored.
    """
    from lightning_llm.metrics.classification import Precision

    return Precision(_classes(num_classes, "precision"), ignore_index=ignore_index)


@register("metric", "recall")
def recall(num_classes: int | None = None, ignore_index: int = -100) -> Recall:
    """Macro-averaged recall: of the items of a class, the share predicted as it; mean over classes.

    Args:
        num_classes: how many classes there are; null: the model's (what classification data decides).
        ignore_index: label value of positions that are not scored.
    """
    from lightning_llm.metrics.classification import Recall

    return Recall(_classes(num_classes, "recall"), ignore_index=ignore_index)


@register("metric", "f1")
def f1(num_classes: int | None = None, ignore_index: int = -100) -> F1:
    """Macro-averaged F1: the mean over classes of each class's harmonic mean of precision and recall.

    Args:
        num_classes: how many classes there are; null: the model's (what classification data decides).
        ignore_index: label value of positions that are not scored.
    """
    from lightning_llm.metrics.classification import F1

    return F1(_classes(num_classes, "f1"), ignore_index=ignore_index)


def _classes(num_classes: int | None, name: str) -> int:
    if num_classes is None or num_classes < 1:
        raise ValueError(
            f"metric {name} needs num_classes >= 1, got {num_classes}: classification data sets it, or give "
            f"it as metrics=[{{name: {name}, num_classes: N}}]"
        )
    return num_classes


@register("metric", "bleu")
def bleu(n_gram: int = 4, smooth: bool = False) -> BLEU:
    """Corpus BLEU (Papineni et al. 2002): clipped n-gram precisions up to ``n_gram``, geometric mean,
    times a brevity penalty, over whitespace-separated tokens; 0..1, 1 when every prediction equals its
    reference.

    Corpus-level, as BLEU is defined: n-gram counts are summed over all examples before the ratio, so it is
    not the mean of sentence BLEUs (which is 0 for every sentence shorter than ``n_gram`` words).

    Args:
        n_gram: the longest n-gram counted (4 is the standard BLEU-4).
        smooth: add-one smoothing of the n-gram precisions (Lin & Och 2004), for small evaluation sets
            where some n-gram order has no match at all.
    """
    from lightning_llm.metrics.generation import BLEU

    return BLEU(n_gram=n_gram, smooth=smooth)


@register("metric", "rouge")
def rouge() -> ROUGE:
    """ROUGE-L F-measure (Lin 2004): from the longest common subsequence of words of a prediction and its
    reference, averaged over examples; 0..1, 1 when every prediction equals its reference.

    The per-example score is torchmetrics' ROUGE-L (``rouge_score``, no stemming, so no nltk data is needed).
    Its ``ROUGEScore`` class keeps one tensor per example in list states, which DDP syncs with one collective
    per element and so hangs when processes hold different numbers of examples; this metric keeps the sum of
    scores and the count instead.
    """
    from lightning_llm.metrics.generation import ROUGE

    return ROUGE()


@register("metric", "exact_match")
def exact_match() -> ExactMatch:
    """SQuAD's exact match: the share of questions whose extracted answer equals one of the references after
    normalisation (lower case, no punctuation or articles); 0..1. A question without an answer (SQuAD 2.0)
    counts when the prediction is empty."""
    from lightning_llm.metrics.qa import ExactMatch

    return ExactMatch()


@register("metric", "qa_f1")
def qa_f1() -> QAF1:
    """SQuAD's F1: the overlap of the answer's normalised words with the best-matching reference's, as the
    harmonic mean of precision and recall, averaged over questions; 0..1."""
    from lightning_llm.metrics.qa import QAF1

    return QAF1()
