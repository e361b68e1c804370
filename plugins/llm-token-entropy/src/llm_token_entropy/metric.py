"""Token entropy: how uncertain the model is, whatever the right answer was.

H(p) = -sum_v p(v) log p(v), in nats, of the model's predictive distribution p = softmax(logits) at every
scored position (label != ignore_index), averaged over those positions. It lies in [0, log V]: 0 for a
one-hot prediction, log V for a uniform one. Beside cross-entropy (perplexity) it tells a confident but
wrong model (low entropy, high loss) from a hesitant one (entropy close to the loss); a calibrated model's
mean entropy is about its mean cross-entropy.

Like lightning_llm's perplexity it keeps running sums reduced with ``sum`` across processes, so the value is
the exact per-token mean over everything seen, however it was batched or sharded.
"""

import torch
import torch.nn.functional as F
from torchmetrics import Metric

from lightning_llm import register

__all__ = ["TokenEntropy", "summed_entropy"]


def summed_entropy(
    logits: torch.Tensor, labels: torch.Tensor, ignore_index: int = -100
) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed entropy (nats) of softmax(logits) over the scored positions, and how many there were.

    logits: (..., V); labels: (...). Only the positions' labels matter for which are scored, not their value.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(
            f"logits of shape {tuple(logits.shape)} need labels of shape {tuple(logits.shape[:-1])}, "
            f"got {tuple(labels.shape)}"
        )
    scored = labels != ignore_index
    probs = F.softmax(logits.detach()[scored].float(), dim=-1)  # (N, V), float32 even under bf16
    # entr(p) = -p log p, and 0 where p = 0 (a -inf logit), where p * log p would be 0 * -inf = nan.
    return torch.special.entr(probs).sum(), scored.sum()


@register("metric", "token_entropy")
class TokenEntropy(Metric):
    """Mean entropy (nats) of the model's next-token distribution over scored positions.

    Args:
        ignore_index: label value of positions that are not scored.
    """

    is_differentiable = False
    higher_is_better = None  # neither: a good model is sure where the text is predictable, unsure elsewhere
    full_state_update = False

    def __init__(self, ignore_index: int = -100):
        super().__init__()
        self.ignore_index = ignore_index
        # float64: a float32 sum over ~1e8 tokens would lose the digits that later batches add
        self.add_state("entropy_sum", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n_tokens", default=torch.tensor(0, dtype=torch.int64), dist_reduce_fx="sum")

    def update(self, logits: torch.Tensor, labels: torch.Tensor) -> None:
        entropy, n_tokens = summed_entropy(logits, labels, self.ignore_index)
        self.entropy_sum += entropy.double()
        self.n_tokens += n_tokens

    def compute(self) -> torch.Tensor:
        return self.entropy_sum / self.n_tokens  # nan before any scored token
