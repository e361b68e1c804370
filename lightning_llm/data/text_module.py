"""The causal-LM DataModule: packed windows of a token cache, built by the ``data`` plugins of
``lightning_llm.data.datamodule`` (``pydoc``, ``text``, ``jsonl``, ``parquet``).

A run goes: ``texts("train")`` (the framework trains the tokenizer on it) -> ``prepare_data()`` (tokenize
every split once into the token cache; Lightning runs it on one process per node) -> ``setup(stage)``
(memory-map the caches on every process) -> DataLoaders of packed windows. Nothing is read or tokenized in
the constructor, so building the module is free and the tokenizer may still be untrained at that point.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from lightning_llm.data.corpus import SPLITS, SplitCorpus, split_corpus
from lightning_llm.data.datasets import DatasetTooSmallError, PackedWindows
from lightning_llm.data.loading import STAGE_SPLITS, SplitDataModule
from lightning_llm.data.settings import DataSettings
from lightning_llm.data.token_cache import TokenizerLike, ensure_token_cache, open_tokens

__all__ = ["TextDataModule"]


class TextDataModule(SplitDataModule):
    """Batches of ``{"input_ids", "labels"}``, each ``(batch_size, block_size)`` int64, for causal LM.

    ``read_documents`` is called once, on first use, to get the corpus as a list of documents; it is split by
    paragraph into train/val/test (see ``lightning_llm.data.corpus``). A split whose fraction is 0 is
    deliberately empty and its DataLoader is an empty list, which Lightning skips.
    """

    def __init__(
        self,
        tokenizer: TokenizerLike,
        cache_dir: str | Path,
        read_documents: Callable[[], list[str]],
        settings: DataSettings | None = None,
    ) -> None:
        super().__init__(settings or DataSettings())
        self.tokenizer = tokenizer
        self.cache_dir = Path(cache_dir).expanduser()
        self._read_documents = read_documents
        self._corpus: SplitCorpus | None = None
        self._token_files: dict[str, Path] = {}
        self._datasets: dict[str, PackedWindows] = {}

    # -- the corpus (before tokenizer training)

    def texts(self, split: str) -> list[str]:
        """The texts of ``split`` ("train", "val" or "test"); the corpus is read and split on first use."""
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; valid splits: {', '.join(SPLITS)}")
        return self._split_corpus().texts[split]

    def fingerprint(self) -> str:
        """A hash of the split texts and split parameters: same value, same corpus, on any machine."""
        return self._split_corpus().fingerprint

    def _split_corpus(self) -> SplitCorpus:
        if self._corpus is None:
            self._corpus = split_corpus(
                self._read_documents(),
                val_fraction=self.val_fraction,
                test_fraction=self.test_fraction,
                seed=self.split_seed,
            )
        return self._corpus

    # -- Lightning hooks (after tokenizer training)

    def prepare_data(self) -> None:
        """Tokenize every non-empty split into the token cache (a no-op when the cache already exists)."""
        for split in SPLITS:
            if self.texts(split):
                self._token_file(split)

    def setup(self, stage: str | None = None) -> None:
        """Memory-map the token caches the stage needs and cut them into windows."""
        for split in STAGE_SPLITS.get(stage, SPLITS):
            if self.texts(split) and split not in self._datasets:
                tokens = open_tokens(self._token_file(split), self.tokenizer.vocab_size)
                self._datasets[split] = PackedWindows(tokens, self.block_size, split)
        if "train" in self._datasets:
            self._check_one_train_batch()

    # -- helpers

    def _token_file(self, split: str) -> Path:
        if split not in self._token_files:
            self._token_files[split] = ensure_token_cache(
                self.texts(split),
                self.tokenizer,
                cache_dir=self.cache_dir,
                split=split,
                corpus_fingerprint=self.fingerprint(),
            )
        return self._token_files[split]

    def _check_one_train_batch(self) -> None:
        windows = len(self._datasets["train"])
        if windows < self.batch_size:  # drop_last would leave an epoch with no batch at all
            raise DatasetTooSmallError(
                f"the train split has {windows} windows of block_size={self.block_size}, fewer than "
                f"data.batch_size={self.batch_size}; lower data.batch_size or data.block_size, or add text"
            )

    def has_split(self, split: str) -> bool:
        return bool(self.texts(split))  # empty: turned off with fraction 0
