"""Resuming from a checkpoint that does not fit this run is refused before training, saying what differs."""

from __future__ import annotations

import pytest

from lightning_llm.checkpoint import CheckpointError
from lightning_llm.config import ConfigError
from lightning_llm.train import train


@pytest.fixture
def trained(make_cfg, tmp_path):
    train(make_cfg("trainer.max_steps=4"), run_dir=tmp_path)
    return tmp_path


def test_another_model_shape_is_refused_naming_the_keys(make_cfg, trained):
    with pytest.raises(CheckpointError, match=r"holds another model: model.n_layer=2 there, 3 here"):
        train(make_cfg("trainer.max_steps=8", "ckpt_path=auto", "model.n_layer=3"), run_dir=trained)


def test_another_tokenizer_is_refused(make_cfg, trained):
    with pytest.raises(CheckpointError, match=r"was trained with another tokenizer"):
        other = ["tokenizer=byte_bpe", "tokenizer.vocab_size=300"]
        train(make_cfg("trainer.max_steps=8", "ckpt_path=auto", *other), run_dir=trained)


def test_a_truncated_checkpoint_is_refused(make_cfg, trained):
    last = trained / "checkpoints" / "last.ckpt"
    damaged = trained / "damaged.ckpt"
    damaged.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
    with pytest.raises(ConfigError, match=r"ckpt_path=.*damaged.ckpt: not a whole checkpoint file"):
        train(make_cfg("trainer.max_steps=8", f"ckpt_path={damaged}"), run_dir=trained)


def test_the_same_settings_resume(make_cfg, trained):
    summary, _ = train(make_cfg("trainer.max_steps=6", "ckpt_path=auto"), run_dir=trained)
    assert summary["step"] == 6
