"""Training examples cut from a flat array of token ids."""

from __future__ import annotations

import os
from collections.abc import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

__all__ = ["DatasetTooSmallError", "PackedWindows"]


class DatasetTooSmallError(ValueError):
    """A split holds fewer tokens than one training window needs."""


class PackedWindows(Dataset):
    """Non-overlapping causal-LM windows: item ``i`` is ``tokens[i*B : i*B + B + 1]``, ``B = block_size``.

    Inputs are the first ``B`` tokens of the window and labels the last ``B`` (the inputs shifted by one), so
    consecutive windows share one boundary token and every token after the first is a target exactly once per
    epoch. Texts lie back to back with eos between them and a window may span several: the usual GPT
    pre-training packing, which wastes nothing on padding.

    With ``vocab_size``, each window is checked as it is read (``block_size + 1`` ids, next to nothing): an id
    outside the vocabulary (a token file rewritten in place) is an error naming ``source`` (the token cache)
    and the window, not a device assert inside the embedding.
    """

    def __init__(
        self,
        tokens: np.ndarray,
        block_size: int,
        split: str = "train",
        vocab_size: int | None = None,
        source: str = "the token cache",
    ) -> None:
        if block_size <= 0:
            raise ValueError(f"block_size must be > 0, got {block_size}")
        if len(tokens) < block_size + 1:
            # val and test may also be turned off; train may not
            remedy = "" if split == "train" else f", or set data.{split}_fraction=0"
            raise DatasetTooSmallError(
                f"the {split} split has {len(tokens)} tokens, fewer than one window of block_size + 1 = "
                f"{block_size + 1}; lower data.block_size or give the split more text{remedy}"
            )
        self.tokens = tokens
        self.block_size = block_size
        self.split = split
        self.vocab_size = vocab_size
        self.source = source

    def __len__(self) -> int:
        return (len(self.tokens) - 1) // self.block_size

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[dict[str, torch.Tensor]]:
        """The items ``indices`` name, read together: the DataLoader calls this once per batch instead of
        ``__getitem__`` once per index, so a batch costs one gather, one dtype conversion and one vocabulary
        check rather than one of each per window (a batch of 12 windows of 65 tokens: ~115 -> ~75 us through
        the DataLoader). The items are views into one ``(len(indices), block_size + 1)`` tensor, equal to what
        ``__getitem__`` gives; the DataLoader's collate stacks them as before."""
        n = len(self)
        index = [i + n if i < 0 else i for i in indices]
        if index and not (min(index) >= 0 and max(index) < n):
            bad = next(i for i, j in zip(indices, index, strict=True) if not 0 <= j < n)
            raise IndexError(f"window {bad} out of range for {n} windows")
        windows = torch.from_numpy(self._read([i * self.block_size for i in index], self.block_size + 1))
        if self.vocab_size is not None and len(index) and int(windows.max()) >= self.vocab_size:
            row = int((windows.amax(dim=1) >= self.vocab_size).int().argmax())
            raise ValueError(
                f"{self.source} holds id {int(windows[row].max())}, outside this tokenizer's vocab_size="
                f"{self.vocab_size} (damaged: the {self.split} split's window {index[row]}); delete it "
                "and run again to rebuild it"
            )
        inputs, labels = windows[:, :-1].unbind(), windows[:, 1:].unbind()  # two ops, not two per window
        return [{"input_ids": x, "labels": y} for x, y in zip(inputs, labels, strict=True)]

    def _read(self, starts: list[int], width: int) -> np.ndarray:
        """``tokens[s : s + width]`` for every ``s`` in ``starts``, as the rows of one int64 array."""
        if isinstance(self.tokens, np.ndarray):  # an array or a memmap: one fancy-indexed gather
            offsets = np.add.outer(np.asarray(starts, dtype=np.int64), np.arange(width))
            return self.tokens[offsets].astype(np.int64)
        if callable(windows := getattr(self.tokens, "windows", None)):  # TokenShards: files read by unit
            return windows(starts, width)
        # Other token stores (anything sliced) are read window by window, each converted as it is copied in.
        rows = np.empty((len(starts), width), dtype=np.int64)
        for row, start in enumerate(starts):
            rows[row] = self.tokens[start : start + width]
        return rows

    def __getstate__(self) -> dict:
        # DataLoader workers started by spawn/forkserver receive the dataset pickled, and a pickled memmap
        # carries a copy of the whole file; send the file's name instead and map it again in the worker.
        state = self.__dict__.copy()
        if _maps_whole_file(self.tokens):
            state["tokens"] = (self.tokens.filename, self.tokens.dtype.str, len(self.tokens))
        return state

    def __setstate__(self, state: dict) -> None:
        if isinstance(state["tokens"], tuple):
            filename, dtype, length = state["tokens"]
            state["tokens"] = np.memmap(filename, dtype=np.dtype(dtype), mode="r", shape=(length,))
        self.__dict__.update(state)


def _maps_whole_file(tokens: np.ndarray) -> bool:
    """True for a memmap of a whole file (a slice would also need its offset, so it is pickled as data)."""
    filename = getattr(tokens, "filename", None)
    return (
        isinstance(tokens, np.memmap)
        and filename is not None
        and tokens.offset == 0
        and tokens.nbytes == os.path.getsize(filename)
    )
