"""Learning-rate schedules: linear warmup, then cosine, linear or no decay.

Each schedule is a pure function ``step -> multiplier of the peak lr``, wrapped in a ``LambdaLR`` that the
framework steps once per optimizer step. Step s (counting from 0) trains with the multiplier at s.
Warmup rises linearly to 1 at ``warmup_steps``; the decays reach ``min_lr_ratio`` at ``total_steps``
and stay there. A ``warmup_steps`` beyond ``total_steps`` is clamped to it, so a short debugging run with
a long-run config warms up for its whole length instead of failing.
"""

import functools
import math

import torch
from torch.optim.lr_scheduler import LambdaLR

from lightning_llm.registry import register

__all__ = [
    "constant",
    "constant_multiplier",
    "cosine",
    "cosine_multiplier",
    "decay_progress",
    "linear",
    "linear_multiplier",
    "warmup_multiplier",
]


# --------------------------------------------------------------------------- the curves (pure functions)


def warmup_multiplier(step: int, warmup_steps: int) -> float:
    """(step + 1) / (warmup_steps + 1) during warmup, so the first step already learns (nanoGPT)."""
    return (step + 1) / (warmup_steps + 1)


def decay_progress(step: int, total_steps: int, warmup_steps: int) -> float:
    """How far through the decay phase ``step`` is: 0 at the end of warmup, 1 at ``total_steps``."""
    return min(1.0, (step - warmup_steps) / max(1, total_steps - warmup_steps))


def cosine_multiplier(step: int, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    if step < warmup_steps:
        return warmup_multiplier(step, warmup_steps)
    progress = decay_progress(step, total_steps, warmup_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * 0.5 * (1.0 + math.cos(math.pi * progress))


def linear_multiplier(step: int, total_steps: int, warmup_steps: int, min_lr_ratio: float) -> float:
    if step < warmup_steps:
        return warmup_multiplier(step, warmup_steps)
    progress = decay_progress(step, total_steps, warmup_steps)
    return min_lr_ratio + (1.0 - min_lr_ratio) * (1.0 - progress)


def constant_multiplier(step: int, warmup_steps: int) -> float:
    return warmup_multiplier(step, warmup_steps) if step < warmup_steps else 1.0


# --------------------------------------------------------------------------- the plugins


@register("scheduler", "cosine")
def cosine(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 100, min_lr_ratio: float = 0.1
) -> LambdaLR:
    """Linear warmup, then cosine decay to min_lr_ratio * lr (GPT-3, Chinchilla, nanoGPT).

    Args:
        warmup_steps: optimizer steps of linear warmup (clamped to the run's length).
        min_lr_ratio: final learning rate as a fraction of the peak (0.1 as in GPT-3 and Chinchilla).
    """
    warmup_steps = _check(total_steps, warmup_steps, min_lr_ratio)
    curve = functools.partial(
        cosine_multiplier, total_steps=total_steps, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio
    )
    return LambdaLR(optimizer, curve)


@register("scheduler", "linear")
def linear(
    optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 100, min_lr_ratio: float = 0.1
) -> LambdaLR:
    """Linear warmup, then linear decay to min_lr_ratio * lr (BERT, T5 fine-tuning).

    Args:
        warmup_steps: optimizer steps of linear warmup (clamped to the run's length).
        min_lr_ratio: final learning rate as a fraction of the peak.
    """
    warmup_steps = _check(total_steps, warmup_steps, min_lr_ratio)
    curve = functools.partial(
        linear_multiplier, total_steps=total_steps, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio
    )
    return LambdaLR(optimizer, curve)


@register("scheduler", "constant")
def constant(optimizer: torch.optim.Optimizer, total_steps: int, warmup_steps: int = 0) -> LambdaLR:
    """Linear warmup, then the peak learning rate until the end.

    Args:
        warmup_steps: optimizer steps of linear warmup (clamped to the run's length); 0 for none.
    """
    warmup_steps = _check(total_steps, warmup_steps, min_lr_ratio=1.0)
    return LambdaLR(optimizer, functools.partial(constant_multiplier, warmup_steps=warmup_steps))


def _check(total_steps: int, warmup_steps: int, min_lr_ratio: float) -> int:
    """Validate the arguments and return warmup_steps clamped to total_steps."""
    if total_steps < 1:
        raise ValueError(
            f"the scheduler needs total_steps >= 1 (optimizer steps in the run), got {total_steps}"
        )
    if warmup_steps < 0:
        raise ValueError(f"scheduler.warmup_steps must be >= 0, got {warmup_steps}")
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"scheduler.min_lr_ratio must be in [0, 1], got {min_lr_ratio:g}")
    return min(warmup_steps, total_steps)
