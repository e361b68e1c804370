"""Text data for language models: sources -> paragraph split -> token cache -> packed windows -> DataLoaders.

Importing this package registers the built-in ``data`` plugins: ``pydoc`` (the default; Python's bundled
documentation, so a run needs no downloads), ``text``, ``jsonl`` and ``parquet``.
"""

from lightning_llm.data.corpus import CorpusTooSmallError, SplitCorpus, split_corpus
from lightning_llm.data.datamodule import TextDataModule
from lightning_llm.data.datasets import DatasetTooSmallError, PackedWindows
from lightning_llm.data.sources import SourceError
from lightning_llm.data.token_cache import ensure_token_cache, open_tokens

__all__ = [
    "CorpusTooSmallError",
    "DatasetTooSmallError",
    "PackedWindows",
    "SourceError",
    "SplitCorpus",
    "TextDataModule",
    "ensure_token_cache",
    "open_tokens",
    "split_corpus",
]
