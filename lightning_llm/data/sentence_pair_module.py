"""The next-sentence-prediction DataModule, built by the ``sentence_pairs`` data plugin
(``lightning_llm.data.sentence_pairs`` draws the pairs and says what a batch holds)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from lightning_llm.data.corpus import SPLITS
from lightning_llm.data.loading import STAGE_SPLITS, ReadSplitsDataModule
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


class SentencePairDataModule(ReadSplitsDataModule):
    """Batches of ``{"input_ids", "attention_mask", "token_type_ids"}`` (B, T) and next-sentence
    ``labels`` (B,), for ``objective=masked_lm_nsp`` (which masks the tokens itself)."""

    def __init__(
        self, tokenizer: object, read_documents: Callable[[], Sequence[str]], settings: DataSettings
    ):
        def read_splits() -> dict[str, list[SentencePair]]:
            return sentence_pairs(
                read_documents(),
                val_fraction=settings.val_fraction,
                test_fraction=settings.test_fraction,
                seed=settings.split_seed,
            )

        super().__init__(settings, read_splits)
        self.tokenizer = tokenizer
        self._datasets: dict[str, list[EncodedPair]] = {}  # a list is a map-style dataset

    def pairs(self, split: str) -> list[SentencePair]:
        return self.examples(split)

    def texts(self, split: str) -> list[str]:
        """The paragraphs of ``split``'s pairs (for tokenizer training)."""
        return [text for pair in self.pairs(split) for text in pair[:2]]

    def fingerprint(self) -> str:
        return pairs_fingerprint({split: self.pairs(split) for split in SPLITS})

    def model_settings(self) -> dict[str, int]:
        """The encoder's classifier predicts IsNext / NotNext."""
        return {"num_classes": 2}

    def data_settings(self) -> dict[str, list[str]]:
        """Class 0 is IsNext, 1 NotNext (BERT's convention): a classifier of other labels is not this one."""
        return {"labels": ["IsNext", "NotNext"]}

    def setup(self, stage: str | None = None) -> None:
        for split in STAGE_SPLITS.get(stage, SPLITS):
            if self.pairs(split) and split not in self._datasets:
                encoded = [encode_pair(pair, self.tokenizer, self.block_size) for pair in self.pairs(split)]
                self._datasets[split] = encoded
        self.check_train_size("sentence pairs", "add text")

    def collate_fn(self) -> PairCollator:
        return PairCollator(self.tokenizer.pad_id)
