"""The LightningModule: a model, an objective, an optimizer and LR schedule, and metrics, wired together.

The objective returns a *summed* loss and its count of target tokens, so every loss here is normalised by
tokens (a validation loss is the exact token-weighted mean over the split, whatever the batch sizes).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import nn
from torchmetrics import MeanMetric, Metric, MetricCollection

from lightning_llm import registry


def batch_tokens(batch: dict[str, Any]) -> int:
    """Tokens a batch feeds the model: its inputs, plus the decoder's inputs for sequence-to-sequence."""
    return sum(batch[key].numel() for key in ("input_ids", "decoder_input_ids") if key in batch)


class LanguageModule(L.LightningModule):
    def __init__(
        self,
        model: nn.Module,
        objective: Any,
        optim: dict[str, Any],
        scheduler: dict[str, Any],
        metrics: dict[str, Metric] | None = None,
        checkpoint_extras: dict[str, Any] | None = None,
    ) -> None:
        """
        Args:
            model: the network; any model plugin.
            objective: turns (model, batch) into (summed loss, target-token count, outputs).
            optim: ``{"name": optimizer plugin, **its parameters}``.
            scheduler: ``{"name": scheduler plugin, **its parameters}``.
            metrics: name -> metric, cloned for each stage and updated with (outputs, labels).
            checkpoint_extras: plain data stored in every checkpoint (resolved config, tokenizer hash).
        """
        super().__init__()
        self.model = model
        self.objective = objective
        self.optim_spec = dict(optim)
        self.scheduler_spec = dict(scheduler)
        metrics = dict(metrics or {})
        text = {name for name, metric in metrics.items() if getattr(metric, "input_kind", None) == "text"}
        tensor_metrics = MetricCollection({k: v for k, v in metrics.items() if k not in text})
        # Text metrics (BLEU, ROUGE) score generated outputs: only at validation and test, generation is slow.
        text_metrics = MetricCollection({k: v for k, v in metrics.items() if k in text})
        self.train_metrics = tensor_metrics.clone(prefix="train/")
        self.val_metrics = tensor_metrics.clone(prefix="val/")
        self.test_metrics = tensor_metrics.clone(prefix="test/")
        self.val_text_metrics = text_metrics.clone(prefix="val/")
        self.test_text_metrics = text_metrics.clone(prefix="test/")
        self.val_loss = MeanMetric().set_dtype(torch.float64)
        self.test_loss = MeanMetric().set_dtype(torch.float64)
        self.checkpoint_extras = dict(checkpoint_extras or {})
        self.tokens_seen = 0  # input tokens over all processes; restored on resume

    # ------------------------------------------------------------------ steps

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        loss_sum, n_tokens, outputs = self.objective.loss(self.model, batch)
        loss = loss_sum / n_tokens
        self.tokens_seen += batch_tokens(batch) * self.trainer.world_size
        self.log("train/loss", loss, prog_bar=True)
        self.log("train/tokens", float(self.tokens_seen))
        if batch_idx % self.trainer.log_every_n_steps == 0 and len(self.train_metrics):
            # Metrics on a sample of steps: a second pass over (B, T, V) logits every step costs real time.
            self.log_dict(self.train_metrics(outputs.detach(), batch["labels"]))
        return loss

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.val_loss, self.val_metrics, self.val_text_metrics, "val")

    def test_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self._evaluate(batch, self.test_loss, self.test_metrics, self.test_text_metrics, "test")

    def _evaluate(
        self,
        batch: dict,
        mean_loss: MeanMetric,
        metrics: MetricCollection,
        text_metrics: MetricCollection,
        stage: str,
    ) -> None:
        loss_sum, n_tokens, outputs = self.objective.loss(self.model, batch)
        mean_loss.update(loss_sum / n_tokens, weight=n_tokens)  # token-weighted: exact over the split
        self.log(f"{stage}/loss", mean_loss, prog_bar=stage == "val")
        if len(metrics):
            metrics.update(outputs, batch["labels"])
            self.log_dict(metrics)
        if len(text_metrics) and hasattr(self.objective, "predict_text"):
            text_metrics.update(*self.objective.predict_text(self.model, batch))
            self.log_dict(text_metrics)

    # ------------------------------------------------------------------ optimisation

    def configure_optimizers(self) -> dict[str, Any]:
        from lightning_llm.optim import param_groups

        optim = dict(self.optim_spec)
        optimizer = registry.build("optim", optim.pop("name"), params=param_groups(self.model), **optim)
        schedule = dict(self.scheduler_spec)
        scheduler = registry.build(
            "scheduler",
            schedule.pop("name"),
            optimizer=optimizer,
            total_steps=int(
                self.trainer.estimated_stepping_batches
            ),  # optimizer steps, accumulation included
            **schedule,
        )
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    # ------------------------------------------------------------------ checkpoints

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["tokens_seen"] = self.tokens_seen
        checkpoint.update(self.checkpoint_extras)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.tokens_seen = int(checkpoint.get("tokens_seen", 0))
