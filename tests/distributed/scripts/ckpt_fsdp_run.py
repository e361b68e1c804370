"""A tiny FSDP2 run on CPU that writes sharded checkpoints through ``ShardedStrategy``.

``python ckpt_fsdp_run.py OUTDIR [--devices N] [--max-steps N] [--resume CKPT] [--tag NAME]``

Lightning re-launches this script for ranks 1..N-1. Writes ``OUTDIR/checkpoints/`` (``last.ckpt`` and the
newest ``epoch=..-step=..ckpt``, every 2 steps), and from rank 0 the full (gathered) weights as
``OUTDIR/<tag>-start.pt`` (at the start of training, i.e. after a resume has loaded its checkpoint) and
``OUTDIR/<tag>-end.pt`` (after training), plus ``OUTDIR/<tag>.json`` with the final global step.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import lightning as L
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from torch import nn
from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict
from torch.distributed.fsdp import fully_shard
from torch.utils.data import DataLoader, TensorDataset

from lightning_llm.distributed.checkpointing import ShardedStrategy

CONFIG = {"model": {"name": "tiny-test", "hidden": 16}}  # stands in for the run config LanguageModule stores


class TinyModule(L.LightningModule):
    def __init__(self) -> None:
        super().__init__()
        # 5 outputs: a size that 2 ranks cannot split evenly, so uneven shards are saved and resharded.
        self.model = nn.Sequential(
            nn.Linear(8, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 5)
        )

    def configure_model(self) -> None:
        mesh = self.device_mesh["data_parallel"]
        for layer in self.model:
            if isinstance(layer, nn.Linear):
                fully_shard(layer, mesh=mesh)
        fully_shard(self.model, mesh=mesh)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, targets = batch
        return nn.functional.mse_loss(self.model(inputs), targets)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=1e-2)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        checkpoint.update(config=CONFIG, tokenizer_fingerprint="f" * 64)


class SaveFullState(L.Callback):
    """Gathers the full weights (a collective) and saves them from rank 0 at the start and end of fit."""

    def __init__(self, outdir: Path, tag: str) -> None:
        self.outdir, self.tag = outdir, tag

    def on_train_start(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._save(trainer, module, "start")

    def on_train_end(self, trainer: L.Trainer, module: L.LightningModule) -> None:
        self._save(trainer, module, "end")
        if trainer.is_global_zero:
            (self.outdir / f"{self.tag}.json").write_text(json.dumps({"global_step": trainer.global_step}))

    def _save(self, trainer: L.Trainer, module: L.LightningModule, when: str) -> None:
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        state = get_model_state_dict(module, options=options)
        if trainer.is_global_zero:
            torch.save(state, self.outdir / f"{self.tag}-{when}.pt")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("outdir", type=Path)
    parser.add_argument("--devices", type=int, default=2)
    parser.add_argument("--max-steps", type=int, default=4)
    parser.add_argument("--resume", default=None)
    parser.add_argument("--tag", default="run")
    args = parser.parse_args()
    args.outdir.mkdir(parents=True, exist_ok=True)
    L.seed_everything(0)
    data = TensorDataset(torch.randn(64, 8), torch.randn(64, 5))
    trainer = L.Trainer(
        accelerator="cpu",
        devices=args.devices,
        strategy=ShardedStrategy(
            data_parallel_size=args.devices, tensor_parallel_size=1, save_distributed_checkpoint=True
        ),
        max_steps=args.max_steps,
        callbacks=[
            ModelCheckpoint(dirpath=args.outdir / "checkpoints", save_last=True, every_n_train_steps=2),
            SaveFullState(args.outdir, args.tag),
        ],
        logger=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        default_root_dir=args.outdir,
    )
    trainer.fit(TinyModule(), DataLoader(data, batch_size=4), ckpt_path=args.resume, weights_only=True)


if __name__ == "__main__":
    main()
