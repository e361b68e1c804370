"""Optimizers, and the split of a model's parameters into weight-decay groups.

The framework calls ``param_groups(model)`` and hands the groups to the selected ``optim`` plugin as
``params``; the ``weight_decay`` a plugin is given applies to the first group only.
"""

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from lightning_llm.registry import register

__all__ = ["adam", "adamw", "param_groups", "sgd"]


def param_groups(model: nn.Module, decay_embeddings: bool = True) -> list[dict[str, Any]]:
    """Two groups: ``[{"params": decayed}, {"params": not_decayed, "weight_decay": 0.0}]``.

    Every tensor with two or more dimensions is decayed, embedding tables included, as nanoGPT's
    ``configure_optimizers`` and the Hugging Face Trainer's default do (it excludes biases and norm
    weights only). Biases and norm gains (vectors) are not: shrinking them toward zero only fights the scale
    the norm is there to set. ``decay_embeddings=False`` (``optim.decay_embeddings=false``) also leaves the
    embedding tables out (Megatron's option: each step updates only the rows of the tokens it saw, so decay
    wears down rare tokens); a head tied to the embedding is that same table. Each parameter appears once,
    shared ones included; frozen ones (``requires_grad=False``) not at all.
    """
    embedding_tables = {id(m.weight) for m in model.modules() if isinstance(m, nn.Embedding)}
    decayed, not_decayed = [], []
    for param in model.parameters():  # yields a shared (tied) parameter once
        if not param.requires_grad:  # frozen (LoRA's base weights): the optimizer never sees it
            continue
        decays = param.dim() >= 2 and (decay_embeddings or id(param) not in embedding_tables)
        (decayed if decays else not_decayed).append(param)
    return [{"params": decayed}, {"params": not_decayed, "weight_decay": 0.0}]


@register("optim", "adam")
def adam(
    params: Iterable[Any],
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.999,
    eps: float = 1e-8,
    weight_decay: float = 0.0,
    fused: bool | None = None,
) -> torch.optim.Adam:
    """Adam (Kingma & Ba 2015); weight_decay here is L2 added to the gradient (use adamw to decouple it).

    Args:
        lr: peak learning rate (the scheduler scales it).
        beta1: decay of the running mean of gradients.
        beta2: decay of the running mean of squared gradients.
        eps: added to the denominator for numerical stability.
        weight_decay: L2 penalty on the decayed group (matrices).
        fused: use the fused kernel; null picks it when every parameter is on a CPU or GPU.
    """
    return _adam_family(torch.optim.Adam, params, lr, beta1, beta2, eps, weight_decay, fused)


@register("optim", "adamw")
def adamw(
    params: Iterable[Any],
    lr: float = 1e-3,
    beta1: float = 0.9,
    beta2: float = 0.95,
    eps: float = 1e-8,
    weight_decay: float = 0.1,
    fused: bool | None = None,
) -> torch.optim.AdamW:
    """AdamW (Loshchilov & Hutter 2019): Adam with decoupled weight decay. Defaults follow GPT-3 and
    nanoGPT (beta2 0.95 for stability at large batch, weight decay 0.1).

    Args:
        lr: peak learning rate (the scheduler scales it).
        beta1: decay of the running mean of gradients.
        beta2: decay of the running mean of squared gradients.
        eps: added to the denominator for numerical stability.
        weight_decay: decoupled decay on the decayed group (matrices).
        fused: use the fused kernel; null picks it when every parameter is on a CPU or GPU.
    """
    return _adam_family(torch.optim.AdamW, params, lr, beta1, beta2, eps, weight_decay, fused)


def _adam_family(
    cls: type[torch.optim.Adam] | type[torch.optim.AdamW],
    params: Iterable[Any],
    lr: float,
    beta1: float,
    beta2: float,
    eps: float,
    weight_decay: float,
    fused: bool | None,
) -> torch.optim.Optimizer:
    """Adam and AdamW take the same arguments; only where the weight decay acts differs."""
    params = list(params)
    _check_adam(lr, beta1, beta2, eps, weight_decay)
    return cls(
        params,
        lr=lr,
        betas=(beta1, beta2),
        eps=eps,
        weight_decay=weight_decay,
        fused=_use_fused(params, fused),
    )


@register("optim", "sgd")
def sgd(
    params: Iterable[Any],
    lr: float = 0.1,
    momentum: float = 0.9,
    nesterov: bool = True,
    weight_decay: float = 0.0,
) -> torch.optim.SGD:
    """Stochastic gradient descent with (Nesterov) momentum.

    Args:
        lr: peak learning rate (the scheduler scales it).
        momentum: momentum factor; 0 for plain SGD.
        nesterov: use Nesterov momentum (needs momentum > 0).
        weight_decay: L2 penalty on the decayed group (matrices).
    """
    _check_positive("lr", lr)
    _check_non_negative("weight_decay", weight_decay)
    if not 0.0 <= momentum < 1.0:
        raise ValueError(f"optim.momentum must be in [0, 1), got {momentum:g}")
    if nesterov and momentum == 0.0:
        raise ValueError(
            "optim.nesterov=true needs optim.momentum > 0; set optim.nesterov=false for plain SGD"
        )
    return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov, weight_decay=weight_decay)


def _use_fused(params: list[Any], fused: bool | None) -> bool:
    """``fused=None``: the fused kernel (one pass over all parameters) when every parameter is on a CPU or a
    CUDA device. On a CPU torch's own default is the per-parameter Python loop: ~7x slower for a small
    GPT, a few percent of every training step (bench/overhead.py)."""
    if fused is not None:
        return fused
    tensors = _tensors(params)
    return bool(tensors) and all(p.device.type in ("cpu", "cuda") for p in tensors)


def _tensors(params: list[Any]) -> list[torch.Tensor]:
    """The parameters, whether given as tensors or as groups (dicts with a "params" list)."""
    tensors = []
    for item in params:
        tensors.extend(item["params"] if isinstance(item, dict) else [item])
    return tensors


def _check_adam(lr: float, beta1: float, beta2: float, eps: float, weight_decay: float) -> None:
    _check_positive("lr", lr)
    _check_positive("eps", eps)
    _check_non_negative("weight_decay", weight_decay)
    for key, beta in (("beta1", beta1), ("beta2", beta2)):
        if not 0.0 <= beta < 1.0:
            raise ValueError(f"optim.{key} must be in [0, 1), got {beta:g}")


def _check_positive(key: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"optim.{key} must be > 0, got {value:g}")


def _check_non_negative(key: str, value: float) -> None:
    if not value >= 0:
        raise ValueError(f"optim.{key} must be >= 0, got {value:g}")
