"""Batch samplers that split every batch across processes themselves, in an order a checkpoint can resume.

The order of an epoch is a pure function of ``(shuffle_seed, epoch)`` and the split size, never of the number
of processes. It is cut into *global* batches of ``batch_size * world_size`` consecutive indices, and rank
``r`` takes the ``r``-th slice of each. So at step ``j`` the ``W`` processes of a run with ``batch_size=b``
together see exactly the batch one process sees at step ``j`` with ``batch_size=b*W``: a distributed run can
be compared number for number with a single-process one, and a position counted in samples means the same
thing under any number of processes.

Every rank yields the same number of batches (FSDP all-gathers in every forward, so a rank with one batch
more would wait forever). A final global batch shorter than the others is spread as evenly as possible over
the ranks; one with fewer items than ranks is folded into the batch before it.

Lightning is run with ``use_distributed_sampler=False`` so that it leaves these samplers alone.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import Sampler

# A prime above any epoch count, so epochs of one shuffle seed never share a generator seed. torch's CPU
# generator keeps only the low 32 bits of a seed: (shuffle_seed, epoch) pairs are all distinct for shuffle
# seeds below 4294 (and ``epoch << 32`` would repeat one order every epoch).
_EPOCH_STRIDE = 1_000_003


def epoch_seed(shuffle_seed: int, epoch: int) -> int:
    """The generator seed of one epoch's order: ``shuffle_seed * 1_000_003 + epoch``."""
    return shuffle_seed * _EPOCH_STRIDE + epoch


def epoch_order(n: int, shuffle_seed: int, epoch: int) -> np.ndarray:
    """The permutation of ``range(n)`` that epoch ``epoch`` trains in (the same on every process), as an
    int64 array: 8 bytes an item, where a Python list would take about 40 (a large corpus has millions)."""
    generator = torch.Generator().manual_seed(epoch_seed(shuffle_seed, epoch))
    return torch.randperm(n, generator=generator).numpy()


def global_batches(n: int, global_size: int, world_size: int, drop_last: bool) -> list[tuple[int, int]]:
    """``(start, end)`` of each global batch over positions ``0..n``.

    With ``drop_last`` the final short batch is dropped. Otherwise it is kept if every rank can get at least
    one item of it, else it is folded into the batch before (so no rank runs out a step early).
    """
    full = n // global_size
    bounds = [(i * global_size, (i + 1) * global_size) for i in range(full)]
    rest = n - full * global_size
    if rest and not drop_last:
        if rest >= world_size:
            bounds.append((full * global_size, n))
        elif bounds:
            bounds[-1] = (bounds[-1][0], n)
        else:
            raise ValueError(
                f"the split has {n} items, fewer than the {world_size} processes to split it over"
            )
    return bounds


def rank_slice(start: int, end: int, world_size: int, rank: int) -> tuple[int, int]:
    """The part of global batch ``[start, end)`` that ``rank`` gets: contiguous, sizes differing by <= 1.

    A full global batch of ``batch_size * world_size`` gives every rank exactly ``batch_size`` items.
    """
    size, extra = divmod(end - start, world_size)
    lo = start + rank * size + min(rank, extra)
    return lo, lo + size + (rank < extra)


class _RankBatches(Sampler[list[int]]):
    """Shared by both samplers: cut an order into global batches and yield this rank's slice of each."""

    def __init__(self, n: int, batch_size: int, world_size: int, rank: int, drop_last: bool) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size}")
        if not 0 <= rank < world_size:
            raise ValueError(f"rank {rank} is not in [0, world_size={world_size})")
        self.n = n
        self.batch_size = batch_size
        self.world_size = world_size
        self.rank = rank
        self.drop_last = drop_last
        self._bounds = global_batches(n, self.global_batch_size, world_size, drop_last)

    @property
    def global_batch_size(self) -> int:
        """Items one step takes over all processes (the last step of an epoch may take fewer or more)."""
        return self.batch_size * self.world_size

    def __len__(self) -> int:
        return len(self._bounds)

    def _batches(self, order: np.ndarray | range, skip: int = 0) -> Iterator[list[int]]:
        for start, end in self._bounds[skip:]:
            lo, hi = rank_slice(start, end, self.world_size, self.rank)
            yield list(order[lo:hi]) if isinstance(order, range) else order[lo:hi].tolist()


class TrainBatchSampler(_RankBatches):
    """This rank's train batches: a fresh seeded permutation every epoch, resumable mid-epoch.

    ``len()`` is always the batches of a whole epoch, also when resuming: Lightning counts the batches
    already trained on in its own progress and stops the epoch at ``len()``.
    """

    def __init__(
        self,
        n: int,
        batch_size: int,
        *,
        world_size: int = 1,
        rank: int = 0,
        shuffle_seed: int = 0,
        drop_last: bool = True,
    ) -> None:
        """
        Args:
            n: items in the dataset.
            batch_size: items per batch on each process.
            world_size: processes the data is split over (the data-parallel size).
            rank: this process's place among them.
            shuffle_seed: seed of the epoch orders (see ``epoch_seed``).
            drop_last: drop the final short global batch, so every step has the same size.
        """
        super().__init__(n, batch_size, world_size, rank, drop_last)
        if not self._bounds:
            raise ValueError(
                f"the train split has {n} items, fewer than one global batch of batch_size={batch_size} x "
                f"{world_size} processes; an epoch would have no step"
            )
        self.shuffle_seed = shuffle_seed
        self.epoch = 0
        self._resume: tuple[int, int] | None = None  # (epoch, global batches to skip) for its next pass

    def set_epoch(self, epoch: int) -> None:
        """Choose the epoch whose order the next pass yields (Lightning calls it before every epoch)."""
        self.epoch = epoch

    def start_at(self, epoch: int, samples_consumed: int) -> None:
        """Resume: the next pass over ``epoch`` skips the first ``samples_consumed`` items of its order.

        The epoch is also made current, since Lightning already draws the first batch of the resumed epoch
        before it calls ``set_epoch``. Later epochs are whole again. ``samples_consumed`` counts items over
        all processes, so it must end on a global-batch boundary; a checkpoint taken with ``W`` processes
        resumes exactly with ``W'`` processes as long as the global batch is the same.
        """
        if samples_consumed < 0 or samples_consumed % self.global_batch_size:
            raise ValueError(
                f"cannot resume after {samples_consumed} samples: not a multiple of the global batch of "
                f"{self.global_batch_size} (batch_size={self.batch_size} x {self.world_size} processes)"
            )
        skip = samples_consumed // self.global_batch_size
        if skip > len(self):
            raise ValueError(
                f"cannot resume after {samples_consumed} samples: epoch {epoch} has only "
                f"{len(self)} global batches of {self.global_batch_size}"
            )
        self.epoch = epoch
        self._resume = (epoch, skip)

    def __iter__(self) -> Iterator[list[int]]:
        skip = 0
        if self._resume is not None and self._resume[0] == self.epoch:
            skip, self._resume = self._resume[1], None
        yield from self._batches(epoch_order(self.n, self.shuffle_seed, self.epoch), skip)

    @property
    def sampler(self) -> TrainBatchSampler:
        # Lightning's `_set_sampler_epoch` calls `set_epoch` on `loader.sampler` and on
        # `loader.batch_sampler.sampler`, never on the batch sampler itself: point it here.
        return self


class EvalBatchSampler(_RankBatches):
    """This rank's evaluation batches: every item once, in order, the same number of batches on each rank.

    One process gets plain in-order batches of ``batch_size`` (the last one shorter).
    """

    def __init__(self, n: int, batch_size: int, *, world_size: int = 1, rank: int = 0) -> None:
        """
        Args:
            n: items in the dataset.
            batch_size: items per batch on each process.
            world_size: processes the data is split over.
            rank: this process's place among them.
        """
        super().__init__(n, batch_size, world_size, rank, drop_last=False)

    def __iter__(self) -> Iterator[list[int]]:
        return self._batches(range(self.n))
