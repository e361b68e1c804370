"""The sequence-classification DataModule, built by the ``pydoc_topics`` and ``classification`` data plugins
(``lightning_llm.data.classification``, which reads, splits and labels the examples and says what a batch
holds).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from lightning_llm.data.classification import (
    ClassificationTokenizer,
    EncodedExamples,
    Example,
    PadCollate,
    check_labels,
    describe_labels,
    examples_fingerprint,
    label_names,
    split_examples,
)
from lightning_llm.data.corpus import SPLITS, check_split
from lightning_llm.data.loading import STAGE_SPLITS, SplitDataModule
from lightning_llm.data.settings import ClassificationSettings

__all__ = ["ClassificationDataModule"]

log = logging.getLogger(__name__)


class ClassificationDataModule(SplitDataModule):
    """Batches of ``{"input_ids", "attention_mask", "labels"}`` for sequence classification.

    ``read_train`` (and ``read_val`` / ``read_test`` where given) are called once, on first use; a split with
    no reader is held out of the train examples by hash. A split whose fraction is 0 and that has no reader
    is deliberately empty, and its DataLoader is an empty list, which Lightning skips.
    """

    drop_last_train = False  # the loss is summed and divided by the count: a short last batch is exact

    def __init__(
        self,
        tokenizer: ClassificationTokenizer,
        read_train: Callable[[], list[Example]],
        read_val: Callable[[], list[Example]] | None = None,
        read_test: Callable[[], list[Example]] | None = None,
        settings: ClassificationSettings | None = None,
    ) -> None:
        super().__init__(settings or ClassificationSettings())
        self.tokenizer = tokenizer
        self._readers = {"train": read_train, "val": read_val, "test": read_test}
        self._splits: dict[str, list[Example]] | None = None
        self._labels: list[str] = []
        self._learned: list[str] | None = None  # a trained model's labels (adopt_data_settings)
        self._datasets: dict[str, EncodedExamples] = {}

    # -- the examples (before tokenizer training)

    def texts(self, split: str) -> list[str]:
        """The texts of ``split`` ("train", "val" or "test"); the examples are read on first use."""
        return [example.text for example in self.examples(split)]

    def examples(self, split: str) -> list[Example]:
        """The labelled examples of ``split``, in reading order."""
        check_split(split)
        return list(self._examples()[split])

    @property
    def labels(self) -> list[str]:
        """The label names; class index i is ``labels[i]``."""
        self._examples()
        return list(self._labels)

    @property
    def num_classes(self) -> int:
        return len(self.labels)

    def model_settings(self) -> dict[str, int]:
        """What the data decides of the model: its classifier head has one output per label."""
        return {"num_classes": self.num_classes}

    def data_settings(self) -> dict[str, list[str]]:
        """What a model trained on this data relies on beyond its shape: class i means ``labels[i]``. Stored
        in its checkpoints; data that evaluates or resumes it must give the same order."""
        return {"labels": self.labels}

    def adopt_data_settings(self, stored: dict[str, Any]) -> None:
        """Number the classes as the model that ``stored`` (its checkpoint's ``data_settings``) describes,
        not by this data's own labels: a test file holding only some of them is scored against the right
        names. A label the model never learned is an error naming it."""
        labels = stored.get("labels")
        if isinstance(labels, list) and all(isinstance(label, str) for label in labels):
            self._learned, self._splits, self._datasets = list(labels), None, {}

    def fingerprint(self) -> str:
        """A hash of the split examples and split parameters: same value, same data, on any machine."""
        params = {"val": self.val_fraction, "test": self.test_fraction, "seed": self.split_seed}
        return examples_fingerprint(self._examples(), params)

    def _examples(self) -> dict[str, list[Example]]:
        if self._splits is None:
            read = {split: reader() if reader else None for split, reader in self._readers.items()}
            splits = split_examples(
                read["train"],
                read["val"],
                read["test"],
                val_fraction=self.val_fraction,
                test_fraction=self.test_fraction,
                seed=self.split_seed,
            )
            labels = label_names(splits["train"]) if self._learned is None else self._learned
            check_labels(splits, labels, learned=self._learned is not None)
            log.info("%s%s", describe_labels(labels), "" if self._learned is None else " (the model's)")
            self._splits, self._labels = splits, labels
        return self._splits

    # -- Lightning hooks (after tokenizer training)

    def prepare_data(self) -> None:
        """Nothing to download or cache: the examples are read and tokenized in ``setup``."""

    def setup(self, stage: str | None = None) -> None:
        """Tokenize the splits the stage needs: ``<cls>`` + tokens, cut to ``block_size``."""
        for split in STAGE_SPLITS.get(stage, SPLITS):
            if split not in self._datasets and self._examples()[split]:
                self._datasets[split] = self._encode(self._examples()[split])

    def _encode(self, examples: list[Example]) -> EncodedExamples:
        cls_id, keep = self.tokenizer.cls_id, self.block_size - 1
        token_ids = self.tokenizer.encode_batch([example.text for example in examples])
        index = {label: i for i, label in enumerate(self._labels)}
        return EncodedExamples(
            [[cls_id, *ids[:keep]] for ids in token_ids], [index[example.label] for example in examples]
        )

    def has_split(self, split: str) -> bool:
        return bool(self.examples(split))

    def collate_fn(self) -> PadCollate:
        return PadCollate(self.tokenizer.pad_id)
