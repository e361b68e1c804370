"""Evaluation metrics (torchmetrics classes). Importing this package registers the ``metric`` plugins."""

from lightning_llm.metrics.classification import F1, Precision, Recall
from lightning_llm.metrics.generation import BLEU, ROUGE
from lightning_llm.metrics.text import Accuracy, Perplexity

__all__ = ["BLEU", "F1", "ROUGE", "Accuracy", "Perplexity", "Precision", "Recall"]
