"""Macro-averaged precision, recall and F1 over classes: the usual scores of a classifier on imbalanced data.

torchmetrics' multiclass metrics with ``average="macro"``, taking what this framework's models give them:
``update(outputs, labels)`` with logits (..., C) or a chunked head's ``TokenScores``, and labels (...),
positions labelled ``ignore_index`` skipped. Each keeps per-class counts (true and false positives and
negatives, (C,) each, summed over processes under DDP), so memory does not grow with the split and the result
is exact over all of it; a process that saw no batch contributes zeros.

"Macro" is the unweighted mean over classes of the per-class score, taken over the classes that occur among
the labels or the predictions (torchmetrics gives a class with no true positive, false positive or false
negative no weight, as scikit-learn leaves it out); a per-class 0/0 counts as 0. Macro F1 is the mean of
per-class F1 scores, not the harmonic mean of macro precision and macro recall. torchmetrics counts a C x C
confusion matrix per update: meant for classifiers, not for a language model's vocabulary.
"""

from __future__ import annotations

import torch
from torchmetrics.classification import MulticlassF1Score, MulticlassPrecision, MulticlassRecall

from lightning_llm.metrics.text import predicted_ids
from lightning_llm.models.chunked_head import TokenScores

__all__ = ["F1", "Precision", "Recall"]


class _ScoresToClasses:
    """Top-1 class ids of any outputs shape, flattened with their labels, for a torchmetrics multiclass
    metric (which reads logits as (N, C, ...), the class axis second, where models put it last)."""

    def __init__(self, num_classes: int, ignore_index: int = -100) -> None:
        super().__init__(num_classes=num_classes, average="macro", ignore_index=ignore_index)

    def update(self, outputs: torch.Tensor | TokenScores, labels: torch.Tensor) -> None:
        scored = labels[labels != self.ignore_index]
        if scored.numel() and (top := int(scored.max())) >= self.num_classes:  # token ids, not classes
            raise ValueError(
                f"metric {type(self).__name__.lower()} scores {self.num_classes} classes, but a label is "
                f"{top}: the objective's labels are not those classes (a masked LM's are token ids); it fits "
                "objective=classification (for tokens: metrics=[perplexity,accuracy])"
            )
        super().update(predicted_ids(outputs, labels).reshape(-1), labels.reshape(-1))


class Precision(_ScoresToClasses, MulticlassPrecision):
    """Macro precision: of the items predicted as a class, the share that were it; mean over classes."""


class Recall(_ScoresToClasses, MulticlassRecall):
    """Macro recall: of the items of a class, the share predicted as it; mean over classes."""


class F1(_ScoresToClasses, MulticlassF1Score):
    """Macro F1: the mean over classes of each class's harmonic mean of precision and recall."""
