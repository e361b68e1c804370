"""Sequence classification: one label per sequence, predicted from the encoder's pooled ``<cls>`` state
(BERT's fine-tuning recipe, Devlin et al. 2018, section 4)."""

import torch
import torch.nn.functional as F
from torch import nn

from lightning_llm.registry import register
from lightning_llm.tokenizers.base import Tokenizer

__all__ = ["Classification"]


@register("objective", "classification")
class Classification:
    """Cross-entropy of the class logits, for encoders with a classifier head (encoder with num_classes).

    The batch holds ``input_ids`` (B, T) starting with ``<cls>``, ``attention_mask`` (B, T) True at real
    tokens and ``labels`` (B,) class indices, as the classification data plugins serve them.
    """

    default_data = "pydoc_topics"
    default_metrics = ("accuracy", "f1", "precision", "recall")
    # Why `export` refuses a run trained with it (a 2-class classifier would pass for a pretraining run).
    export_refusal = (
        "its classifier holds this run's own labels, which no exported architecture keeps faithfully: "
        "BertForSequenceClassification has no masked-LM head for the rest of this model, and "
        "BertForPreTraining's 2-way head is next-sentence prediction; export the masked-LM run it was "
        "fine-tuned from instead"
    )

    def __init__(self, tokenizer: Tokenizer):
        self.tokenizer = tokenizer  # unused by the loss; part of every objective's contract

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (summed loss over the sequences, number of sequences, class logits (B, K))."""
        logits = model.classify(model.encode(batch["input_ids"], batch.get("attention_mask")))  # (B, K)
        labels = batch["labels"]
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            tensor = isinstance(logits, torch.Tensor)
            got = f"tensor of shape {tuple(logits.shape)}" if tensor else type(logits).__name__
            raise ValueError(
                f"classification needs model.classify(model.encode(...)) to return class logits of shape "
                f"(batch, classes); the model returned a {got}"
            )
        if labels.shape != logits.shape[:1]:
            raise ValueError(
                f"classification needs labels of shape (batch,) = {tuple(logits.shape[:1])}, got "
                f"{tuple(labels.shape)}; is the data plugin a classification one (e.g. data=pydoc_topics)?"
            )
        loss = F.cross_entropy(logits.float(), labels, reduction="sum")  # float32 for an exact sum
        return loss, torch.tensor(labels.numel(), device=labels.device), logits
