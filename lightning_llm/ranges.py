"""The run settings that are plain numbers or switches (the trainer's counts and intervals, the callbacks',
the seed), each with its valid range, checked before any work; and the switches of the typed nodes.

Lightning accepts some values that silently do the wrong thing (a negative ``accumulate_grad_batches``
flips the gradient's sign, a negative ``gradient_clip_val`` turns clipping off) and fails deep inside a run
on others (``max_steps=-1`` once the LR schedule needs a length). Plugins check their own parameters; these
settings belong to no plugin, so they are checked here, naming the key and what would be valid.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import typing
from collections.abc import Callable
from typing import Any, Optional

from omegaconf import DictConfig, OmegaConf

from lightning_llm.errors import ConfigError

MAX_SEED = 2**32 - 1  # NumPy's seeds are 32-bit, and Lightning seeds NumPy too

Check = tuple[Callable[[Any], bool], str]  # (is the value valid?, what a valid value is)


def _integer(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def switch(nullable: bool = False) -> Check:
    """True or false only: Lightning takes any value for its switches (``"no"`` is a true string)."""
    return (lambda v: isinstance(v, bool) or (nullable and v is None)), "true or false" + (
        ", or null" if nullable else ""
    )


def _is_switch(hint: Any) -> bool:
    return hint is bool or hint == Optional[bool]  # noqa: UP045 - the typing form is what hints hold


def check_switches(cls: type, values: Any, key: str) -> None:
    """Refuse anything but true or false (or null, where the field allows it) for the true/false fields of
    the dataclass ``cls`` (nested ones too) in the plain dict ``values``."""
    if not isinstance(values, dict):
        return
    for name, hint in typing.get_type_hints(cls).items():
        if name not in values:
            continue
        value = values[name]
        if dataclasses.is_dataclass(hint):
            check_switches(hint, value, f"{key}.{name}")
        elif _is_switch(hint) and not (isinstance(value, bool) or (value is None and hint is not bool)):
            raise ConfigError(
                f"{key}.{name}={value!r} is not true or false; {key}.{name} is a true/false setting"
            )


@functools.cache
def loose_switches(cls: type) -> type:
    """``cls`` as Hydra's node: its true/false fields (nested ones too) untyped. OmegaConf turns any number
    given for a bool field into a bool as it composes (``bias: 2`` is true), from a preset file as from the
    command line; untyped, the value reaches ``check_switches`` as written, to be refused there."""
    hints = typing.get_type_hints(cls)
    fields: list[tuple[str, Any, Any]] = []
    for field in dataclasses.fields(cls):
        hint = hints[field.name]
        if dataclasses.is_dataclass(hint):
            hint = loose_switches(hint)
            spec = dataclasses.field(default_factory=hint)
        elif field.default_factory is not dataclasses.MISSING:
            spec = dataclasses.field(default_factory=field.default_factory)
        else:
            spec = dataclasses.field(default=field.default)
        fields.append((field.name, Any if _is_switch(hint) else hint, spec))
    return dataclasses.make_dataclass(cls.__name__, fields)


def at_least(low: int, nullable: bool = False, note: str = "") -> Check:
    what = f"an integer >= {low}" + (", or null" if nullable else "") + (f" ({note})" if note else "")
    return (lambda v: (nullable and v is None) or (_integer(v) and v >= low)), what


def count_or_fraction(low: int, open_zero: bool = False, note: str = "") -> Check:
    """An integer count >= ``low``, or a float fraction in [0, 1] ((0, 1] with ``open_zero``)."""
    interval = "(0, 1]" if open_zero else "[0, 1]"

    def valid(value: Any) -> bool:
        if value is None or _integer(value):
            return value is None or value >= low
        return _number(value) and (value > 0 if open_zero else value >= 0) and value <= 1

    return valid, f"an integer >= {low} or a float in {interval}" + (f" ({note})" if note else "")


def finite_at_least(low: float, nullable: bool = True, note: str = "") -> Check:
    what = f"a finite number >= {low}" + (", or null" if nullable else "") + (f" ({note})" if note else "")
    return (lambda v: (nullable and v is None) or (_number(v) and v >= low)), what


def positive_or_null(note: str = "") -> Check:
    return (lambda v: v is None or (_number(v) and v > 0)), "a finite number > 0, or null" + (
        f" ({note})" if note else ""
    )


RANGES: dict[str, Check] = {
    "seed": (lambda v: _integer(v) and 0 <= v <= MAX_SEED, f"an integer from 0 to {MAX_SEED}"),
    # Lightning's Trainer arguments (conf/trainer/); counts of steps are optimizer steps.
    "trainer.max_steps": at_least(1, note="the LR schedule spans max_steps optimizer steps"),
    "trainer.min_steps": at_least(0, nullable=True),
    "trainer.max_epochs": (
        lambda v: v is None or (_integer(v) and (v == -1 or v >= 1)),
        "an integer >= 1, -1 (no limit: max_steps decides) or null",
    ),
    "trainer.min_epochs": at_least(0, nullable=True),
    "trainer.accumulate_grad_batches": at_least(1, note="micro-batches per optimizer step"),
    "trainer.val_check_interval": count_or_fraction(
        1, open_zero=True, note="a float is a fraction of an epoch"
    ),
    "trainer.check_val_every_n_epoch": at_least(1, nullable=True),
    "trainer.limit_train_batches": count_or_fraction(1, open_zero=True),
    "trainer.limit_val_batches": count_or_fraction(0, note="0 turns validation off"),
    "trainer.limit_test_batches": count_or_fraction(0, note="0 turns the test split off"),
    "trainer.limit_predict_batches": count_or_fraction(0),
    "trainer.overfit_batches": count_or_fraction(0),
    "trainer.num_sanity_val_steps": at_least(-1, nullable=True, note="-1: the whole val split"),
    "trainer.log_every_n_steps": at_least(1, nullable=True),
    "trainer.gradient_clip_val": finite_at_least(0, note="0 or null: no clipping"),
    "trainer.num_nodes": at_least(1),
    "trainer.reload_dataloaders_every_n_epochs": at_least(0),
    # The callbacks' settings (conf/callbacks/default.yaml).
    "callbacks.checkpoint.save_top_k": at_least(-1, note="-1: keep every checkpoint, 0: none by val loss"),
    "callbacks.checkpoint.every_n_train_steps": at_least(1, nullable=True),
    "callbacks.throughput.warmup_steps": at_least(0),
    "callbacks.throughput.peak_flops": positive_or_null("a device's dense peak FLOP/s"),
    "callbacks.samples.num_samples": at_least(0),
    "callbacks.samples.max_new_tokens": at_least(1),
    "callbacks.samples.temperature": finite_at_least(0, nullable=False, note="0: greedy"),
    "callbacks.samples.top_k": at_least(1, nullable=True),
    "callbacks.samples.prompt": (lambda v: isinstance(v, str), "a string (quote a number: '\"1984\"')"),
    "callbacks.nan_guard.action": (lambda v: v in ("stop", "skip"), "stop or skip"),
    "callbacks.nan_guard.max_skips": at_least(0),
    "trainer.deterministic": (
        lambda v: v is None or isinstance(v, bool) or v == "warn",
        "true, false, warn or null",
    ),
    **{
        f"trainer.{name}": switch(nullable=True)
        for name in ("enable_checkpointing", "enable_progress_bar", "enable_model_summary", "benchmark")
    },
    **{
        f"trainer.{name}": switch()
        for name in (
            "inference_mode",
            "use_distributed_sampler",
            "detect_anomaly",
            "barebones",
            "sync_batchnorm",
        )
    },
    "callbacks.checkpoint.save_last": switch(),
    "tokenizer.train_max_chars": at_least(1, note="characters of train-split text the tokenizer trains on"),
    "model.lora.rank": at_least(0, note="0: no LoRA"),
    "model.lora.alpha": (lambda v: _number(v) and v > 0, "a finite number > 0"),
    "model.lora.dropout": (lambda v: _number(v) and 0 <= v < 1, "a number in [0, 1)"),
    "callbacks.early_stopping.patience": at_least(1, nullable=True, note="validations; null: off"),
    "callbacks.early_stopping.min_delta": finite_at_least(0, nullable=False),
    "callbacks.early_stopping.mode": (lambda v: v in ("min", "max"), "min or max"),
    "callbacks.early_stopping.monitor": (
        lambda v: isinstance(v, str) and v.startswith("val/"),
        "a value logged by validation, e.g. val/loss or val/accuracy",
    ),
}


# Settings the run reads whatever the overrides: removing one (~trainer.max_steps) or replacing a section
# with a value (callbacks.samples=5) would fail inside the run.
REQUIRED = ("trainer.max_steps",)
SECTIONS = tuple(f"callbacks.{name}" for name in ("checkpoint", "throughput", "samples", "nan_guard"))


def check_ranges(cfg: DictConfig) -> None:
    """Raise ``ConfigError`` for the first setting of ``RANGES`` in ``cfg`` that is out of its range."""
    for key in REQUIRED:
        if _value(cfg, key) is _ABSENT:
            raise ConfigError(f"{key} is required (it was removed); set it, e.g. {key}=1000")
    for key in SECTIONS:
        if not isinstance(_value(cfg, key), DictConfig):
            raise ConfigError(
                f"{key} is a section of settings (conf/callbacks/default.yaml); keep it, and "
                f"set its keys, e.g. {key}.<setting>=..."
            )
    for key, (valid, what) in RANGES.items():
        value = _value(cfg, key)
        if value is not _ABSENT and not valid(value):
            raise ConfigError(f"{key}={value!r}: must be {what}")
    interval, every = (
        _value(cfg, "trainer.val_check_interval"),
        _value(cfg, "trainer.check_val_every_n_epoch"),
    )
    if isinstance(interval, float) and every in (None, _ABSENT):  # Lightning refuses it, deep in the run
        raise ConfigError(
            f"trainer.val_check_interval={interval}: a fraction of an epoch needs "
            "trainer.check_val_every_n_epoch (e.g. 1); with it null, runs count optimizer steps, so give a "
            "number of steps"
        )
    devices = _value(cfg, "trainer.devices")
    if _integer(devices) and not (devices >= 1 or devices == -1):
        raise ConfigError(
            f"trainer.devices={devices}: must be >= 1, -1 (every GPU), auto, or a list of indices"
        )


_ABSENT = object()


def _value(cfg: DictConfig, key: str) -> Any:
    try:
        return OmegaConf.select(cfg, key, default=_ABSENT, throw_on_missing=False)
    except Exception:  # an interpolation that does not resolve outside a run: not a number to check
        return _ABSENT
