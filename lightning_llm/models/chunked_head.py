"""The output layer and its cross-entropy in chunks of tokens, so the (tokens x vocabulary) logits never
exist at once (the idea of Liger-Kernel's fused linear cross-entropy and of Cut Cross-Entropy, here in
plain PyTorch).

For GPT-2's vocabulary a batch of 16 x 1024 tokens has 823M logits: 3.3 GB in float32, then as much again
for their softmax and again for its gradient. Chunked, one chunk's logits exist at a time: the forward pass
computes each chunk's logits, its summed loss and, when a gradient will be wanted, the chunk's gradients
for the hidden states and the head weight right away (the loss is a sum, so d loss / d logits is
``softmax - one_hot`` whatever comes after; backward only scales them by the incoming gradient). The same
chunks give each token's negative log-likelihood and top-1 prediction (``TokenScores``), which is all the
perplexity and accuracy metrics need. The loss equals ``F.cross_entropy(hidden @ weight.T + bias, labels,
reduction="sum")`` in float32 and so do the gradients, up to summation order (tested to 1e-5).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F

__all__ = ["AUTO_CHUNK_LOGITS", "IGNORE_INDEX", "TokenScores", "chunk_tokens", "linear_cross_entropy"]

IGNORE_INDEX = -100  # objectives.causal_lm's: label of a position with nothing to predict
# Logits per chunk when objective.logits_chunk is null (auto): 2**26 float32 values are 256 MB. Measured on
# 2 CPU cores at a 50k vocabulary (bench/chunked_loss.py): chunks of 1,024 tokens (2**25.6 logits) cost 2%
# of the step time against whole logits, chunks of 333 (2**24) 7%, the matmuls getting too thin; peak memory
# falls from 3.8 GB to 1.6 and 1.0 GB. A batch whose logits fit in one chunk is computed the plain way.
AUTO_CHUNK_LOGITS = 2**26


class TokenScores(NamedTuple):
    """What the chunks tell about each token: its negative log-likelihood (float32, 0 where the label is
    ignored) and the top-1 predicted id, both shaped like the labels."""

    nll: torch.Tensor
    predicted: torch.Tensor

    def detach(self) -> TokenScores:
        return TokenScores(self.nll.detach(), self.predicted)


def chunk_tokens(n_tokens: int, vocab_size: int, setting: int | None) -> int:
    """Tokens per chunk for ``objective.logits_chunk``: the setting itself when positive; 0 (no chunking:
    the full logits) when it is 0, or when null and the batch's logits fit in ``AUTO_CHUNK_LOGITS`` or the
    loss is being compiled; otherwise as many tokens as ``AUTO_CHUNK_LOGITS`` logits hold."""
    if setting is not None:
        return setting
    if n_tokens * vocab_size <= AUTO_CHUNK_LOGITS or torch.compiler.is_compiling():
        return 0  # compiled (parallel.compile), the head's cross-entropy fuses into the model's graph itself
    return max(1, AUTO_CHUNK_LOGITS // vocab_size)


def linear_cross_entropy(
    hidden: torch.Tensor,
    weight: torch.Tensor,
    labels: torch.Tensor,
    chunk: int,
    bias: torch.Tensor | None = None,
    label_smoothing: float = 0.0,
) -> tuple[torch.Tensor, torch.Tensor, TokenScores]:
    """Summed cross-entropy of ``hidden @ weight.T (+ bias)`` against ``labels``, ``chunk`` tokens at a time.

    hidden (..., C); weight (V, C); bias (V,) or None; labels (...) with IGNORE_INDEX where nothing is
    predicted; ``label_smoothing`` as ``F.cross_entropy``'s (the scores' nll stays the plain one).
    Returns (summed loss, number of labelled tokens, TokenScores shaped like labels).
    """
    if chunk < 1:
        raise ValueError(f"chunk must be >= 1 token, got {chunk}")
    flat_hidden, flat_labels = hidden.reshape(-1, hidden.size(-1)), labels.reshape(-1)
    loss, nll, predicted = _LinearCrossEntropy.apply(
        flat_hidden, weight, bias, flat_labels, chunk, label_smoothing
    )
    scores = TokenScores(nll.view(labels.shape), predicted.view(labels.shape))
    return loss, (labels != IGNORE_INDEX).sum(), scores


class _LinearCrossEntropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, weight, bias, labels, chunk, smoothing):  # noqa: ANN001, ANN205 - autograd's
        wants_grad = ctx.needs_input_grad[0] or ctx.needs_input_grad[1] or ctx.needs_input_grad[2]
        n = hidden.size(0)
        loss = torch.zeros((), dtype=torch.float32, device=hidden.device)
        nll = torch.empty(n, dtype=torch.float32, device=hidden.device)
        predicted = torch.empty(n, dtype=torch.long, device=hidden.device)
        grad_hidden = torch.empty_like(hidden) if wants_grad else None
        grad_weight = torch.zeros_like(weight, dtype=torch.float32) if wants_grad else None
        grad_bias = torch.zeros_like(bias, dtype=torch.float32) if wants_grad and bias is not None else None
        for start in range(0, n, chunk):
            h, y = hidden[start : start + chunk], labels[start : start + chunk]  # (n_c, C), (n_c,)
            logits = F.linear(h, weight, bias).float()  # (n_c, V): the only logits alive
            valid = (y != IGNORE_INDEX)[:, None]  # (n_c, 1)
            target = y.clamp(min=0)[:, None]
            log_z = torch.logsumexp(logits, dim=-1, keepdim=True)  # (n_c, 1)
            token_nll = (log_z - logits.gather(1, target)) * valid  # (n_c, 1)
            nll[start : start + chunk] = token_nll.squeeze(1)
            predicted[start : start + chunk] = logits.argmax(dim=-1)
            if smoothing:  # (1 - s) nll + s * the mean over the vocabulary of -log p
                uniform = (log_z - logits.mean(dim=-1, keepdim=True)) * valid
                loss += ((1 - smoothing) * token_nll + smoothing * uniform).sum()
            else:
                loss += token_nll.sum()
            if wants_grad:
                # d(summed loss)/d logits = softmax - (1 - s) one_hot(label) - s / V, zero on ignored rows
                # (applied to the thin (n_c, C) sides below, not to the (n_c, V) one)
                grad_logits = logits.sub_(log_z).exp_()  # in place: the chunk's logits become its softmax
                grad_logits.scatter_add_(1, target, torch.full_like(log_z, smoothing - 1.0))
                if smoothing:
                    grad_logits -= smoothing / logits.size(-1)
                grad_logits = grad_logits.to(h.dtype)
                grad_hidden[start : start + chunk] = (grad_logits @ weight.to(h.dtype)) * valid
                grad_weight += (grad_logits.t() @ (h * valid)).float()
                if grad_bias is not None:
                    grad_bias += (valid.to(grad_logits.dtype).t() @ grad_logits).squeeze(0).float()
        ctx.save_for_backward(grad_hidden, grad_weight, grad_bias)
        ctx.mark_non_differentiable(nll, predicted)
        ctx.dtypes = (weight.dtype, None if bias is None else bias.dtype)
        return loss, nll, predicted

    @staticmethod
    def backward(ctx, grad_loss, _grad_nll, _grad_predicted):  # noqa: ANN001, ANN205
        grad_hidden, grad_weight, grad_bias = ctx.saved_tensors
        weight_dtype, bias_dtype = ctx.dtypes
        scale = grad_loss.float()
        return (
            grad_hidden * scale.to(grad_hidden.dtype) if ctx.needs_input_grad[0] else None,
            (grad_weight * scale).to(weight_dtype) if ctx.needs_input_grad[1] else None,
            (grad_bias * scale).to(bias_dtype) if grad_bias is not None and ctx.needs_input_grad[2] else None,
            None,
            None,
            None,
        )
