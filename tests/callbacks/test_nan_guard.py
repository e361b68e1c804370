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


@pytest.mark.slow
def test_clipping_with_the_guards_norm_trains_exactly_as_measuring_again(make_cfg, tmp_path, monkeypatch):
    """In one process the guard's gradient norm is clipping's too (one pass over the gradients, not two):
    the weights are bit for bit those of a run that measures again."""
    from lightning_llm.module import LanguageModule
    from lightning_llm.train import train

    def weights(run_dir):
        state = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
        return {name: tensor for name, tensor in state.items() if name.startswith("model.")}

    cfg = ["trainer.max_steps=4", "trainer.gradient_clip_val=0.05"]  # small: every step clips
    train(make_cfg(*cfg), run_dir=tmp_path / "shared")
    monkeypatch.setattr(LanguageModule, "share_grad_norm", lambda self, norm: None)
    train(make_cfg(*cfg), run_dir=tmp_path / "measured")
    shared, measured = weights(tmp_path / "shared"), weights(tmp_path / "measured")
    assert shared.keys() == measured.keys() and all(torch.equal(shared[k], measured[k]) for k in shared)
