"""Text data for language models: streamed sources -> paragraph split -> sharded tokens -> packed windows ->
DataLoaders.

Importing this package registers the built-in ``data`` plugins: for language modelling ``pydoc`` (the
default; Python's bundled documentation, so a run needs no downloads), ``text``, ``jsonl``, ``parquet`` and
``dataset``;
for classification ``pydoc_topics`` and ``classification``; for sequence-to-sequence ``reverse_words`` and
``pairs``. It does not import Lightning: the DataModule classes, which do, load on first use.
"""

import importlib

from lightning_llm.data import classification, datamodule, pairs  # noqa: F401 - importing registers the plugins
from lightning_llm.data.corpus import CorpusTooSmallError, SplitCorpus, split_corpus
from lightning_llm.data.datasets import DatasetTooSmallError, PackedWindows
from lightning_llm.data.shards import TokenCacheError, TokenShards, prepare
from lightning_llm.data.sources import SourceError

__all__ = [
    "ClassificationDataModule",
    "CorpusTooSmallError",
    "PairDataModule",
    "DatasetTooSmallError",
    "PackedWindows",
    "SourceError",
    "SplitCorpus",
    "TextDataModule",
    "TokenCacheError",
    "TokenShards",
    "prepare",
    "split_corpus",
]

# The LightningDataModule subclasses, by the module that defines them (imported on first access).
_LAZY = {
    "ClassificationDataModule": "lightning_llm.data.classification_module",
    "PairDataModule": "lightning_llm.data.pair_module",
    "TextDataModule": "lightning_llm.data.text_module",
}


def __getattr__(name: str) -> object:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
