"""Lightning callbacks a config adds by name: ``'callbacks.extra=[ema]'`` or
``'callbacks.extra=[{name: ema, decay: 0.99}]'`` (``python -m lightning_llm.plugins callback`` lists them).

Each is Lightning's own callback behind a plugin of kind ``callback`` whose parameters are plain typed values,
so a config can set them and no file names a class to import (there is no ``_target_``). A plugin package
adds its own the same way: ``@register("callback", "name")`` on a function returning a ``lightning.Callback``.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING

from lightning_llm.registry import register

if TYPE_CHECKING:  # registering needs the signatures only; Lightning loads when a callback is built
    from lightning.pytorch.callbacks import DeviceStatsMonitor, EMAWeightAveraging, Timer

__all__ = ["device_stats", "ema", "timer"]

# Said on every EMA run because the models shard in configure_model; the config check refuses the EMA under
# FSDP, the one case where the warning would matter.
warnings.filterwarnings(
    "ignore", message="You're using the WeightAveraging callback with a model that overrides"
)


@register("callback", "ema")
def ema(
    decay: float = 0.999, update_every_n_steps: int = 1, update_starting_at_step: int | None = None
) -> EMAWeightAveraging:
    """An exponential moving average of the weights (Lightning's EMAWeightAveraging), validated, tested and
    saved in place of the raw weights, so generate, export and evaluate read the average (the raw weights
    and the average's state are in the checkpoint too: a resumed run continues both). Not under FSDP: the
    average is a whole copy of the model.

    Args:
        decay: the average keeps this share of itself at each update (0.999: about the last 1,000 updates).
        update_every_n_steps: optimizer steps between updates of the average.
        update_starting_at_step: the first optimizer step that updates the average; null: the first one.
    """
    if not 0.0 < decay < 1.0:
        raise ValueError(f"callbacks.extra: ema's decay must be in (0, 1), got {decay}")
    from lightning.pytorch.callbacks import EMAWeightAveraging

    return EMAWeightAveraging(
        decay=decay,
        update_every_n_steps=update_every_n_steps,
        update_starting_at_step=update_starting_at_step,
    )


ema.whole_model = True  # the average is a whole copy of the model: the config check refuses it under FSDP


@register("callback", "timer")
def timer(duration: str = "00:12:00:00", verbose: bool = True) -> Timer:
    """Stop training cleanly once it has trained for ``duration`` (Lightning's Timer), validated and with a
    last checkpoint. The time counts across resumes (the checkpoint keeps it): raise the duration to train on.

    Args:
        duration: the longest the training may run, as days:hours:minutes:seconds (DD:HH:MM:SS).
        verbose: log when the time is up.
    """
    parts = duration.split(":")
    if len(parts) != 4 or not all(part.isdigit() for part in parts):
        raise ValueError(f"callbacks.extra: timer's duration must be DD:HH:MM:SS, got {duration!r}")
    from lightning.pytorch.callbacks import Timer

    return Timer(duration=duration, interval="step", verbose=verbose)


@register("callback", "device_stats")
def device_stats(cpu_stats: bool | None = None) -> DeviceStatsMonitor:
    """The accelerator's memory and utilisation statistics logged every logged step (Lightning's
    DeviceStatsMonitor).

    Args:
        cpu_stats: also log CPU statistics (needs psutil); null: only on a CPU run.
    """
    from lightning.pytorch.callbacks import DeviceStatsMonitor

    return DeviceStatsMonitor(cpu_stats=cpu_stats)
