"""Evaluation metrics (torchmetrics classes).

Importing this package registers the ``metric`` plugins (``lightning_llm.metrics.plugins``) without importing
torchmetrics: the classes below load on first use.
"""

from lightning_llm.lazy import lazy_exports
from lightning_llm.metrics import plugins  # noqa: F401 - importing registers the plugins

__all__ = ["BLEU", "F1", "QAF1", "ROUGE", "Accuracy", "ExactMatch", "Perplexity", "Precision", "Recall"]

# Each class by the module that defines it (imported on first access).
_LAZY = {
    "Accuracy": "lightning_llm.metrics.text",
    "BLEU": "lightning_llm.metrics.generation",
    "ExactMatch": "lightning_llm.metrics.qa",
    "QAF1": "lightning_llm.metrics.qa",
    "F1": "lightning_llm.metrics.classification",
    "Perplexity": "lightning_llm.metrics.text",
    "Precision": "lightning_llm.metrics.classification",
    "ROUGE": "lightning_llm.metrics.generation",
    "Recall": "lightning_llm.metrics.classification",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
