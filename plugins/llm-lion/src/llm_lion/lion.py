"""Lion: EvoLved Sign Momentum (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms").

Per parameter, with gradient g and momentum m (Algorithm 2 of the paper):

    c = beta1 * m + (1 - beta1) * g          # interpolate: the direction of this step
    w = w - lr * (sign(c) + weight_decay * w)  # every coordinate moves by exactly lr (decoupled decay aside)
    m = beta2 * m + (1 - beta2) * g          # the momentum is updated after, with a slower beta2

Only one state tensor per parameter (Adam keeps two), and the update's size does not depend on the gradient's
scale, so Lion wants a learning rate 3-10x smaller than AdamW's and a weight decay 3-10x larger (section 5
of the paper) to keep the same effective decay lr * weight_decay.
"""

from collections.abc import Callable, Iterable
from typing import Any

import torch

from lightning_llm import register

__all__ = ["Lion", "lion"]


class Lion(torch.optim.Optimizer):
    """Lion over ``params`` (tensors or parameter groups). A group's own ``weight_decay`` wins over the
    default here, so lightning_llm's undecayed group (biases, norms, embeddings: ``weight_decay=0``) stays
    undecayed."""

    def __init__(
        self,
        params: Iterable[Any],
        lr: float = 1e-4,
        betas: tuple[float, float] = (0.9, 0.99),
        weight_decay: float = 0.0,
    ):
        if not lr > 0:
            raise ValueError(f"optim.lr must be > 0, got {lr:g}")
        for key, beta in zip(("beta1", "beta2"), betas, strict=True):
            if not 0.0 <= beta < 1.0:
                raise ValueError(f"optim.{key} must be in [0, 1), got {beta:g}")
        if not weight_decay >= 0:
            raise ValueError(f"optim.weight_decay must be >= 0, got {weight_decay:g}")
        super().__init__(params, {"lr": lr, "betas": tuple(betas), "weight_decay": weight_decay})

    @torch.no_grad()
    def step(self, closure: Callable[[], torch.Tensor] | None = None) -> torch.Tensor | None:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, (beta1, beta2), weight_decay = group["lr"], group["betas"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError("Lion does not support sparse gradients")
                state = self.state[p]
                if not state:
                    state["exp_avg"] = torch.zeros_like(p, memory_format=torch.preserve_format)
                m, g = state["exp_avg"], p.grad
                direction = (beta1 * m + (1 - beta1) * g).sign()
                p.mul_(1 - lr * weight_decay)  # decoupled weight decay, on the weight before this step
                p.add_(direction, alpha=-lr)
                m.mul_(beta2).add_(g, alpha=1 - beta2)
        return loss


@register("optim", "lion")
def lion(
    params: Iterable[Any],
    lr: float = 1e-4,
    beta1: float = 0.9,
    beta2: float = 0.99,
    weight_decay: float = 0.0,
) -> Lion:
    """Lion (Chen et al. 2023): the sign of an interpolated momentum, so every weight moves by lr per step.
    Use a learning rate 3-10x smaller than AdamW's, and a weight decay 3-10x larger.

    Args:
        lr: peak learning rate (the scheduler scales it); the paper's default is 1e-4.
        beta1: interpolation between momentum and gradient that gives this step's direction.
        beta2: decay of the momentum (slower than beta1: the paper's 0.99 remembers ~100 steps).
        weight_decay: decoupled decay on the decayed group (matrices); the undecayed group keeps 0.
    """
    return Lion(params, lr=lr, betas=(beta1, beta2), weight_decay=weight_decay)
