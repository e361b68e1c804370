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
    "warmup_length",
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
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int | None = None,
    warmup_fraction: float | None = None,
    min_lr_ratio: float = 0.1,
) -> LambdaLR:
    """Linear warmup, then cosine decay to min_lr_ratio * lr (GPT-3, Chinchilla, nanoGPT).

    Args:
        warmup_steps: optimizer steps of linear warmup; longer than the run is an error.
        warmup_fraction: the warmup as a share of the run's optimizer steps instead (HF's warmup_ratio);
            with neither set, 10% of the run.
        min_lr_ratio: final learning rate as a fraction of the peak (0.1 as in GPT-3 and Chinchilla).
    """
    _check(total_steps, min_lr_ratio)
    warmup_steps = warmup_length(total_steps, warmup_steps, warmup_fraction, default_fraction=0.1)
    curve = functools.partial(
        cosine_multiplier, total_steps=total_steps, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio
    )
    return LambdaLR(optimizer, curve)


@register("scheduler", "linear")
def linear(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int | None = None,
    warmup_fraction: float | None = None,
    min_lr_ratio: float = 0.1,
) -> LambdaLR:
    """Linear warmup, then linear decay to min_lr_ratio * lr (BERT, T5 fine-tuning).

    Args:
        warmup_steps: optimizer steps of linear warmup; longer than the run is an error.
        warmup_fraction: the warmup as a share of the run's optimizer steps instead (HF's warmup_ratio);
            with neither set, 10% of the run.
        min_lr_ratio: final learning rate as a fraction of the peak.
    """
    _check(total_steps, min_lr_ratio)
    warmup_steps = warmup_length(total_steps, warmup_steps, warmup_fraction, default_fraction=0.1)
    curve = functools.partial(
        linear_multiplier, total_steps=total_steps, warmup_steps=warmup_steps, min_lr_ratio=min_lr_ratio
    )
    return LambdaLR(optimizer, curve)


@register("scheduler", "constant")
def constant(
    optimizer: torch.optim.Optimizer,
    total_steps: int,
    warmup_steps: int | None = None,
    warmup_fraction: float | None = None,
) -> LambdaLR:
    """Linear warmup, then the peak learning rate until the end.

    Args:
        warmup_steps: optimizer steps of linear warmup; longer than the run is an error.
        warmup_fraction: the warmup as a share of the run's optimizer steps instead; with neither set, none.
    """
    _check(total_steps, min_lr_ratio=1.0)
    warmup_steps = warmup_length(total_steps, warmup_steps, warmup_fraction, default_fraction=0.0)
    return LambdaLR(optimizer, functools.partial(constant_multiplier, warmup_steps=warmup_steps))


def _check(total_steps: int, min_lr_ratio: float) -> None:
    if total_steps < 1:
        raise ValueError(
            f"the scheduler needs total_steps >= 1 (optimizer steps in the run), got {total_steps}"
        )
    if not 0.0 <= min_lr_ratio <= 1.0:
        raise ValueError(f"scheduler.min_lr_ratio must be in [0, 1], got {min_lr_ratio:g}")


def warmup_length(
    total_steps: int, warmup_steps: int | None, warmup_fraction: float | None, default_fraction: float
) -> int:
    """The warmup in optimizer steps: ``warmup_steps``, or ``warmup_fraction`` of the run, or the default
    share; one of the two settings at most, and never longer than the run (an error, not a clamp)."""
    if warmup_steps is not None and warmup_fraction is not None:
        raise ValueError(
            f"scheduler.warmup_steps={warmup_steps} and scheduler.warmup_fraction={warmup_fraction} are both "
            "set; give one, the other null"
        )
    if warmup_fraction is not None and not 0.0 <= warmup_fraction <= 1.0:
        raise ValueError(f"scheduler.warmup_fraction must be in [0, 1], got {warmup_fraction:g}")
    if warmup_steps is None:
        return round(total_steps * (default_fraction if warmup_fraction is None else warmup_fraction))
    if warmup_steps < 0:
        raise ValueError(f"scheduler.warmup_steps must be >= 0, got {warmup_steps}")
    if warmup_steps > total_steps:
        raise ValueError(
            f"scheduler.warmup_steps={warmup_steps} is longer than the run's {total_steps} optimizer steps; "
            f"lower it, or give the warmup as a share of the run with scheduler.warmup_fraction (e.g. 0.1)"
        )
    return warmup_steps
