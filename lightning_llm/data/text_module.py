"""The causal-LM DataModule: packed windows of a prepared corpus, built by the ``data`` plugins of
``lightning_llm.data.datamodule`` (``pydoc``, ``text``, ``jsonl``, ``parquet``, ``dataset``).

A run goes: ``tokenizer_sample(max_chars)`` (the framework trains the tokenizer on a sample of the train
split) -> ``prepare_data()`` (stream every unit of the corpus once into sharded token files,
``lightning_llm.data.shards``; Lightning runs it on one process per node) -> ``setup(stage)`` (memory-map the
shards on every process) -> DataLoaders of packed windows. Nothing is read or tokenized in the constructor,
and a run whose corpus is prepared reads no corpus text at all: the cache is found from file metadata.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

from lightning_llm.data.corpus import SPLITS, check_paragraph_counts, check_split
from lightning_llm.data.datasets import DatasetTooSmallError, PackedWindows
from lightning_llm.data.loading import STAGE_SPLITS, SplitDataModule
from lightning_llm.data.settings import DataSettings
from lightning_llm.data.shards import (
    SplitRule,
    TokenCacheError,
    TokenizerLike,
    TokenShards,
    prepare,
    sample_texts,
    split_texts,
)
from lightning_llm.data.streams import Corpus

__all__ = ["TextDataModule"]

log = logging.getLogger(__name__)


class TextDataModule(SplitDataModule):
    """Batches of ``{"input_ids", "labels"}``, each ``(batch_size, block_size)`` int64, for causal LM.

    The corpus is split into train/val/test by paragraph (text files, pydoc) or by record (jsonl, parquet,
    dataset), see ``lightning_llm.data.corpus``. A split whose
    fraction is 0 is deliberately empty and its DataLoader is an empty list, which Lightning skips.
    ``num_proc`` processes prepare the corpus (0: one per 4 cores, each encoding with 4 threads).
    """

    def __init__(
        self,
        tokenizer: TokenizerLike,
        cache_dir: str | Path,
        corpus: Corpus,
        settings: DataSettings | None = None,
        num_proc: int = 0,
    ) -> None:
        super().__init__(settings or DataSettings())
        self.tokenizer = tokenizer
        self.cache_dir = Path(cache_dir).expanduser()
        self.corpus = corpus
        self.num_proc = num_proc
        self.rule = SplitRule(self.val_fraction, self.test_fraction, self.split_seed)
        self._fingerprint: str | None = None
        self._prepared: tuple[Path, dict] | None = None  # (its folder, the manifest), once prepared or found
        self._datasets: dict[str, PackedWindows] = {}

    # -- the corpus (before tokenizer training)

    def fingerprint(self) -> str:
        """What identifies the corpus and its split, from file metadata only (see ``Corpus.fingerprint``)."""
        if self._fingerprint is None:
            self._fingerprint = f"{self.corpus.fingerprint()}:{self.rule}"
        return self._fingerprint

    def tokenizer_sample(self, max_chars: int) -> Iterator[str]:
        """About ``max_chars`` characters of train-split text, spread over the corpus, to train on."""
        return sample_texts(self.corpus, self.rule, max_chars)

    def texts(self, split: str) -> list[str]:
        """Every text of ``split`` ("train", "val" or "test"), read whole: for small corpora, inspection."""
        check_split(split)
        return list(split_texts(self.corpus, self.rule, split))

    # -- Lightning hooks (after tokenizer training)

    def prepare_data(self) -> None:
        """Prepare the corpus into the token cache (a no-op when it is complete)."""
        self._prepare()

    def setup(self, stage: str | None = None) -> None:
        """Memory-map the shards of the splits the stage needs and cut them into windows."""
        folder, manifest = self._prepare()
        for split in STAGE_SPLITS.get(stage, SPLITS):
            if self.has_split(split) and split not in self._datasets:
                tokens = TokenShards(folder, split, manifest)
                # recorded as the shards were written: reading every token here would cost each process
                # a pass over the whole split on every start
                if (high := manifest["max_id"][split]) >= self.tokenizer.vocab_size:
                    raise TokenCacheError(
                        f"token cache {folder} holds id {high}, outside this tokenizer's vocab_size="
                        f"{self.tokenizer.vocab_size} (damaged); delete it and run again to rebuild it"
                    )
                self._datasets[split] = PackedWindows(
                    tokens, self.block_size, split, self.tokenizer.vocab_size, f"token cache {folder}"
                )
                log.info(
                    "%s split: %d tokens in %d shards at %s", split, len(tokens), len(tokens.sizes), folder
                )
        if "train" in self._datasets:
            self._check_one_train_batch()

    def has_split(self, split: str) -> bool:
        check_split(split)
        return split == "train" or getattr(self, f"{split}_fraction") > 0  # empty: turned off with fraction 0

    # -- helpers

    def _prepare(self) -> tuple[Path, dict]:
        """The prepared corpus's folder and manifest, preparing it (or finding it) on first use."""
        if self._prepared is None:
            folder, manifest = prepare(
                self.corpus, self.tokenizer, self.rule, self.cache_dir, num_proc=self.num_proc
            )
            assert manifest is not None  # every unit was prepared here
            self.check_split_counts(manifest)
            self._prepared = folder, manifest
        return self._prepared

    def check_split_counts(self, manifest: dict) -> None:
        """Refuse a prepared corpus this run cannot use: no text at all, none in train, or none in a val or
        test split that has a fraction (``corpus.check_paragraph_counts``, naming ``data.paths``)."""
        check_paragraph_counts(
            manifest["paragraphs"],
            {"val": self.val_fraction, "test": self.test_fraction},
            source=f"data.paths={list(self.corpus.paths)}" if self.corpus.paths else "",
        )

    def _check_one_train_batch(self) -> None:
        windows = len(self._datasets["train"])
        if windows < self.batch_size:  # drop_last would leave an epoch with no batch at all
            raise DatasetTooSmallError(
                f"the train split has {windows} windows of block_size={self.block_size}, fewer than "
                f"data.batch_size={self.batch_size}; lower data.batch_size or data.block_size, or add text"
            )
