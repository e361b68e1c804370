"""Causal language modelling: predict each next token from the ones before it (GPT's pretraining loss)."""

import torch
import torch.nn.functional as F
from torch import nn

from lightning_llm.models.chunked_head import TokenScores, chunk_tokens
from lightning_llm.registry import register

__all__ = ["IGNORE_INDEX", "CausalLM", "check_logits", "summed_cross_entropy"]

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


def check_logits(logits: object, labels: torch.Tensor, objective: str, call: str) -> None:
    """Refuse, naming what came instead, a model output that is not a logits tensor with one row of scores
    per label (``labels.shape + (V,)``): a model plugin returning a tuple or another shape, which torch
    reports in terms of its own internals (or, for a (B, V) output, not at all when B happens to be T)."""
    expected = f"{objective} needs {call} to return logits of shape {(*labels.shape, 'V')}"
    if not isinstance(logits, torch.Tensor):
        raise ValueError(f"{expected}; the model returned a {type(logits).__name__}")
    if logits.shape[:-1] != labels.shape or logits.ndim != labels.ndim + 1:
        raise ValueError(f"{expected}; the model returned shape {tuple(logits.shape)}")


@register("objective", "causal_lm")
class CausalLM:
    """Next-token prediction with cross-entropy, for decoder-only models such as gpt.

    The batch holds ``input_ids`` (B, T) and ``labels`` (B, T), already shifted by the data module:
    ``labels[b, t]`` is the token that follows ``input_ids[b, :t+1]``, or -100 where there is none.
    """

    default_data = "pydoc"  # packed windows of the embedded corpus
    sample_mode = "generate"  # a run's samples.txt: continuations of a prompt
    default_metrics = ("perplexity", "accuracy")

    def __init__(self, tokenizer: object = None, logits_chunk: int | None = None) -> None:
        """
        Args:
            logits_chunk: tokens whose logits exist at once when the model computes the loss from its last
                hidden states in chunks (``models/chunked_head.py``; gpt does): null picks ~256 MB of
                float32 logits per chunk when a batch's logits are larger than that, and the plain full
                logits otherwise; 0 always computes the full logits.
        """
        if logits_chunk is not None and logits_chunk < 0:
            raise ValueError(f"objective.logits_chunk must be >= 0 or null (auto), got {logits_chunk}")
        self.tokenizer = tokenizer  # supplied by the framework; next-token prediction needs no special ids
        self.logits_chunk = logits_chunk

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | TokenScores]:
        """Returns (summed loss, number of target tokens, logits (B, T, V) or, computed in chunks, the
        tokens' TokenScores)."""
        input_ids, labels = batch["input_ids"], batch["labels"]
        if labels.shape != input_ids.shape:  # one label a text (classification data), not one a token
            raise ValueError(
                f"causal_lm needs a label for each input token, shape {tuple(input_ids.shape)}, got "
                f"{tuple(labels.shape)}; is the data plugin one of text (e.g. data={self.default_data})?"
            )
        if chunk := self._chunk(model, labels):
            return model(input_ids, labels=labels, loss_chunk=chunk)
        logits = model(input_ids)
        check_logits(logits, labels, "causal_lm", "model(input_ids)")
        loss, n_target_tokens = summed_cross_entropy(logits, labels)
        return loss, n_target_tokens, logits

    def _chunk(self, model: nn.Module, labels: torch.Tensor) -> int:
        """Tokens per chunk for this batch; 0 for the full logits (also for models that cannot chunk)."""
        if not getattr(model, "chunks_its_loss", False):  # forward(input_ids, labels=, loss_chunk=)
            return 0
        return chunk_tokens(labels.numel(), model.config.vocab_size, self.logits_chunk)
