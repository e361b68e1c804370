"""Tokenizer plugins (kind ``tokenizer``), all backed by Hugging Face ``tokenizers``.

Importing this package registers every built-in: ``byte_bpe`` (the default), ``bpe``, ``wordpiece``,
``unigram``, ``char`` and ``pretrained``. Each returns a ``Tokenizer``; ``fit_or_load`` trains it or loads it
from a cache keyed by its spec and the corpus.
"""

from lightning_llm.tokenizers.base import (
    SPECIAL_TOKENS,
    Tokenizer,
    TokenizerFileError,
    TokenizerNotTrainedError,
)
from lightning_llm.tokenizers.cache import CacheWriteError, cache_key, fit_or_load
from lightning_llm.tokenizers.char import CharTokenizer
from lightning_llm.tokenizers.hf import BPETokenizer, ByteBPETokenizer, UnigramTokenizer, WordPieceTokenizer
from lightning_llm.tokenizers.pretrained import PretrainedTokenizer

__all__ = [
    "SPECIAL_TOKENS",
    "BPETokenizer",
    "ByteBPETokenizer",
    "CacheWriteError",
    "CharTokenizer",
    "PretrainedTokenizer",
    "Tokenizer",
    "TokenizerFileError",
    "TokenizerNotTrainedError",
    "UnigramTokenizer",
    "WordPieceTokenizer",
    "cache_key",
    "fit_or_load",
]
