"""Resuming from a checkpoint that does not fit this run is refused before training, saying what differs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from lightning_llm.checkpoint import CheckpointError, latest_checkpoint, load_checkpoint
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


def _zero_a_weight(source: Path, target: Path) -> None:
    """``source`` with one weight's bytes zeroed in place: the archive is whole, the checksum is not."""
    weight = torch.load(source, weights_only=True)["state_dict"]["model.wte.weight"]
    raw, data = weight.numpy().tobytes(), bytearray(source.read_bytes())
    at = data.find(raw[:256])
    assert at > 0
    data[at : at + len(raw)] = bytes(len(raw))
    target.write_bytes(bytes(data))


def test_a_checkpoint_damaged_inside_a_tensor_is_refused_by_every_reader(make_cfg, trained, tmp_path_factory):
    """torch does not check the archive's CRC-32s: zeroed weights used to resume, evaluate and generate."""
    damaged = tmp_path_factory.mktemp("damaged") / "zeroed.ckpt"
    _zero_a_weight(trained / "checkpoints" / "last.ckpt", damaged)
    expected = rf"{damaged} is damaged: its entry .* does not match the checksum stored with it"
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(damaged)
    with pytest.raises(CheckpointError, match=expected):
        train(make_cfg("trainer.max_steps=8", f"ckpt_path={damaged}"), run_dir=trained)


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ([1, 2, 3], "not a checkpoint dict but a list"),
        ({"global_step": 999, "state_dict": {}}, "not a Lightning training checkpoint \\(it has no pytorch-"),
    ],
)
def test_a_file_lightning_did_not_save_is_not_resumed_from(
    make_cfg, trained, tmp_path_factory, content, expected
):
    """A ``torch.save`` of a list was an AttributeError traceback, of a dict Lightning's KeyError, also
    where ``auto`` took it for the latest checkpoint (its step 999 outranks the run's own)."""
    foreign = tmp_path_factory.mktemp("foreign") / "foreign.ckpt"
    torch.save(content, foreign)
    with pytest.raises(CheckpointError, match=f"cannot resume from {foreign}: {expected}"):
        train(make_cfg("trainer.max_steps=8", f"ckpt_path={foreign}"), run_dir=trained)
    planted = trained / "checkpoints" / "zz-planted.ckpt"  # ranked first where it has the larger step
    torch.save(content, planted)
    if isinstance(content, dict):
        assert latest_checkpoint(trained / "checkpoints") == planted
        with pytest.raises(CheckpointError, match=f"cannot resume from {planted}: {expected}"):
            train(make_cfg("trainer.max_steps=8", "ckpt_path=auto"), run_dir=trained)


def test_a_max_steps_the_checkpoint_has_passed_is_refused(make_cfg, trained):
    """It trained nothing and rewrote the run's summary, exit 0."""
    summary = (trained / "summary.json").read_text()
    with pytest.raises(CheckpointError, match=r"is at step 4, past trainer.max_steps=3: nothing to train"):
        train(make_cfg("trainer.max_steps=3", "ckpt_path=auto"), run_dir=trained)
    assert (trained / "summary.json").read_text() == summary


def test_another_task_is_named_before_what_it_changes(make_cfg, tmp_path):
    """A masked-LM run resumed as a classifier was told to take the run's tokenizer, then, doing so, that
    model.num_classes differs: the objective it changed is what to name."""
    train(make_cfg("model=encoder", "objective=masked_lm", "trainer.max_steps=4"), run_dir=tmp_path)
    classify = ("model=encoder", "objective=classification", "trainer.max_steps=8", "ckpt_path=auto")
    with pytest.raises(CheckpointError, match=r"another task: objective=masked_lm there, objective=classif"):
        train(make_cfg(*classify), run_dir=tmp_path)


def test_a_fine_tuning_resumes_whatever_model_settings_its_source_has(make_cfg, tmp_path):
    """The early resume check (before Hydra) compared the command line's model.* with the checkpoint's, but a
    fine-tuning's model is its source's: one from a run with model.bias=true (or any Hugging Face folder)
    could never be resumed. Its init_from is recorded absolute, for an adapters-only run loaded elsewhere."""
    from lightning_llm.run_folder import check_resume_early

    train(make_cfg("trainer.max_steps=2", "model.bias=true"), run_dir=tmp_path / "source")
    fine = ("trainer.max_steps=2", f"model.init_from={tmp_path / 'source'}")
    train(make_cfg(*fine), run_dir=tmp_path / "fine")
    check_resume_early(make_cfg(*fine, "ckpt_path=auto", "trainer.max_steps=4"), tmp_path / "fine")
    summary, _ = train(make_cfg(*fine, "ckpt_path=auto", "trainer.max_steps=4"), run_dir=tmp_path / "fine")
    assert summary["step"] == 4
    with pytest.raises(CheckpointError, match=r"holds another model: model.bias=True there, False here"):
        check_resume_early(make_cfg("ckpt_path=auto", "trainer.max_steps=6"), tmp_path / "fine")


def test_a_fine_tuning_of_another_model_kind_says_the_model_is_its_sources(make_cfg, tmp_path):
    """model=decoder model.init_from=<an encoder run> was refused for model.attn_dropout, a key the user never
    gave (the decoder's dropout setting carried over to the encoder), then for an objective that did not fit a
    model the user never chose."""
    train(make_cfg("model=encoder", "objective=masked_lm", "trainer.max_steps=2"), run_dir=tmp_path / "mlm")
    given = (
        "model=decoder",
        "objective=seq2seq",
        "data=reverse_words",
        f"model.init_from={tmp_path / 'mlm'}",
    )
    with pytest.raises(
        ConfigError,
        match=r"objective=seq2seq does not fit model=encoder; .*; model=encoder is "
        r"what model.init_from=\S+mlm holds",
    ):
        train(make_cfg(*given, "trainer.max_steps=2"), run_dir=tmp_path / "fine")


def test_a_fine_tuning_whose_source_is_gone_resumes_from_its_own_checkpoint(make_cfg, tmp_path):
    """Its checkpoint holds every weight and its folder the tokenizer, but every launch read the source
    first: once that was moved, the run could not be continued ("no such run folder")."""
    constant = ("scheduler=constant", "trainer.val_check_interval=5")
    train(make_cfg(*constant, "trainer.max_steps=2"), run_dir=tmp_path / "source")
    fine = (*constant, f"model.init_from={tmp_path / 'source'}")
    whole, _ = train(make_cfg(*fine, "trainer.max_steps=6"), run_dir=tmp_path / "whole")
    train(make_cfg(*fine, "trainer.max_steps=3"), run_dir=tmp_path / "fine")
    (tmp_path / "source").rename(tmp_path / "moved")
    resumed, _ = train(make_cfg(*fine, "trainer.max_steps=6", "ckpt_path=auto"), run_dir=tmp_path / "fine")
    assert resumed["step"] == 6 and resumed["train_loss"] == pytest.approx(whole["train_loss"], rel=1e-6)
    with pytest.raises(FileNotFoundError, match="no such run folder or checkpoint file"):  # fresh: needed
        train(make_cfg(*fine, "trainer.max_steps=2"), run_dir=tmp_path / "fresh")


def test_an_adapters_only_fine_tuning_whose_base_is_gone_is_refused_naming_it(make_cfg, tmp_path):
    train(make_cfg("trainer.max_steps=2"), run_dir=tmp_path / "base")
    lora = (f"model.init_from={tmp_path / 'base'}", "model.lora.rank=2", "model.lora.adapters_only=true")
    train(make_cfg(*lora, "trainer.max_steps=2"), run_dir=tmp_path / "lora")
    (tmp_path / "base").rename(tmp_path / "moved")
    with pytest.raises(ConfigError, match=r"hold its LoRA adapters only .*: resuming needs that base model"):
        train(make_cfg(*lora, "trainer.max_steps=4", "ckpt_path=auto"), run_dir=tmp_path / "lora")
