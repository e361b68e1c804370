"""What every data module here shares: DataLoaders over its train/val/test datasets, and path lists."""

from __future__ import annotations

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset


class SplitDataModule(L.LightningDataModule):
    """DataLoaders over ``self._datasets`` (split -> Dataset, filled by ``setup``).

    Train batches are shuffled by a generator seeded from ``shuffle_seed``, so the order is reproducible
    (under DDP Lightning swaps in a DistributedSampler, which shuffles with the run's seed). A split switched
    off (``split_is_empty``) gets an empty list, which Lightning skips. Subclasses set ``batch_size``,
    ``num_workers``, ``shuffle_seed`` and may override ``collate_fn`` and ``drop_last_train``.
    """

    batch_size: int
    num_workers: int
    shuffle_seed: int
    _datasets: dict[str, Dataset]
    drop_last_train = True  # every train step the same size (a summed-loss module may keep the last)

    def split_is_empty(self, split: str) -> bool:
        raise NotImplementedError

    def collate_fn(self):  # noqa: ANN201 - any callable DataLoader accepts, or None for default collation
        return None

    def train_dataloader(self) -> DataLoader:
        generator = torch.Generator().manual_seed(self.shuffle_seed)
        return self._loader("train", shuffle=True, drop_last=self.drop_last_train, generator=generator)

    def val_dataloader(self) -> DataLoader | list:
        return self._loader("val", shuffle=False, drop_last=False)

    def test_dataloader(self) -> DataLoader | list:
        return self._loader("test", shuffle=False, drop_last=False)

    def _loader(self, split: str, **options) -> DataLoader | list:
        if split not in self._datasets:
            if self.split_is_empty(split):
                return []
            raise RuntimeError(f"the {split} split is not set up; call setup() first")
        return DataLoader(
            self._datasets[split],
            batch_size=self.batch_size,
            collate_fn=self.collate_fn(),
            num_workers=self.num_workers,
            pin_memory=torch.cuda.is_available(),
            persistent_workers=self.num_workers > 0,
            **options,
        )


def as_paths(key: str, paths: list[str] | str) -> list[str]:
    """``paths`` as a plain list (Hydra passes a ListConfig; a lone string is one path)."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        raise ValueError(f"data.{key} must name at least one file or glob, e.g. data.{key}=[train.jsonl]")
    return paths
