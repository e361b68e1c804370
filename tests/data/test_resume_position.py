"""A run resumed from a mid-epoch checkpoint trains on exactly the batches the uninterrupted run trained on.

Real single-process Lightning runs over a dataset of indices: 20 items, batch 2, so 10 steps an epoch and
16 steps cross into the second epoch. Checkpoints fall at steps 5, 10 (the epoch's last batch) and 15.
"""

import warnings
from pathlib import Path

import lightning as L
import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.utils.data import TensorDataset

from lightning_llm.data.loading import SplitDataModule
from lightning_llm.data.settings import DataSettings

MAX_STEPS, EVERY = 16, 5


class IndexData(SplitDataModule):
    """Train items are their own indices, so a batch says which items it holds."""

    def __init__(self, n_train: int = 20, batch_size: int = 2, shuffle_seed: int = 4) -> None:
        super().__init__(DataSettings(batch_size=batch_size, shuffle_seed=shuffle_seed))
        self._datasets = {
            "train": TensorDataset(torch.arange(n_train)),
            "val": TensorDataset(torch.arange(6)),
        }

    def has_split(self, split: str) -> bool:
        return split != "test"


class Recorder(L.LightningModule):
    """Records (epoch, indices) of every train batch it steps on."""

    def __init__(self) -> None:
        super().__init__()
        self.layer = nn.Linear(1, 1)
        self.seen: list[tuple[int, list[int]]] = []

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        (indices,) = batch
        self.seen.append((self.current_epoch, indices.tolist()))
        return self.layer(indices.float()[:, None]).pow(2).mean()

    def validation_step(self, batch: list[torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", self.layer(batch[0].float()[:, None]).pow(2).mean())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=1e-4)


def fit(
    ckpt_dir: Path, after_validation: bool, ckpt_path: Path | None = None, batch_size: int = 2
) -> Recorder:
    if after_validation:  # validate every EVERY batches; ModelCheckpoint saves at validation end
        checkpoint = ModelCheckpoint(dirpath=ckpt_dir, filename="{step}", save_top_k=-1)
        schedule = {"val_check_interval": EVERY, "num_sanity_val_steps": 0}
    else:  # ModelCheckpoint saves in on_train_batch_end
        checkpoint = ModelCheckpoint(
            dirpath=ckpt_dir, filename="{step}", save_top_k=-1, every_n_train_steps=EVERY
        )
        schedule = {"limit_val_batches": 0}
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=MAX_STEPS,
        callbacks=[checkpoint],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        use_distributed_sampler=False,
        **schedule,
    )
    module = Recorder()
    trainer.fit(module, datamodule=IndexData(batch_size=batch_size), ckpt_path=ckpt_path)
    return module


@pytest.fixture(scope="module", params=[False, True], ids=["on_train_batch_end", "after_validation"])
def uninterrupted(request, tmp_path_factory) -> tuple[bool, Path, list]:
    ckpt_dir = tmp_path_factory.mktemp("ckpts")
    return request.param, ckpt_dir, fit(ckpt_dir, request.param).seen


def test_uninterrupted_run_crosses_an_epoch_with_fresh_order(uninterrupted):
    _, ckpt_dir, seen = uninterrupted
    assert len(seen) == MAX_STEPS and [epoch for epoch, _ in seen] == [0] * 10 + [1] * 6
    first_epoch = sorted(i for _, batch in seen[:10] for i in batch)
    assert first_epoch == list(range(20))  # a permutation: every item once
    assert [batch for _, batch in seen[10:]] != [batch for _, batch in seen[:6]]
    assert sorted(p.name for p in ckpt_dir.iterdir()) == ["step=10.ckpt", "step=15.ckpt", "step=5.ckpt"]


@pytest.mark.parametrize(("step", "position"), [(5, (0, 10)), (10, (1, 0)), (15, (1, 10))])
def test_resumed_run_sees_the_batches_after_the_checkpoint(uninterrupted, tmp_path, step, position):
    after_validation, ckpt_dir, seen = uninterrupted
    ckpt = ckpt_dir / f"step={step}.ckpt"
    saved = torch.load(ckpt, weights_only=True)["IndexData"]
    assert (saved["epoch"], saved["samples"]) == position  # samples = batches done x batch 2 x 1 process
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        resumed = fit(tmp_path, after_validation, ckpt_path=ckpt).seen
    assert resumed == seen[step:]
    assert not [w for w in caught if "not resumable" in str(w.message)]
    for again in tmp_path.glob("*.ckpt"):  # the resumed run's own checkpoints hold the same positions
        assert (
            torch.load(again, weights_only=True)["IndexData"]
            == torch.load(ckpt_dir / again.name, weights_only=True)["IndexData"]
        )


def test_a_resume_with_another_batch_size_counts_its_own_batches_after_the_restored_ones(
    uninterrupted, tmp_path
):
    """Lightning restores its count of the epoch's batches; those were of the saving run's global batch (a
    resume may change it, with the world size), so only the batches after them count at the new size."""
    after_validation, ckpt_dir, seen = uninterrupted
    resumed = fit(tmp_path, after_validation, ckpt_path=ckpt_dir / "step=5.ckpt", batch_size=1).seen
    order = [i for _, batch in seen[:10] for i in batch]  # epoch 0's order: 10 items trained before step 5
    assert [batch for _, batch in resumed[:5]] == [[i] for i in order[10:15]]
    assert torch.load(tmp_path / "step=10.ckpt", weights_only=True)["IndexData"] == {
        "epoch": 0,
        "samples": 15,
    }
