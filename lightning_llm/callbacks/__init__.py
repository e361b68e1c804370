"""Callbacks every run gets (throughput, the run summary, text samples at the end, ...), and the ``callback``
plugins a config adds by name (``lightning_llm.callbacks.library``).

Importing this package registers those plugins without importing Lightning: the classes below load on first
use.
"""

from lightning_llm.callbacks import library  # noqa: F401 - importing registers the plugins
from lightning_llm.lazy import lazy_exports

__all__ = ["RunSummary", "TextSamples", "Throughput"]

# Each class by the module that defines it (imported on first access).
_LAZY = {
    "RunSummary": "lightning_llm.callbacks.run_summary",
    "TextSamples": "lightning_llm.callbacks.text_samples",
    "Throughput": "lightning_llm.callbacks.throughput",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
