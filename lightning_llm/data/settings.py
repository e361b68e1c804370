"""The settings every built-in data plugin shares, declared once: a data plugin's dataclass extends one of
these (``lightning_llm.data.datamodule``), and the DataModule it builds reads them from it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from lightning_llm.data.corpus import check_fraction

__all__ = ["ClassificationSettings", "DataSettings", "PairSettings"]


@dataclass(kw_only=True)
class DataSettings:
    """How sequences are cut, batched, split off and loaded."""

    min_block_size: ClassVar[int] = 1  # the shortest block_size a sequence of this kind can use

    block_size: int = 256  # tokens per sequence (the context length the model trains at)
    batch_size: int = 16  # sequences per micro-batch on each device
    val_fraction: float = 0.05  # share held out for validation, in [0, 0.5); 0 turns validation off
    test_fraction: float = 0.05  # share held out for the final test, in [0, 0.5); 0 turns testing off
    split_seed: int = 1234  # seed of the split hash; change it for a different split
    num_workers: int = 0  # DataLoader worker processes (0 loads in the training process)
    shuffle_seed: int = 0  # seed of the training-order shuffle

    def __post_init__(self) -> None:
        if self.block_size < self.min_block_size:
            at_least = "> 0" if self.min_block_size == 1 else f">= {self.min_block_size}"
            raise ValueError(f"data.block_size must be {at_least}, got {self.block_size}")
        if self.batch_size <= 0:
            raise ValueError(f"data.batch_size must be > 0, got {self.batch_size}")
        if self.num_workers < 0:
            raise ValueError(f"data.num_workers must be >= 0, got {self.num_workers}")
        check_fraction("data.val_fraction", self.val_fraction)
        check_fraction("data.test_fraction", self.test_fraction)


@dataclass(kw_only=True)
class ClassificationSettings(DataSettings):
    """Classification: small labelled sets, short sequences (``<cls>`` plus at least one token)."""

    min_block_size: ClassVar[int] = 2
    block_size: int = 128  # longest sequence in tokens, <cls> included; longer texts are cut
    batch_size: int = 32
    val_fraction: float = 0.1
    test_fraction: float = 0.1


@dataclass(kw_only=True)
class PairSettings(DataSettings):
    """Sequence to sequence: a source, and a target with bos or eos."""

    min_block_size: ClassVar[int] = 2
    block_size: int = 64  # longest source in tokens (longer ones are truncated); targets get block_size - 1
    batch_size: int = 64
