"""Text data for language models: sources -> paragraph split -> token cache -> packed windows -> DataLoaders.

Importing this package registers the built-in ``data`` plugins: for language modelling ``pydoc`` (the
default; Python's bundled documentation, so a run needs no downloads), ``text``, ``jsonl`` and ``parquet``;
for classification ``pydoc_topics`` and ``classification``; for sequence-to-sequence ``reverse_words`` and
``pairs``.
"""

from lightning_llm.data.classification import ClassificationDataModule
from lightning_llm.data.corpus import CorpusTooSmallError, SplitCorpus, split_corpus
from lightning_llm.data.datamodule import TextDataModule
from lightning_llm.data.datasets import DatasetTooSmallError, PackedWindows
from lightning_llm.data.pairs import PairDataModule
from lightning_llm.data.sources import SourceError
from lightning_llm.data.token_cache import ensure_token_cache, open_tokens

__all__ = [
    "ClassificationDataModule",
    "CorpusTooSmallError",
    "PairDataModule",
    "DatasetTooSmallError",
    "PackedWindows",
    "SourceError",
    "SplitCorpus",
    "TextDataModule",
    "ensure_token_cache",
    "open_tokens",
    "split_corpus",
]
