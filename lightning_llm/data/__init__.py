"""Data: streamed sources -> paragraph split -> sharded tokens -> packed windows -> DataLoaders.

The built-in ``data`` plugins live in ``lightning_llm.data.datamodule`` (importing it registers them): for
language modelling ``pydoc`` (the default; Python's bundled documentation, so a run needs no downloads),
``text``, ``jsonl``, ``parquet`` and ``dataset``; for classification ``pydoc_topics`` and ``classification``;
for sequence-to-sequence ``reverse_words`` and ``pairs``. This package itself imports neither torch nor
Lightning (the processes that prepare a corpus import only what reading and tokenizing need): the names
below load on first access.
"""

from lightning_llm.lazy import lazy_exports

__all__ = [
    "ClassificationDataModule",
    "CorpusTooSmallError",
    "DatasetTooSmallError",
    "PackedWindows",
    "PairDataModule",
    "SourceError",
    "SplitCorpus",
    "TextDataModule",
    "TokenCacheError",
    "TokenShards",
    "prepare",
    "split_corpus",
]

# Each public name, by the module that defines it (imported on first access).
_LAZY = {
    "ClassificationDataModule": "lightning_llm.data.classification_module",
    "CorpusTooSmallError": "lightning_llm.data.corpus",
    "DatasetTooSmallError": "lightning_llm.data.datasets",
    "PackedWindows": "lightning_llm.data.datasets",
    "PairDataModule": "lightning_llm.data.pair_module",
    "SourceError": "lightning_llm.data.sources",
    "SplitCorpus": "lightning_llm.data.corpus",
    "TextDataModule": "lightning_llm.data.text_module",
    "TokenCacheError": "lightning_llm.data.shards",
    "TokenShards": "lightning_llm.data.shards",
    "prepare": "lightning_llm.data.shards",
    "split_corpus": "lightning_llm.data.corpus",
}


__getattr__, __dir__ = lazy_exports(__name__, _LAZY)
