"""Causal language modelling: predict each next token from the ones before it (GPT's pretraining loss)."""

import torch
import torch.nn.functional as F
from torch import nn

from lightning_llm.registry import register

__all__ = ["IGNORE_INDEX", "CausalLM", "summed_cross_entropy"]

IGNORE_INDEX = -100  # label value that contributes no loss (padding, prompts); PyTorch's default too


def summed_cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed token cross-entropy in float32 and the number of tokens it covers.

    logits: (..., V); labels: (...) with IGNORE_INDEX where there is no target. Summing (rather than
    averaging per batch) lets the caller divide by the tokens of a whole accumulation window or of all
    processes, so every token weighs the same however the batch was split.
    """
    loss = F.cross_entropy(
        logits.float().flatten(0, -2),  # (N, V); float32 so log-softmax over a large vocab stays exact
        labels.flatten(),  # (N,)
        ignore_index=IGNORE_INDEX,
        reduction="sum",
    )
    n_target_tokens = (labels != IGNORE_INDEX).sum()  # a tensor: reading it would sync host and device
    return loss, n_target_tokens


@register("objective", "causal_lm")
class CausalLM:
    """Next-token prediction with cross-entropy, for decoder-only models such as gpt.

    The batch holds ``input_ids`` (B, T) and ``labels`` (B, T), already shifted by the data module:
    ``labels[b, t]`` is the token that follows ``input_ids[b, :t+1]``, or -100 where there is none.
    """

    default_data = "pydoc"  # packed windows of the embedded corpus
    sample_mode = "generate"  # a run's samples.txt: continuations of a prompt
    default_metrics = ("perplexity", "accuracy")

    def __init__(self, tokenizer: object = None) -> None:
        self.tokenizer = tokenizer  # supplied by the framework; next-token prediction needs no special ids

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns (summed loss, number of target tokens, logits (B, T, V))."""
        logits = model(batch["input_ids"])
        loss, n_target_tokens = summed_cross_entropy(logits, batch["labels"])
        return loss, n_target_tokens, logits
