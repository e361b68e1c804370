"""LoRA: the adapted model starts as the base model, only adapters (and task heads) train, and merging
gives the adapted model's outputs with no adapter left; end to end from a Hugging Face folder."""

from __future__ import annotations

import json
import subprocess
import sys

import lightning as L
import pytest
import torch

from lightning_llm.config import LoraSettings
from lightning_llm.models.encoder import Encoder, EncoderConfig
from lightning_llm.models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig
from lightning_llm.models.gpt import GPT, GPTConfig
from lightning_llm.models.lora import LoRALinear, apply_lora, lora_parameters, merge_lora, merged_state
from lightning_llm.optim import param_groups

VOCAB = 64


def gpt() -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, block_size=16)).eval()


def nudge_adapters(model: torch.nn.Module) -> None:
    with torch.no_grad():
        for parameter in lora_parameters(model).values():
            parameter.add_(0.05 * torch.randn_like(parameter))


def test_adapters_start_at_the_base_model_and_merge_into_it():
    model, ids = gpt(), torch.randint(0, VOCAB, (2, 16), generator=torch.Generator().manual_seed(1))
    base = model(ids)
    names = set(model.state_dict())
    adapted = apply_lora(model, LoraSettings(rank=4, alpha=8, targets=["c_attn", "c_fc"]))
    assert len(adapted) == 4 and all(isinstance(model.get_submodule(n), LoRALinear) for n in adapted)
    assert torch.equal(model(ids), base)  # B starts at zero
    assert names < set(model.state_dict())  # base weights keep their names; the adapters are extra
    nudge_adapters(model)
    tuned = model(ids)
    assert (tuned - base).abs().max() > 1e-3
    state = {name: value.clone() for name, value in model.state_dict().items()}  # merging writes in place
    assert merge_lora(model) == 4 and not lora_parameters(model)
    assert set(model.state_dict()) == names and (model(ids) - tuned).abs().max() < 1e-5
    fresh = gpt()
    fresh.load_state_dict(merged_state(state, scaling=8 / 4))  # the same fold, on a checkpoint's tensors
    assert (fresh(ids) - tuned).abs().max() < 1e-5


def test_only_adapters_train_and_the_optimizer_sees_only_them():
    model = gpt()
    apply_lora(model, LoraSettings(rank=2, targets=["c_attn", "c_proj", "c_fc"]))
    trainable = {name for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == set(lora_parameters(model))
    rank2 = sum(p.numel() for p in lora_parameters(model).values())
    assert rank2 == 2 * 2 * ((32 + 96) + (32 + 32) + (32 + 128) + (128 + 32))  # per layer: r x (in + out)
    seen = [p for group in param_groups(model) for p in group["params"]]
    assert {id(p) for p in seen} == {id(p) for p in lora_parameters(model).values()}


def test_cross_attention_uses_the_adapted_weight():
    torch.manual_seed(0)
    config = EncoderDecoderConfig(vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=32, block_size=16)
    model = EncoderDecoder(config).eval()
    apply_lora(model, LoraSettings(rank=4, targets=["c_attn"]))
    nudge_adapters(model)
    source = torch.randint(3, VOCAB, (2, 10))
    mask = torch.ones_like(source, dtype=torch.bool)
    target = torch.randint(3, VOCAB, (2, 6))
    tuned = model(source, mask, target)
    merge_lora(model)
    assert (model(source, mask, target) - tuned).abs().max() < 1e-5


def test_a_target_that_names_no_layer_is_refused_with_the_names_there_are():
    with pytest.raises(
        ValueError, match=r"'q_proj' names no linear layer of this model; its linear layers: c_attn"
    ):
        apply_lora(gpt(), LoraSettings(rank=4, targets=["q_proj"]))


@pytest.mark.parametrize(
    ("model", "target", "expected"),
    [  # each trained: then its merged export held a head unlike its tied embedding, or the adapter was
        # never used (the loss in chunks reads the head's weight), or backward had nothing to differentiate
        (gpt, "lm_head", "names lm_head, the model's output head, whose weight its loss in chunks reads"),
        (
            lambda: EncoderDecoder(
                EncoderDecoderConfig(vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=32, block_size=8)
            ),
            "lm_head",
            "names lm_head, the model's output head",
        ),
        (
            lambda: Encoder(EncoderConfig(vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=32, block_size=8)),
            "decoder",
            "names mlm_head.decoder, the model's output head",
        ),
    ],
)
def test_an_output_head_is_refused_as_a_target(model, target, expected):
    with pytest.raises(ValueError, match=f"model.lora.targets: '{target}' {expected}"):
        apply_lora(model(), LoraSettings(rank=4, targets=["c_attn", target]))


def test_a_rank_over_its_layers_is_refused():
    """rank=5000 on 32-wide layers trained 98% of the weights as "adapters", with no word."""
    with pytest.raises(ValueError, match=r"model.lora.rank=33 is over the rank of blocks.0.attn.c_attn \(32"):
        apply_lora(gpt(), LoraSettings(rank=33, targets=["c_attn"]))
    apply_lora(gpt(), LoraSettings(rank=32, targets=["c_attn"]))


def test_a_weight_tied_to_another_is_refused_as_a_target():
    """A layer outside the output heads whose weight another holds too: a merge would change both."""
    model = gpt()
    model.extra = torch.nn.Linear(32, VOCAB, bias=False)
    model.extra.weight = model.wte.weight
    with pytest.raises(ValueError, match=r"'extra' names extra, whose weight is tied"):
        apply_lora(model, LoraSettings(rank=4, targets=["extra"]))


def test_lora_settings_are_checked_before_any_work(make_cfg):
    from lightning_llm import config
    from lightning_llm.config import ConfigError

    with pytest.raises(ConfigError, match="model.lora.rank is set but model.init_from is not"):
        config.check(make_cfg("model.lora.rank=4"))
    with pytest.raises(ConfigError, match="model.lora.targets is empty"):
        config.check(make_cfg("model.lora.rank=4", "model.lora.targets=[]", "model.init_from=run"))
    with pytest.raises(ConfigError, match=r"model.lora.dropout=1.5: must be a number in \[0, 1\)"):
        config.check(make_cfg("model.lora.dropout=1.5"))


def test_task_heads_train_beside_the_adapters(make_cfg):
    from lightning_llm.parts import _adapt

    torch.manual_seed(0)
    model = Encoder(
        EncoderConfig(vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=32, block_size=16, num_classes=3)
    )
    _adapt(model, LoraSettings(rank=2, targets=["c_attn"]))
    trainable = {name.split(".", 1)[0] for name, p in model.named_parameters() if p.requires_grad}
    assert trainable == {"blocks", "pooler", "classifier"}


@pytest.mark.slow
def test_lora_fine_tunes_a_hugging_face_gpt2_and_exports_merged(make_cfg, tmp_path):
    transformers = pytest.importorskip("transformers")
    from lightning_llm.checkpoint import load_run
    from lightning_llm.evaluate import evaluate
    from lightning_llm.train import train
    from tests.test_huggingface import byte_level_tokenizer

    folder = tmp_path / "gpt2"
    backend = byte_level_tokenizer()
    transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>").save_pretrained(
        folder
    )
    shape = dict(n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=0, eos_token_id=0)
    config = transformers.GPT2Config(vocab_size=backend.get_vocab_size(), **shape)
    torch.manual_seed(0)
    reference = transformers.GPT2LMHeadModel(config)
    with torch.no_grad():  # embeddings large enough for the frozen head to express a peaked distribution
        reference.transformer.wte.weight.mul_(20)
    reference.save_pretrained(folder)
    data = ["data.block_size=32", "trainer.limit_val_batches=4"]  # evaluate scores 4 batches, as the run's
    before = evaluate(str(folder), data)["val_loss"]
    data.append(
        "eval.max_batches=4"
    )  # final evaluation does (evaluate refuses eval.*, which it does not use)
    lora = ["model.lora.rank=4", "model.lora.alpha=16", "optim.lr=1e-2", "trainer.max_steps=150"]
    summary, objects = train(make_cfg(*data, *lora, f"model.init_from={folder}"), run_dir=tmp_path / "run")
    model = objects["model"]
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert trainable == sum(p.numel() for p in lora_parameters(model).values())
    assert trainable < 0.1 * summary["params"] and summary["val_loss"] < before - 1  # it learned, cheaply

    def export(*flags: str) -> subprocess.CompletedProcess:
        command = [sys.executable, "-m", "lightning_llm.export", str(tmp_path / "run"), *flags]
        return subprocess.run(command, capture_output=True, text=True, timeout=120)

    refused = export("--out", str(tmp_path / "refused"))
    assert refused.returncode == 2 and "--merge-lora" in refused.stderr
    exported = export("--out", str(tmp_path / "merged"), "--merge-lora")
    assert exported.returncode == 0, exported.stderr[-2000:]
    loaded = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "merged").eval()
    ids = torch.randint(0, config.vocab_size, (2, 24), generator=torch.Generator().manual_seed(1))
    model, _, _ = load_run(tmp_path / "run")  # the run's last checkpoint, its adapters merged
    assert not lora_parameters(model)
    with torch.no_grad():
        assert (loaded(ids).logits - model(ids)[..., : loaded.config.vocab_size]).abs().max() < 1e-4
    assert json.loads((tmp_path / "merged" / "config.json").read_text())["n_layer"] == 2


class StopAtFirstValidation(L.Callback):
    """Ends the run after its first validation (and the checkpoint written there), as a preemption would."""

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        trainer.should_stop = True


@pytest.mark.slow
def test_adapters_only_checkpoints_hold_the_adapters_and_load_and_resume_as_full_ones(make_cfg, tmp_path):
    """A LoRA run with model.lora.adapters_only: its checkpoints hold only the adapters (and a fingerprint of
    the base); stopped and resumed, it ends with the weights of an uninterrupted run with full checkpoints
    (load_run reads the base again); a base that changed is refused."""
    from lightning_llm.checkpoint import CheckpointError, find_checkpoint, load_checkpoint, load_run
    from lightning_llm.train import train

    train(make_cfg("trainer.max_steps=2"), run_dir=tmp_path / "base")
    lora = [
        f"model.init_from={tmp_path / 'base'}",
        "model.lora.rank=2",
        "optim.lr=1e-2",
        "trainer.max_steps=8",
    ]
    train(make_cfg(*lora), run_dir=tmp_path / "full")
    small = [*lora, "model.lora.adapters_only=true"]
    train(make_cfg(*small), run_dir=tmp_path / "small", callbacks=[StopAtFirstValidation()])
    checkpoint = load_checkpoint(find_checkpoint(tmp_path / "small"))
    assert checkpoint["global_step"] == 4
    assert checkpoint["state_dict"] and all(
        k.endswith(("lora_a", "lora_b")) for k in checkpoint["state_dict"]
    )
    train(make_cfg(*small, "ckpt_path=auto"), run_dir=tmp_path / "small")

    full, _, _ = load_run(tmp_path / "full")
    resumed, _, _ = load_run(tmp_path / "small")
    for (name, expected), (_, got) in zip(
        full.state_dict().items(), resumed.state_dict().items(), strict=True
    ):
        torch.testing.assert_close(got, expected, rtol=0, atol=0, msg=name)

    path = find_checkpoint(tmp_path / "small")
    checkpoint = load_checkpoint(path)
    checkpoint["frozen_fingerprint"] = "0" * 64  # as if the base had been trained further since
    torch.save(checkpoint, path)
    with pytest.raises(CheckpointError, match="other base weights"):
        load_run(tmp_path / "small")
