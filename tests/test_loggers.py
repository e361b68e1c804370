"""A run folder keeps one W&B run id: a resumed launch logs into the same W&B run."""

from __future__ import annotations

import re

import pytest
from omegaconf import read_write

from lightning_llm.loggers import WANDB_ID_FILE, wandb_run_id
from lightning_llm.train import train
from tests.test_scale_config import multirun_job  # noqa: F401 - a fixture


def test_wandb_run_id_is_made_once_per_run_folder(tmp_path):
    first = wandb_run_id(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{8}", first)
    assert wandb_run_id(tmp_path) == first
    assert (tmp_path / WANDB_ID_FILE).read_text().strip() == first
    assert wandb_run_id(tmp_path / "other") != first


@pytest.mark.slow
def test_resumed_run_continues_its_wandb_run(make_cfg, tmp_path, capfd):
    train(make_cfg("logger=wandb", "trainer.max_steps=4"), run_dir=tmp_path)
    assert "anonymous" not in capfd.readouterr().err  # wandb's warning about Lightning's anonymous=None
    train(make_cfg("logger=wandb", "trainer.max_steps=8", "ckpt_path=auto"), run_dir=tmp_path)
    # W&B names an offline run folder offline-run-<start time>-<run id>: both launches used the folder's id
    # (two folders when the launches start in different seconds; in the same second, W&B adds "-1" to the
    # second's name).
    runs = sorted((tmp_path / "wandb").glob("offline-run-*"))
    ids = {re.fullmatch(r"offline-run-\d{8}_\d{6}-(\w+?)(-\d+)?", run.name)[1] for run in runs}
    assert runs and ids == {wandb_run_id(tmp_path)}, [run.name for run in runs]


def test_jobs_of_a_sweep_share_a_wandb_group_and_carry_their_overrides(
    multirun_job,  # noqa: F811
    tmp_path,
):
    from hydra.core.hydra_config import HydraConfig

    from lightning_llm.loggers import wandb_settings

    with read_write(HydraConfig.get()):
        HydraConfig.get().sweep.dir = str(tmp_path / "multirun" / "2026-11-23_01-00-00")
    captured = wandb_settings({"name": "wandb", "tags": ["mine"]}, multirun_job)
    assert captured["group"] == "2026-11-23_01-00-00"
    assert captured["tags"] == ["mine", "optim.lr=3e-4", "trainer.devices=2"]
    assert captured["name"] == "2026-11-23_01-00-00/3"


@pytest.mark.parametrize("content", [b"ab/../../../../tmp/x\n", b"\xff\xfe\n", b"", b"x" * 10_000])
def test_a_run_id_file_that_holds_no_run_id_is_named(tmp_path, content):
    """W&B would refuse it with a traceback (or take a path); the folder is the user's to fix."""
    (tmp_path / WANDB_ID_FILE).write_bytes(content)
    with pytest.raises(ValueError, match=rf"{WANDB_ID_FILE}: holds .*, not a W&B run id"):
        wandb_run_id(tmp_path)
