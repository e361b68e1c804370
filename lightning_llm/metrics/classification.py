"""Macro-averaged precision, recall and F1 over classes: the usual scores of a classifier on imbalanced data.

Each metric takes ``update(logits, labels)`` with logits (..., C) and labels (...), skipping positions
labelled ``ignore_index``, and keeps the top-1 predictions and the labels as "cat" states, which torchmetrics
gathers from every process before ``compute``: the result is exact over the whole split under DDP, and no
process needs to know the number of classes in advance (a process that saw no batch contributes nothing).

"Macro" is the unweighted mean over classes of the per-class score, taken over the classes that occur among
the labels or the predictions (as scikit-learn and torchmetrics do); a per-class 0/0 counts as 0. Macro F1 is
the mean of per-class F1 scores, not the harmonic mean of macro precision and macro recall.
"""

from collections.abc import Callable

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from lightning_llm.metrics.text import predicted_ids
from lightning_llm.models.chunked_head import TokenScores

__all__ = [
    "F1",
    "Precision",
    "Recall",
    "class_counts",
    "macro_f1",
    "macro_precision",
    "macro_recall",
]


# --------------------------------------------------------------------------- the maths


def class_counts(
    preds: torch.Tensor, labels: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-class true positives, false positives and false negatives, each (C,) int64, of 1-D class ids;
    C is one more than the largest id among both."""
    num_classes = int(torch.cat([preds, labels]).max().item()) + 1 if preds.numel() else 0
    tp = torch.bincount(labels[preds == labels], minlength=num_classes)
    fp = torch.bincount(preds, minlength=num_classes) - tp  # predicted as the class, but were not
    fn = torch.bincount(labels, minlength=num_classes) - tp  # were the class, but predicted otherwise
    return tp, fp, fn


def macro_precision(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """Mean over occurring classes of tp / (tp + fp)."""
    return _macro_mean(tp, tp + fp, tp + fp + fn)


def macro_recall(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """Mean over occurring classes of tp / (tp + fn)."""
    return _macro_mean(tp, tp + fn, tp + fp + fn)


def macro_f1(tp: torch.Tensor, fp: torch.Tensor, fn: torch.Tensor) -> torch.Tensor:
    """Mean over occurring classes of 2 tp / (2 tp + fp + fn), which equals 2 p r / (p + r) per class."""
    return _macro_mean(2 * tp, 2 * tp + fp + fn, tp + fp + fn)


def _macro_mean(
    numerator: torch.Tensor, denominator: torch.Tensor, occurrences: torch.Tensor
) -> torch.Tensor:
    """Mean of numerator / denominator (0 where the denominator is 0) over classes that occur at all;
    nan when none does."""
    occurs = occurrences > 0
    scores = numerator.double() / denominator.clamp(min=1).double()  # a 0/0 score is 0/1 = 0
    return scores[occurs].mean()  # mean of an empty selection: nan


# --------------------------------------------------------------------------- the metrics


class _MacroClassificationMetric(Metric):
    """Collects top-1 predictions and labels; subclasses name the macro score ``compute`` returns."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False
    score: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]  # (tp, fp, fn) -> macro score

    def __init__(self, ignore_index: int = -100):
        super().__init__()
        self.ignore_index = ignore_index
        self.add_state("preds", default=[], dist_reduce_fx="cat")
        self.add_state("labels", default=[], dist_reduce_fx="cat")
        self.reset()

    def reset(self) -> None:
        """Empty the states, each holding one empty int64 tensor: a process that saw no batch then still
        sends int64 ids when the states are gathered (torchmetrics would send an empty *float* tensor in
        place of an empty list, and the all-gather of mismatched dtypes fails)."""
        super().reset()
        self.preds.append(torch.empty(0, dtype=torch.int64, device=self.device))
        self.labels.append(torch.empty(0, dtype=torch.int64, device=self.device))

    def update(self, logits: torch.Tensor | TokenScores, labels: torch.Tensor) -> None:
        scored = labels != self.ignore_index
        self.preds.append(predicted_ids(logits, labels)[scored])  # (N,) over the scored positions
        self.labels.append(labels[scored])

    def compute(self) -> torch.Tensor:
        """The macro score over everything seen (on every process); nan before any scored label."""
        return self.score(*class_counts(dim_zero_cat(self.preds), dim_zero_cat(self.labels)))


class Precision(_MacroClassificationMetric):
    """Macro-averaged precision.

    The ``precision`` metric plugin (``lightning_llm.metrics.plugins``) documents it and its parameters.
    """

    score = staticmethod(macro_precision)


class Recall(_MacroClassificationMetric):
    """Macro-averaged recall.

    The ``recall`` metric plugin (``lightning_llm.metrics.plugins``) documents it and its parameters.
    """

    score = staticmethod(macro_recall)


class F1(_MacroClassificationMetric):
    """Macro-averaged F1.

    The ``f1`` metric plugin (``lightning_llm.metrics.plugins``) documents it and its parameters.
    """

    score = staticmethod(macro_f1)
