"""What every data module here shares: DataLoaders over its train/val/test datasets, split across processes.

This is where Lightning is imported. The ``data`` plugins import their module's class when they build it, so
listing plugins or composing a config does not load Lightning (about two seconds of start-up).
"""

from __future__ import annotations

import dataclasses
import signal
from collections.abc import Callable
from typing import Any

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from lightning_llm.data.corpus import SPLITS, check_split
from lightning_llm.data.datasets import DatasetTooSmallError
from lightning_llm.data.sampling import EvalBatchSampler, TrainBatchSampler
from lightning_llm.data.settings import DataSettings

# The splits each Lightning stage needs; setup(None) (outside a Trainer) prepares them all.
STAGE_SPLITS: dict[str | None, tuple[str, ...]] = {
    "fit": ("train", "val"),
    "validate": ("val",),
    "test": ("test",),
    "predict": (),
    None: SPLITS,
}


class ResumableLoader(DataLoader):
    """A DataLoader that Lightning counts as resumable mid-epoch (it has ``state_dict``/``load_state_dict``).

    Lightning warns when a mid-epoch checkpoint is resumed with a loader lacking these methods. The position
    itself is saved once, by ``SplitDataModule.state_dict``, from the trainer's progress counters: the loader
    cannot know it, since Lightning's fetcher always holds one batch more than has been trained on. So the
    loader's own state is empty.
    """

    def state_dict(self) -> dict[str, Any]:
        return {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        pass


class SplitDataModule(L.LightningDataModule):
    """DataLoaders over ``self._datasets`` (split -> Dataset, filled by ``setup``), split across processes.

    The loaders split every batch over the data-parallel processes themselves (see
    ``lightning_llm.data.sampling``), so the trainer must be built with ``use_distributed_sampler=False``
    (else Lightning refuses the batch samplers, which are not ``BatchSampler`` subclasses, naming it).
    Train batches follow a permutation seeded by ``(shuffle_seed, epoch)``; val/test batches are in order.
    ``state_dict`` holds the train position, so a run resumed from a mid-epoch checkpoint trains on exactly
    the batches the uninterrupted run would.
    A split without data (``has_split`` is False: turned off with ``data.val_fraction=0``, say) gets an empty
    list as its DataLoader, which Lightning skips. ``settings`` (``DataSettings``: sizes, split, loaders) are
    read as attributes. Subclasses implement ``has_split`` and may override ``collate_fn`` and
    ``drop_last_train``.
    """

    _datasets: dict[str, Dataset]

    def __init__(self, settings: DataSettings) -> None:
        super().__init__()
        self.settings = settings
        # Read as attributes (self.batch_size, ...): the shared settings, each declared once in DataSettings.
        for field in dataclasses.fields(DataSettings):
            setattr(self, field.name, getattr(settings, field.name))

    drop_last_train = True  # every train step the same size (a summed-loss module may keep the last)
    _train_sampler: TrainBatchSampler | None = None
    _resume_at: tuple[int, int] | None = None  # (epoch, samples) from a checkpoint, until a loader takes it
    # (epoch, samples, Lightning's count of that epoch's batches) where this launch resumed: the batches
    # before it were of the saving run's global batch, which a resume may change (another world size)
    _resumed_from: tuple[int, int, int] | None = None

    def has_split(self, split: str) -> bool:
        """Whether ``split`` ("train", "val" or "test") holds any data; reads the data on first use.

        False for a split turned off on purpose (``data.val_fraction=0``, ``data.test_fraction=0``, or data
        that simply has no such split): its DataLoader is an empty list, and a trainer should skip evaluating
        on it (``trainer.validate`` and ``trainer.test`` return no results for an empty loader). An unknown
        split name raises ValueError.
        """
        raise NotImplementedError(f"{type(self).__name__} must say which splits hold data (has_split)")

    def collate_fn(self):  # noqa: ANN201 - any callable DataLoader accepts, or None for default collation
        return None

    def train_dataloader(self) -> DataLoader | list:
        dataset = self._dataset("train")
        if dataset is None:
            return []
        world_size, rank = self._data_parallel()
        sampler = TrainBatchSampler(
            len(dataset),
            self.batch_size,
            world_size=world_size,
            rank=rank,
            shuffle_seed=self.shuffle_seed,
            drop_last=self.drop_last_train,
        )
        self._train_sampler = sampler
        self._take_resume_point()
        return self._loader(ResumableLoader, dataset, sampler)

    def val_dataloader(self) -> DataLoader | list:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader | list:
        return self._eval_loader("test")

    def state_dict(self) -> dict[str, int]:
        """The train position ``{"epoch": e, "samples": n}``: n items of epoch e trained on, all processes.

        Read from Lightning's progress, not from the loader: its fetcher has already drawn the next batch.
        ``batch_progress.current.processed`` counts the batches of this epoch whose step has run, both when
        ``ModelCheckpoint`` saves in ``on_train_batch_end`` (``completed`` is one behind there; Lightning adds
        it back on resume) and when it saves after a validation. A checkpoint at the end of an epoch points at
        the start of the next one.
        """
        trainer = self.trainer
        if trainer is None:  # outside a Trainer: the position last loaded, or the start
            epoch, samples = self._resume_at or (0, 0)
            return {"epoch": epoch, "samples": samples}
        epoch = trainer.current_epoch
        batches = trainer.fit_loop.epoch_loop.batch_progress.current.processed
        if batches >= trainer.num_training_batches:
            return {"epoch": epoch + 1, "samples": 0}
        global_batch = self.batch_size * self._data_parallel()[0]
        if self._resumed_from is not None and self._resumed_from[0] == epoch:
            _, samples, restored = self._resumed_from
            return {"epoch": epoch, "samples": samples + (batches - restored) * global_batch}
        return {"epoch": epoch, "samples": batches * global_batch}

    def load_state_dict(self, state_dict: dict[str, int]) -> None:
        """Resume at the saved train position. Lightning calls this before it asks for the train loader."""
        if not state_dict:  # a checkpoint from before positions were saved
            return
        self._resume_at = (int(state_dict["epoch"]), int(state_dict["samples"]))
        self._take_resume_point()

    # -- helpers

    def _take_resume_point(self) -> None:
        """Start the train sampler (once there is one) at the loaded position, and note Lightning's restored
        count of that epoch's batches: 0 at an epoch's start, where the count it restored is the previous
        epoch's, reset when the new one begins."""
        if self._train_sampler is None or self._resume_at is None:
            return
        epoch, samples = self._resume_at
        self._train_sampler.start_at(epoch, samples)
        restored = 0
        if self.trainer is not None and samples:
            restored = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        self._resumed_from, self._resume_at = (epoch, samples, restored), None

    def _eval_loader(self, split: str) -> DataLoader | list:
        dataset = self._dataset(split)
        if dataset is None:
            return []
        world_size, rank = self._data_parallel()
        sampler = EvalBatchSampler(len(dataset), self.batch_size, world_size=world_size, rank=rank)
        return self._loader(DataLoader, dataset, sampler)

    def _dataset(self, split: str) -> Dataset | None:
        if split not in self._datasets:
            if not self.has_split(split):
                return None
            raise RuntimeError(f"the {split} split is not set up; call setup() first")
        return self._datasets[split]

    def _loader(self, cls: type[DataLoader], dataset: Dataset, batch_sampler: Sampler) -> DataLoader:
        return cls(
            dataset,
            batch_sampler=batch_sampler,
            collate_fn=self.collate_fn(),
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            worker_init_fn=ignore_ctrl_c,
            # Each new iterator draws a seed for its workers; from its own generator, not the global RNG, so
            # a resumed run's dropout stream is not shifted by the loader it creates after restoring it.
            generator=torch.Generator().manual_seed(self.shuffle_seed),
        )

    def _data_parallel(self) -> tuple[int, int]:
        """(replicas, this replica's rank) the data is split over: Lightning's data-parallel mesh, or (1, 0).

        Under DDP and FSDP these are ``trainer.world_size`` and ``trainer.global_rank``; with tensor
        parallelism only the data-parallel part of the mesh splits the data.
        """
        trainer = self.trainer
        kwargs = trainer.distributed_sampler_kwargs if trainer is not None else None
        if not kwargs or kwargs["num_replicas"] == 1:
            return 1, 0
        return kwargs["num_replicas"], kwargs["rank"]


class ReadSplitsDataModule(SplitDataModule):
    """A SplitDataModule whose examples come from ``read_splits()`` (split -> list), called once on first
    use: nothing is read while the module is built and the tokenizer is still untrained. A split with no
    examples is off (its DataLoader is an empty list). Subclasses fill ``self._datasets`` in ``setup``."""

    def __init__(self, settings: DataSettings, read_splits: Callable[[], dict[str, list]]) -> None:
        super().__init__(settings)
        self._read_splits = read_splits
        self._splits: dict[str, list] | None = None

    def examples(self, split: str) -> list:
        """The examples of ``split`` ("train", "val" or "test")."""
        check_split(split)
        if self._splits is None:
            self._splits = self._read_splits()
        return self._splits[split]

    def has_split(self, split: str) -> bool:
        return bool(self.examples(split))

    def check_train_size(self, items: str, remedy: str) -> None:
        """Refuse a train dataset of fewer ``items`` than one batch (with drop_last an epoch would be empty;
        without, the run would train on less than it asked for)."""
        train = self._datasets.get("train")
        if train is not None and len(train) < self.batch_size:
            raise DatasetTooSmallError(
                f"the train split has {len(train)} {items}, fewer than data.batch_size={self.batch_size}; "
                f"lower data.batch_size or {remedy}"
            )


def ignore_ctrl_c(worker_id: int) -> None:
    """In a DataLoader worker: leave Ctrl-C to the training process. A terminal sends SIGINT to every process
    of the run; a worker that died of it would crash the run instead of letting it stop with a checkpoint."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
