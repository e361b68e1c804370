"""The whole path, end to end on tiny settings: config -> tokenizer -> data -> model -> fit -> run folder."""

import json
import math

import pytest
import torch

from lightning_llm.config import ConfigError
from lightning_llm.train import train

SUMMARY_KEYS = {
    "train_loss",
    "val_loss",
    "val_perplexity",
    "step",
    "tokens_per_second",
    "wall_seconds",
    "peak_memory_mb",
    "params",
}


def test_tiny_run_writes_the_run_folder(make_cfg, tmp_path):
    summary, objects = train(make_cfg(), run_dir=tmp_path)

    assert set(summary) >= SUMMARY_KEYS
    assert summary == json.loads((tmp_path / "summary.json").read_text())
    assert summary["step"] == 8
    assert summary["tokens_seen"] == 8 * 8 * 32  # steps x batch x block
    assert summary["tokens_per_second"] > 0 and summary["peak_memory_mb"] > 0
    assert summary["params"] == sum(p.numel() for p in objects["model"].parameters())
    vocab = objects["tokenizer"].vocab_size
    assert summary["val_loss"] < math.log(vocab)  # it learned something beyond uniform guessing
    assert math.isclose(summary["val_perplexity"], math.exp(summary["val_loss"]), rel_tol=1e-6)
    windows = {split: len(objects["datamodule"]._datasets[split]) for split in ("val", "test")}
    assert summary["val_tokens"] == windows["val"] * 32  # the whole split, whatever limit_val_batches says
    assert summary["test_tokens"] == min(windows["test"], 2 * 8) * 32  # trainer.limit_test_batches=2

    assert (tmp_path / "tokenizer.json").is_file()
    assert (tmp_path / "checkpoints" / "last.ckpt").is_file()
    assert any(p.name.startswith("best-") for p in (tmp_path / "checkpoints").iterdir())
    assert (tmp_path / "samples.txt").read_text().strip()
    metrics_csv = (tmp_path / "csv" / "version_0" / "metrics.csv").read_text()
    for column in ("train/loss", "train/tokens", "val/loss", "step"):
        assert column in metrics_csv.splitlines()[0]


@pytest.mark.slow
def test_checkpoint_holds_config_and_tokenizer_hash_and_loads_weights_only(make_cfg, tmp_path):
    _, objects = train(make_cfg(), run_dir=tmp_path)
    checkpoint = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert checkpoint["config"]["model"]["name"] == "gpt"
    assert checkpoint["tokenizer_fingerprint"] == objects["tokenizer"].fingerprint()
    assert checkpoint["tokens_seen"] == 8 * 8 * 32
    assert checkpoint["global_step"] == 8


@pytest.mark.slow
def test_resume_continues_from_the_checkpoint(make_cfg, tmp_path):
    """A run that ended at max_steps mid-epoch, trained further, equals one that trained that far at once:
    its last checkpoint holds the position within the epoch (it used to hold the next epoch's start, so
    the further training skipped the rest of the epoch and drew another data order)."""
    # the same learning rates whether the run was planned for 8 steps or 12; step 8 saved at the end of
    # training, not by a validation
    constant = ("scheduler=constant", "trainer.val_check_interval=5")
    train(make_cfg(*constant), run_dir=tmp_path)
    summary, _ = train(make_cfg(*constant, "ckpt_path=auto", "trainer.max_steps=12"), run_dir=tmp_path)
    assert summary["step"] == 12
    assert summary["tokens_seen"] == 12 * 8 * 32
    # the first launch's metrics are kept beside the resumed one's
    assert {p.name for p in (tmp_path / "csv").iterdir()} == {"version_0", "version_1"}
    whole, objects = train(make_cfg(*constant, "trainer.max_steps=12"), run_dir=tmp_path / "whole")
    assert objects["trainer"].num_training_batches > 12  # the 8th step was mid-epoch
    assert summary["train_loss"] == pytest.approx(whole["train_loss"], rel=1e-6)
    resumed = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    at_once = torch.load(tmp_path / "whole" / "checkpoints" / "last.ckpt", weights_only=True)["state_dict"]
    for name, weight in at_once.items():
        torch.testing.assert_close(resumed[name], weight, rtol=1e-5, atol=1e-6, msg=name)
    # launched again at its last step (a requeued job): it trains no batch, and its summary keeps the
    # model's FLOPs per token (it was rewritten with null)
    again, _ = train(make_cfg(*constant, "ckpt_path=auto", "trainer.max_steps=12"), run_dir=tmp_path)
    assert again["step"] == 12 and again["flops_per_token"] == summary["flops_per_token"] > 0


@pytest.mark.slow
def test_auto_resume_without_checkpoint_starts_fresh(make_cfg, tmp_path):
    summary, _ = train(make_cfg("ckpt_path=auto"), run_dir=tmp_path)
    assert summary["step"] == 8


def test_the_final_evaluation_honours_eval_max_batches(make_cfg, tmp_path):
    summary, _ = train(make_cfg("eval.max_batches=1", "trainer.max_steps=2"), run_dir=tmp_path)
    assert summary["val_tokens"] == summary["test_tokens"] == 1 * 8 * 32  # one batch of 8 windows of 32
    assert summary["eval_batches"] == {"val": 1, "test": 1}  # said beside the tokens
    whole, _ = train(make_cfg("eval.max_batches=100000", "trainer.max_steps=2"), run_dir=tmp_path / "whole")
    assert whole["eval_batches"] == {"val": None, "test": None}  # fewer batches than the limit: all of them
    for value, shown in (("0", "0"), ("1.5", "1.5")):
        with pytest.raises(
            ConfigError, match=f"eval.max_batches must be a positive number of batches or null, got {shown}"
        ):
            train(make_cfg(f"eval.max_batches={value}"), run_dir=tmp_path / "bad")


def test_missing_checkpoint_is_a_clear_error(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match="ckpt_path=.*no such checkpoint"):
        train(make_cfg(f"ckpt_path={tmp_path / 'nope.ckpt'}"), run_dir=tmp_path)


def test_sequence_longer_than_model_positions_is_refused(make_cfg, tmp_path):
    with pytest.raises(ConfigError, match=r"data.block_size=64 is longer than model.block_size=32"):
        train(make_cfg("data.block_size=64"), run_dir=tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("logger", ["csv", "wandb", "tensorboard", "none"])
def test_loggers(make_cfg, tmp_path, logger, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    train(make_cfg(f"logger={logger}", "trainer.max_steps=2"), run_dir=tmp_path)
    assert (tmp_path / "csv" / "version_0" / "metrics.csv").is_file()
    if logger == "wandb":
        runs = list((tmp_path / "wandb").glob("offline-run-*"))
        assert len(runs) == 1 and any(runs[0].iterdir())
    if logger == "tensorboard":
        assert list((tmp_path / "tensorboard").glob("events.out.tfevents.*"))


@pytest.mark.slow
def test_masked_lm_then_classification_fine_tune(make_cfg, tmp_path, caplog):
    """Pretrain a tiny encoder with masked LM, then fine-tune it for classification from that run."""
    encoder = [
        "model=encoder",
        "model.n_layer=1",
        "model.n_head=2",
        "tokenizer=char",
        "model.positions=learned",
    ]
    pretrain = tmp_path / "mlm"
    summary, _ = train(make_cfg(*encoder, "objective=masked_lm", "data=pydoc"), run_dir=pretrain)
    assert summary["step"] == 8 and math.isfinite(summary["val_loss"])

    classify = [*encoder, "objective=classification", "data=pydoc_topics", "metrics=[accuracy,f1]"]
    with caplog.at_level("INFO", logger="lightning_llm"):
        summary, objects = train(make_cfg(*classify, f"model.init_from={pretrain}"), run_dir=tmp_path / "cls")
    assert {"val_accuracy", "val_f1"} <= set(summary)
    assert objects["model"].config.num_classes == objects["datamodule"].num_classes == 8
    loaded = next(r.getMessage() for r in caplog.records if "loaded" in r.getMessage())
    assert "classifier.weight" in loaded.split("new:")[1]  # the head is new, the encoder was loaded
    assert (
        objects["tokenizer"].fingerprint()
        == torch.load(pretrain / "checkpoints" / "last.ckpt", weights_only=True)["tokenizer_fingerprint"]
    )


def test_seq2seq_run_scores_text_and_writes_translations(make_cfg, tmp_path):
    cfg = make_cfg(
        "model=decoder", "model.n_layer=1", "objective=seq2seq", "data=reverse_words",
        "data.num_examples=400", "metrics=[bleu,rouge]", "objective.max_new_tokens=8",
    )  # fmt: skip
    summary, _ = train(cfg, run_dir=tmp_path)
    assert 0.0 <= summary["val_bleu"] <= 1.0 and 0.0 <= summary["val_rouge"] <= 1.0
    samples = (tmp_path / "samples.txt").read_text()
    assert "source:" in samples and "prediction:" in samples and "reference:" in samples


def test_a_run_without_validation_or_test_finishes(make_cfg, tmp_path):
    """``limit_val_batches=0`` and ``limit_test_batches=0`` turn the splits off, final evaluation included."""
    cfg = make_cfg(
        "trainer.limit_val_batches=0", "trainer.limit_test_batches=0", "callbacks.samples.num_samples=0"
    )
    summary, _ = train(cfg, run_dir=tmp_path)
    assert summary["step"] == cfg.trainer.max_steps
    assert math.isnan(summary["val_loss"]) and "test_loss" not in summary
    assert math.isfinite(summary["train_loss"])


def test_fine_tuning_uses_the_runs_tokenizer_and_refuses_another_trained_one(make_cfg, tmp_path):
    from lightning_llm.parts import _tokenizer_of_run
    from lightning_llm.tokenizers import CharTokenizer

    run, other = tmp_path / "run", tmp_path / "other.json"
    (run / "checkpoints").mkdir(parents=True)
    for texts, path in ((["abc"], run / "tokenizer.json"), (["xyz"], other)):
        tokenizer = CharTokenizer()
        tokenizer.train(texts)
        tokenizer.save(path)
    fingerprint = CharTokenizer.from_file(run / "tokenizer.json").fingerprint()  # what the run trained with
    checkpoint = {"global_step": 4, "state_dict": {}, "tokenizer_fingerprint": fingerprint}
    torch.save(checkpoint, run / "checkpoints" / "last.ckpt")
    used = _tokenizer_of_run(str(run), make_cfg("tokenizer=byte_bpe"))  # untrained: the run's one is used
    assert used.encode("abc") == CharTokenizer.from_file(run / "tokenizer.json").encode("abc")
    with pytest.raises(ConfigError, match=r"tokenizer=pretrained is not the tokenizer that model.init_from"):
        _tokenizer_of_run(str(run), make_cfg("tokenizer=pretrained", f"tokenizer.path={other}"))


@pytest.mark.slow
def test_the_gradient_hooks_run_in_the_documented_order(make_cfg, tmp_path, monkeypatch):
    """NaN guard, then the accumulation rescale, then clipping: the order README's Development section and
    LanguageModule.on_before_optimizer_step state."""
    from lightning_llm.callbacks.nan_guard import NanGuard
    from lightning_llm.module import LanguageModule

    calls: list[str] = []
    for owner, hook, label in (
        (NanGuard, "on_before_optimizer_step", "nan_guard"),
        (LanguageModule, "on_before_optimizer_step", "rescale"),
        (LanguageModule, "configure_gradient_clipping", "clip"),
    ):
        original = getattr(owner, hook)

        def recorded(*args, _original=original, _label=label, **kwargs):
            calls.append(_label)
            return _original(*args, **kwargs)

        monkeypatch.setattr(owner, hook, recorded)
    train(make_cfg("trainer.max_steps=2", "trainer.accumulate_grad_batches=2"), run_dir=tmp_path)
    assert calls == ["nan_guard", "rescale", "clip"] * 2


@pytest.mark.slow
def test_fine_tuning_takes_the_architecture_of_the_checkpoint(make_cfg, tmp_path, caplog):
    """model.init_from=<run>: the model is the run's (a 1-layer encoder, whatever model.n_layer says now),
    so every weight it holds is loaded; the task's head is sized by the new data, dropout is the run's own."""
    mlm = ["model=encoder", "objective=masked_lm", "model.n_layer=1", "trainer.max_steps=2"]
    train(make_cfg(*mlm), run_dir=tmp_path / "mlm")
    overrides = ["model=encoder", "objective=classification", "data=pydoc_topics", "metrics=[accuracy]"]
    overrides += ["model.n_layer=3", "model.dropout=0.0"]
    with caplog.at_level("INFO", logger="lightning_llm"):
        _, objects = train(
            make_cfg(*overrides, f"model.init_from={tmp_path / 'mlm'}", "trainer.max_steps=2"),
            run_dir=tmp_path / "classifier",
        )
    model = objects["model"]
    assert len(model.blocks) == 1 and model.config.num_classes == 8 and model.config.dropout == 0.0
    assert "n_layer=1 (the checkpoint's" in caplog.text
    assert (
        "new: ['pooler.weight', 'pooler.bias', 'classifier.weight', 'classifier.bias']; skipped: []"
        in caplog.text
    )


@pytest.mark.slow
def test_last_ckpt_is_the_latest_state_even_when_the_val_loss_got_worse(make_cfg, tmp_path):
    """Lightning 2.6 writes save_last's last.ckpt only where a best checkpoint is written too, and not at the
    end of training; ours is the latest state after every validation and at the end, so a run whose val loss
    got worse, or whose last steps came after its last validation, resumes (and generates) from its last
    step, not from its best."""
    from lightning.pytorch import Callback, Trainer

    from lightning_llm.checkpoint import load_checkpoint

    seen = []

    class LastAfterValidation(Callback):  # reads last.ckpt as the steps after a validation start
        def on_train_batch_start(self, trainer: Trainer, module: object, *args: object) -> None:
            if trainer.global_step in (4, 8):
                seen.append(load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"])
            if trainer.global_step == 4:  # after the first validation: noise no 4 small steps undo
                noise = torch.Generator().manual_seed(0)
                with torch.no_grad():
                    for weight in module.parameters():
                        weight.add_(torch.randn(weight.shape, generator=noise) * 3.0)

    # validations at 4 and 8, then 2 more steps; the val loss gets worse between them
    cfg = make_cfg("optim.lr=1e-3", "scheduler=constant", "trainer.max_steps=10")
    train(cfg, run_dir=tmp_path, callbacks=[LastAfterValidation()])
    best = sorted((tmp_path / "checkpoints").glob("best-*.ckpt"))
    assert [load_checkpoint(path)["global_step"] for path in best] == [4]  # the val loss rose by step 8
    assert seen == [4, 8]
    assert load_checkpoint(tmp_path / "checkpoints" / "last.ckpt")["global_step"] == 10


def test_a_refused_sweep_job_is_named_by_its_number_and_folder(tmp_path, monkeypatch):
    """A sweep stops at a job its input refuses (Hydra's launchers), and the message did not say which."""
    from types import SimpleNamespace

    from hydra.core.hydra_config import HydraConfig
    from hydra.types import RunMode

    from lightning_llm.train import _which_job

    for mode, expected in ((RunMode.MULTIRUN, f"sweep job 3 ({tmp_path / '3'}): "), (RunMode.RUN, "")):
        hydra = SimpleNamespace(mode=mode, job=SimpleNamespace(num=3), runtime=SimpleNamespace())
        hydra.runtime.output_dir = str(tmp_path / "3")
        monkeypatch.setattr(HydraConfig, "get", staticmethod(lambda hydra=hydra: hydra))
        assert _which_job() == expected
