"""The next-sentence-prediction DataModule, built by the ``sentence_pairs`` data plugin
(``lightning_llm.data.sentence_pairs`` draws the pairs and says what a batch holds)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lightning_llm.data.corpus import SPLITS
from lightning_llm.data.datasets import DatasetTooSmallError
from lightning_llm.data.loading import STAGE_SPLITS, SplitDataModule
from lightning_llm.data.sentence_pairs import (
    EncodedPair,
    PairCollator,
    SentencePair,
    encode_pair,
    pairs_fingerprint,
    sentence_pairs,
)
from lightning_llm.data.settings import DataSettings

__all__ = ["SentencePairDataModule"]


class SentencePairDataModule(SplitDataModule):
    """Batches of ``{"input_ids", "attention_mask", "token_type_ids"}`` (B, T) and next-sentence
    ``labels`` (B,), for ``objective=masked_lm_nsp`` (which masks the tokens itself)."""

    def __init__(
        self, tokenizer: object, read_documents: Callable[[], Sequence[str]], settings: DataSettings
    ):
        super().__init__(settings)
        self.tokenizer = tokenizer
        self._read_documents = read_documents
        self._pairs: dict[str, list[SentencePair]] | None = None
        self._datasets: dict[str, list[EncodedPair]] = {}  # a list is a map-style dataset

    def pairs(self, split: str) -> list[SentencePair]:
        if split not in SPLITS:
            raise ValueError(f"unknown split '{split}'; valid splits: {', '.join(SPLITS)}")
        if self._pairs is None:
            self._pairs = sentence_pairs(
                self._read_documents(),
                val_fraction=self.val_fraction,
                test_fraction=self.test_fraction,
                seed=self.split_seed,
            )
        return self._pairs[split]

    def texts(self, split: str) -> list[str]:
        """The paragraphs of ``split``'s pairs (for tokenizer training)."""
        return [text for pair in self.pairs(split) for text in pair[:2]]

    def fingerprint(self) -> str:
        return pairs_fingerprint({split: self.pairs(split) for split in SPLITS})

    def model_settings(self) -> dict[str, int]:
        """The encoder's classifier predicts IsNext / NotNext."""
        return {"num_classes": 2}

    def setup(self, stage: str | None = None) -> None:
        for split in STAGE_SPLITS.get(stage, SPLITS):
            if self.pairs(split) and split not in self._datasets:
                encoded = [encode_pair(pair, self.tokenizer, self.block_size) for pair in self.pairs(split)]
                self._datasets[split] = encoded
        train = self._datasets.get("train")
        if train is not None and len(train) < self.batch_size:
            raise DatasetTooSmallError(
                f"the train split has {len(train)} sentence pairs, fewer than data.batch_size="
                f"{self.batch_size}; lower data.batch_size or add text"
            )

    def has_split(self, split: str) -> bool:
        return bool(self.pairs(split))

    def collate_fn(self) -> PairCollator:
        return PairCollator(self.tokenizer.pad_id)
