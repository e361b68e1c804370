"""When the NaN guard defers its check: by default only on a GPU, and only with an optimizer that can skip a
bad update itself (``found_inf``). The deferred behaviour is tested end to end in
tests/reliability/test_nan.py."""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch

from lightning_llm.callbacks.nan_guard import NanGuard


def trainer_on(device: str) -> SimpleNamespace:
    return SimpleNamespace(strategy=SimpleNamespace(root_device=torch.device(device)))


def adamw(fused: bool) -> torch.optim.Optimizer:
    return torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], fused=fused)


@pytest.mark.parametrize(
    ("defer", "device", "fused", "expected"),
    [
        (None, "cuda", True, True),  # the default where a host sync costs: a GPU with fused AdamW
        (None, "cpu", True, False),  # a CPU sync is free: check at once
        (None, "cuda", False, False),  # an unfused optimizer would apply the bad update
        (True, "cpu", True, True),  # forced (the tests do this on CPU)
        (True, "cuda", False, False),  # forced, but the optimizer cannot skip: never deferred
        (False, "cuda", True, False),
    ],
)
def test_deferred_only_where_the_optimizer_can_skip(defer, device, fused, expected):
    assert NanGuard(defer=defer)._defers(trainer_on(device), adamw(fused)) is expected


def test_a_defer_that_is_not_a_boolean_is_refused():
    with pytest.raises(ValueError, match=r"callbacks.nan_guard.defer='maybe': choose true, false or null"):
        NanGuard(defer="maybe")
