"""Callback plugins (``callbacks.extra``): Lightning's callbacks added by name with typed parameters. The
EMA's checkpoint holds the average, the run's final numbers are the average's, and a crashed run resumed
ends where the uninterrupted one did; bad names and values are one line before any work."""

from __future__ import annotations

import lightning as L
import pytest
import torch

from lightning_llm import config, registry
from lightning_llm.config import ConfigError
from lightning_llm.registry import PluginError
from lightning_llm.train import train
from tests.callbacks.test_early_stopping import Crash


def test_the_callbacks_are_plugins_of_their_own_kind():
    assert {"ema", "timer", "device_stats"} <= set(registry.names("callback"))
    timer = registry.build("callback", "timer", duration="00:00:01:00")
    assert isinstance(timer, L.Callback)


@pytest.mark.parametrize(
    "overrides,error,message",
    [
        (["callbacks.extra=[emma]"], PluginError, r"unknown callback 'emma'.*did you mean 'ema'"),
        (["callbacks.extra=[{name: ema, decay: 0.9, decoy: 1}]"], ConfigError, r"callbacks.extra\[0\].decoy"),
        (["callbacks.extra=[{name: ema, decay: fast}]"], ConfigError, r"callbacks.extra\[0\]"),
        (["callbacks.extra=ema"], ConfigError, r"callbacks.extra must be a list of callback names"),
        (
            ["callbacks.extra=[ema]", "trainer=fsdp"],
            ConfigError,
            r"callbacks.extra\[0\]: the ema keeps a whole",
        ),
    ],
)
def test_bad_callbacks_are_refused_by_the_config_check(make_cfg, overrides, error, message):
    with pytest.raises(error, match=message):
        config.check(make_cfg(*overrides))


@pytest.mark.parametrize(
    "name,params,message",
    [
        ("ema", {"decay": 1.5}, r"ema's decay must be in \(0, 1\), got 1.5"),
        ("timer", {"duration": "2h"}, r"timer's duration must be DD:HH:MM:SS, got '2h'"),
    ],
)
def test_values_out_of_range_are_refused_when_built(name, params, message):
    with pytest.raises(ValueError, match=message):
        registry.build("callback", name, **params)


@pytest.mark.slow
def test_an_ema_run_saves_and_scores_the_average_and_resumes_exactly(make_cfg, tmp_path):
    ema = ["callbacks.extra=[{name: ema, decay: 0.8}]", "trainer.max_steps=8"]
    plain, _ = train(make_cfg("trainer.max_steps=8"), run_dir=tmp_path / "plain")
    reference, _ = train(make_cfg(*ema), run_dir=tmp_path / "reference")
    assert reference["val_loss"] != pytest.approx(plain["val_loss"], abs=1e-6)  # the average was scored
    saved = torch.load(tmp_path / "reference" / "checkpoints" / "last.ckpt", weights_only=True)
    averaged, current = saved["state_dict"], saved["current_model_state"]
    assert any(not torch.equal(averaged[name], current[name]) for name in averaged)

    with pytest.raises(RuntimeError, match="killed"):
        train(make_cfg(*ema), run_dir=tmp_path / "run", callbacks=[Crash(step=5)])  # checkpoint at 4
    resumed, _ = train(make_cfg(*ema, "ckpt_path=auto"), run_dir=tmp_path / "run")
    assert resumed["val_loss"] == pytest.approx(reference["val_loss"], rel=1e-6)


@pytest.mark.slow
def test_a_timer_stops_the_run_with_a_checkpoint(make_cfg, tmp_path):
    summary, _ = train(
        make_cfg("trainer.max_steps=100000", "callbacks.extra=[{name: timer, duration: '00:00:00:01'}]"),
        run_dir=tmp_path,
    )
    assert 0 < summary["step"] < 100000
    saved = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert saved["global_step"] == summary["step"]
