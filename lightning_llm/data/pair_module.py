"""The sequence-to-sequence DataModule, built by the ``pairs`` and ``reverse_words`` data plugins
(``lightning_llm.data.pairs``, which reads and splits the pairs and says what a batch holds).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from lightning_llm.data.corpus import SPLITS
from lightning_llm.data.loading import STAGE_SPLITS, ReadSplitsDataModule
from lightning_llm.data.pairs import (
    Example,
    Pair,
    PairDataset,
    PairTokenizer,
    Seq2SeqCollator,
    pairs_fingerprint,
)
from lightning_llm.data.settings import PairSettings

__all__ = ["PairDataModule"]

log = logging.getLogger(__name__)


class PairDataModule(ReadSplitsDataModule):
    """Seq2seq batches (as ``lightning_llm.data.pairs`` lays them out) of the pairs ``read_splits()`` gives.

    ``read_splits`` is called once, on first use, and returns the pairs of each split; an empty split is
    deliberately off and its DataLoader is an empty list, which Lightning skips. Nothing is read or
    tokenized in the constructor, so building the module is free while the tokenizer is still untrained.
    """

    def __init__(
        self,
        tokenizer: PairTokenizer,
        read_splits: Callable[[], dict[str, list[Pair]]],
        settings: PairSettings | None = None,
    ) -> None:
        super().__init__(settings or PairSettings(), read_splits)
        self.tokenizer = tokenizer
        self._datasets: dict[str, PairDataset] = {}

    # -- the pairs (before tokenizer training)

    def pairs(self, split: str) -> list[Pair]:
        """The pairs of ``split`` ("train", "val" or "test"); read and split on first use."""
        return self.examples(split)

    def texts(self, split: str) -> list[str]:
        """Every source and target of ``split``, for tokenizer training."""
        return [text for pair in self.pairs(split) for text in pair]

    def fingerprint(self) -> str:
        """A hash of every split's pairs: same value, same data, on any machine."""
        return pairs_fingerprint({split: self.pairs(split) for split in SPLITS})

    # -- Lightning hooks (after tokenizer training)

    def setup(self, stage: str | None = None) -> None:
        """Tokenize the splits the stage needs (every process does it: it takes well under a second)."""
        for split in STAGE_SPLITS.get(stage, SPLITS):
            if self.pairs(split) and split not in self._datasets:
                self._datasets[split] = PairDataset(self._tokenize(split))
        self.check_train_size("pairs", "add pairs")

    # -- helpers

    def collate_fn(self) -> Seq2SeqCollator:
        return self.collator()

    def collator(self) -> Seq2SeqCollator:
        tok = self.tokenizer
        return Seq2SeqCollator(pad_id=tok.pad_id, bos_id=tok.bos_id, eos_id=tok.eos_id)

    def _tokenize(self, split: str) -> list[Example]:
        pairs = self.pairs(split)
        sources = self.tokenizer.encode_batch([pair.source for pair in pairs])
        targets = self.tokenizer.encode_batch([pair.target for pair in pairs])
        max_target = self.block_size - 1  # room for bos (decoder inputs) or eos (labels)
        cut = sum(len(s) > self.block_size for s in sources) + sum(len(t) > max_target for t in targets)
        if cut:
            log.warning(
                "%s split: %d sources/targets are longer than data.block_size=%d tokens and were truncated",
                split,
                cut,
                self.block_size,
            )
        return [
            Example(source[: self.block_size], target[:max_target], pair.target)
            for pair, source, target in zip(pairs, sources, targets, strict=True)
        ]
