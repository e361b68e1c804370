"""Metrics over predicted tokens: perplexity and top-1 accuracy.

Both take ``update(logits, labels)`` with logits (..., V) and labels (...) (or, from a loss computed in
chunks, the tokens' ``TokenScores`` in place of the logits), skip positions labelled ``ignore_index``, and
keep running sums (not per-batch means) reduced with ``sum`` across processes, so the result is the exact
per-token value over everything seen, however it was batched or sharded. The same shapes cover language
modelling (B, T, V) and sequence classification (B, num_classes).
"""

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from lightning_llm.models.chunked_head import TokenScores

__all__ = ["Accuracy", "Perplexity", "correct_tokens", "predicted_ids", "summed_nll"]


def summed_nll(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int, chunk_elements: int = 2**27
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed negative log-likelihood of the labels, and how many labels there were (ignored ones aside).

    Uses cross_entropy's fused log-softmax in float32, over chunks of rows of at most ``chunk_elements``
    logits (512 MB of float32): a (32, 1024, 50257) batch at once would need two 6.6 GB float32 copies.
    """
    _check_shapes(logits, labels)
    rows, targets = logits.detach().flatten(0, -2), labels.flatten()  # (N, V), (N,)
    step = max(1, chunk_elements // max(1, rows.size(-1)))
    nll = sum(
        (
            F.cross_entropy(
                rows[i : i + step].float(), targets[i : i + step], ignore_index=ignore_index, reduction="sum"
            )
            for i in range(0, rows.size(0), step)
        ),
        start=torch.zeros((), device=logits.device),
    )
    return nll, (labels != ignore_index).sum()


def correct_tokens(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """How many labels are the top-1 prediction, and how many labels there were (ignored ones aside)."""
    counted = labels != ignore_index
    correct = (predicted_ids(logits, labels) == labels) & counted
    return correct.sum(), counted.sum()


def predicted_ids(outputs: torch.Tensor | TokenScores, labels: torch.Tensor) -> torch.Tensor:
    """The top-1 prediction at each labelled position, from logits (..., V) or a chunked loss's scores."""
    if isinstance(outputs, TokenScores):
        return outputs.predicted
    _check_shapes(outputs, labels)
    return outputs.argmax(dim=-1)


def _check_shapes(logits: torch.Tensor, labels: torch.Tensor) -> None:
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits of shape {tuple(logits.shape)} need labels of shape {tuple(logits.shape[:-1])}, "
            f"got {tuple(labels.shape)}"
        )


class Perplexity(Metric):
    """exp(mean token cross-entropy).

    The ``perplexity`` metric plugin (``lightning_llm.metrics.plugins``) documents it and its parameters.
    """

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, ignore_index: int = -100):
        super().__init__()
        self.ignore_index = ignore_index
        # float64: a float32 sum over ~1e8 tokens would lose the digits that later batches add
        self.add_state("nll_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_tokens", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor | TokenScores, labels: torch.Tensor) -> None:
        if isinstance(logits, TokenScores):  # the loss's chunks already scored every token
            nll, n_tokens = logits.nll.double().sum(), (labels != self.ignore_index).sum()
        else:
            nll, n_tokens = summed_nll(logits, labels, self.ignore_index)
        self.nll_sum += nll.double()
        self.n_tokens += n_tokens

    def compute(self) -> torch.Tensor:
        return torch.exp(self.nll_sum / self.n_tokens)  # nan before any scored token


class Accuracy(Metric):
    """Top-1 accuracy over scored positions.

    The ``accuracy`` metric plugin (``lightning_llm.metrics.plugins``) documents it and its parameters.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, ignore_index: int = -100):
        super().__init__()
        self.ignore_index = ignore_index
        self.add_state("n_correct", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")
        self.add_state("n_tokens", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor | TokenScores, labels: torch.Tensor) -> None:
        n_correct, n_tokens = correct_tokens(logits, labels, self.ignore_index)
        self.n_correct += n_correct
        self.n_tokens += n_tokens

    def compute(self) -> torch.Tensor:
        return self.n_correct.double() / self.n_tokens  # nan before any scored token
