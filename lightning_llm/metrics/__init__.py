"""Evaluation metrics (torchmetrics classes). Importing this package registers the ``metric`` plugins."""

from lightning_llm.metrics.text import Accuracy, Perplexity

__all__ = ["Accuracy", "Perplexity"]
