"""A NaN loss is caught on the optimizer step it happens: ``stop`` names the step and the last good checkpoint
and writes nothing after it; ``skip`` drops that step's update and trains on. The fault is real: the
objective's loss is multiplied by NaN on one step, and backward carries the NaN into every gradient."""

from __future__ import annotations

import csv
import math
import os
import subprocess
from pathlib import Path

import lightning as L
import pytest
import torch

from lightning_llm.callbacks.nan_guard import NanGuard, NonFiniteLossError
from lightning_llm.checkpoint import stored_step
from lightning_llm.testing import TINY, cli_command, cli_env
from lightning_llm.train import train
from tests.reliability.test_bad_inputs import error_line

BAD_STEP = 5  # 1-based optimizer step, as in the logs (csv step 4)
NAN = [
    "trainer.max_steps=8",
    "trainer.val_check_interval=2",  # a good checkpoint at steps 2 and 4, before the fault
    "trainer.log_every_n_steps=1",
    "callbacks.samples.num_samples=0",
]


class NanLossAt(L.Callback):
    """Multiplies the objective's loss by NaN during optimizer step ``step`` (every micro-batch of it)."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_fit_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        loss = pl_module.objective.loss

        def poisoned(model, batch):
            loss_sum, n_tokens, outputs = loss(model, batch)
            if trainer.training and trainer.global_step + 1 == self.step:
                loss_sum = loss_sum * float("nan")
            return loss_sum, n_tokens, outputs

        pl_module.objective.loss = poisoned


def _guarded(
    make_cfg,
    *overrides: str,
    action: str = "stop",
    max_skips: int = 10,
    fault_at: int = BAD_STEP,
    defer: bool = False,
):
    """(cfg, callbacks): the run's NaN guard (``callbacks.nan_guard``), a loss made NaN at ``fault_at``.
    ``defer``: the GPU default, forced on here (the CPU fused AdamW takes ``found_inf`` too)."""
    guard = [f"callbacks.nan_guard.action={action}", f"callbacks.nan_guard.max_skips={max_skips}"]
    guard.append(f"callbacks.nan_guard.defer={str(defer).lower()}")
    return make_cfg(*NAN, *overrides, *guard), [NanLossAt(fault_at)]


# Checked at every step (a host sync), or a step later, the fused optimizer skipping the bad update itself.
DEFER = pytest.mark.parametrize("defer", [False, True], ids=["sync-each-step", "deferred"])


def _guard(trainer: L.Trainer) -> NanGuard:
    (guard,) = [c for c in trainer.callbacks if isinstance(c, NanGuard)]
    return guard


def _finite(state: dict[str, torch.Tensor]) -> bool:
    return all(torch.isfinite(t).all() for t in state.values() if t.is_floating_point())


def _logged(run_dir: Path, key: str) -> list[float]:
    values = []
    for path in sorted((run_dir / "csv").glob("version_*/metrics.csv")):
        with path.open() as file:
            values += [float(row[key]) for row in csv.DictReader(file) if row.get(key)]
    return values


@DEFER
def test_stop_names_the_step_and_the_last_good_checkpoint(make_cfg, tmp_path, defer):
    cfg, callbacks = _guarded(make_cfg, defer=defer)
    with pytest.raises(NonFiniteLossError) as stopped:
        train(cfg, run_dir=tmp_path, callbacks=callbacks)
    last = tmp_path / "checkpoints" / "last.ckpt"
    message = str(stopped.value)
    assert f"optimizer step {BAD_STEP};" in message
    assert str(last) in message
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] == BAD_STEP - 1  # written before the fault, never after it
    assert _finite(checkpoint["state_dict"])
    steps = [torch.load(p, weights_only=True)["global_step"] for p in tmp_path.glob("checkpoints/*.ckpt")]
    assert max(steps) < BAD_STEP


@DEFER
def test_stop_before_any_checkpoint_says_none_yet(make_cfg, tmp_path, defer):
    cfg, callbacks = _guarded(make_cfg, fault_at=1, defer=defer)
    with pytest.raises(NonFiniteLossError, match="step 1; .*last good checkpoint: none yet"):
        train(cfg, run_dir=tmp_path, callbacks=callbacks)
    assert not list(tmp_path.glob("checkpoints/*.ckpt"))


@DEFER
def test_skip_drops_the_update_and_trains_on(make_cfg, tmp_path, defer):
    cfg, callbacks = _guarded(make_cfg, "logger=csv", action="skip", max_skips=1, defer=defer)
    summary, objects = train(cfg, run_dir=tmp_path, callbacks=callbacks)
    assert summary["step"] == 8
    assert _guard(objects["trainer"]).skipped == 1
    late = int(defer)  # deferred: a step's skip is counted at the next step's check
    assert _logged(tmp_path, "train/skipped_steps") == [0.0] * (BAD_STEP - 1 + late) + [1.0] * (
        9 - BAD_STEP - late
    )
    assert _finite(objects["module"].state_dict())
    assert math.isfinite(summary["val_loss"]) and math.isfinite(summary["train_loss"])
    # Adam's state was left alone by the skipped step: each parameter counts 7 updates in 8 steps.
    optimizer = objects["trainer"].optimizers[0]
    assert {int(s["step"]) for s in optimizer.state.values()} == {7}
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert _finite(last["state_dict"])


@DEFER
def test_skip_stops_once_more_than_max_skips(make_cfg, tmp_path, defer):
    cfg, callbacks = _guarded(make_cfg, action="skip", max_skips=0, fault_at=1, defer=defer)
    with pytest.raises(NonFiniteLossError, match="step 1 .*1 steps skipped, more than max_skips=0"):
        train(cfg, run_dir=tmp_path, callbacks=callbacks)


# Loaded by the child Pythons (both FSDP ranks) through PYTHONPATH: the NAN_AT-th cross-entropy computed with
# gradients on (a training micro-batch; validation runs without) returns NaN.
NAN_CROSS_ENTROPY = """
import os
import torch.nn.functional as F

_cross_entropy, _calls = F.cross_entropy, [0]


def cross_entropy(*args, **kwargs):
    loss = _cross_entropy(*args, **kwargs)
    if loss.requires_grad:
        _calls[0] += 1
        if _calls[0] == int(os.environ["NAN_AT"]):
            loss = loss * float("nan")
    return loss


F.cross_entropy = cross_entropy
"""


@pytest.mark.slow
def test_deferred_stop_under_fsdp_with_two_processes(tmp_path):
    """The GPU default path under FSDP2 on 2 CPU processes: the flag is all-reduced, handed to the fused
    AdamW over sharded (DTensor) parameters as ``found_inf`` and read a step later; both ranks stop, naming
    the step, and no checkpoint holds a step at or after it."""
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(NAN_CROSS_ENTROPY)
    run_dir = tmp_path / "run"
    command = cli_command(
        *TINY,
        *NAN,
        "trainer.strategy=fsdp",
        "trainer.devices=2",
        "callbacks.nan_guard.defer=true",
        run_dir=run_dir,
        cache_dir=tmp_path / "cache",
    )
    pythonpath = f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"
    env = cli_env(HYDRA_FULL_ERROR="", PYTHONPATH=pythonpath, NAN_AT=str(BAD_STEP))
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=300)
    assert f"optimizer step {BAD_STEP};" in error_line(result)
    saved = [stored_step(path) for path in (run_dir / "checkpoints").glob("*.ckpt")]
    assert saved and max(saved) == BAD_STEP - 1  # the step-4 checkpoints, nothing after the fault
