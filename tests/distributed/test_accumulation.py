"""Gradient accumulation is exact: k micro-batches of b give the same step as one batch of k*b, also when the
micro-batches hold different numbers of target tokens (padding), and the step's gradient is the gradient of
the token mean over the whole step (checked against a hand-written computation)."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from lightning_llm.models.gpt import GPT, GPTConfig
from lightning_llm.module import LanguageModule
from lightning_llm.objectives.causal_lm import IGNORE_INDEX, CausalLM, summed_cross_entropy

VOCAB = 50


def ragged_sequences(n: int, seed: int = 0) -> list[torch.Tensor]:
    """Token sequences of very different lengths, so padded micro-batches hold uneven target counts."""
    generator = torch.Generator().manual_seed(seed)
    lengths = torch.randint(3, 24, (n,), generator=generator)
    return [torch.randint(7, VOCAB, (int(length),), generator=generator) for length in lengths]


def pad_collate(sequences: list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """Right-padded causal-LM batch: labels are the inputs shifted by one, IGNORE_INDEX on padding."""
    width = max(len(s) for s in sequences) - 1
    inputs = torch.zeros(len(sequences), width, dtype=torch.long)
    labels = torch.full((len(sequences), width), IGNORE_INDEX)
    for row, sequence in enumerate(sequences):
        inputs[row, : len(sequence) - 1] = sequence[:-1]
        labels[row, : len(sequence) - 1] = sequence[1:]
    return {"input_ids": inputs, "labels": labels}


def tiny_gpt() -> torch.nn.Module:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=VOCAB, n_layer=2, n_head=2, n_embd=32, block_size=32, dropout=0.0))


class StepLosses(L.Callback):
    """The logged ``train/loss`` of every optimizer step."""

    def __init__(self) -> None:
        self.losses: list[float] = []

    def on_train_batch_end(self, trainer: L.Trainer, *args) -> None:
        if trainer.global_step > len(self.losses):  # this micro-batch ended an optimizer step
            self.losses.append(float(trainer.callback_metrics["train/loss"]))


def fit(
    sequences: list[torch.Tensor], batch_size: int, accumulate: int, steps: int, optim: dict
) -> tuple[torch.nn.Module, list[float]]:
    module = LanguageModule(
        tiny_gpt(), CausalLM(), optim=optim, scheduler={"name": "constant", "warmup_steps": 0}
    )
    losses = StepLosses()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        accumulate_grad_batches=accumulate,
        log_every_n_steps=1,  # train/loss is logged on the steps the loggers write
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[losses],
    )
    loader = DataLoader(sequences, batch_size=batch_size, shuffle=False, collate_fn=pad_collate)
    trainer.fit(module, train_dataloaders=loader)
    return module.model, losses.losses


ADAMW = {"name": "adamw", "lr": 1e-2, "weight_decay": 0.1}
SGD = {"name": "sgd", "lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.0}


# Adam divides by sqrt(v): for weights whose gradient is ~0, float rounding differences between the two
# summation orders become update differences up to ~lr, so its weights agree to 1e-4 only; SGD is linear in
# the gradient and agrees to float precision.
@pytest.mark.parametrize(("optim", "atol"), [(SGD, 1e-6), (ADAMW, 3e-4)], ids=["sgd", "adamw"])
def test_accumulated_micro_batches_equal_one_large_batch_with_uneven_padding(optim: dict, atol: float):
    sequences = ragged_sequences(48)
    counts = [
        int((pad_collate(sequences[i : i + 2])["labels"] != IGNORE_INDEX).sum()) for i in range(0, 8, 2)
    ]
    assert len(set(counts)) > 1  # the micro-batches of the first step really hold different token counts

    large, large_losses = fit(sequences, batch_size=8, accumulate=1, steps=6, optim=optim)
    micro, micro_losses = fit(sequences, batch_size=2, accumulate=4, steps=6, optim=optim)

    assert len(micro_losses) == 6
    assert micro_losses == pytest.approx(large_losses, rel=1e-5)
    for (name, p_large), p_micro in zip(large.named_parameters(), micro.parameters(), strict=True):
        torch.testing.assert_close(p_micro.detach(), p_large.detach(), rtol=0, atol=atol, msg=name)


def test_step_gradient_is_the_token_mean_over_the_whole_step():
    """One SGD step (lr 1, no momentum, no clipping) moves each weight by minus the gradient of
    sum(token losses) / tokens over all 4 micro-batches: not the mean of the micro-batch means."""
    sequences = ragged_sequences(8, seed=3)
    reference = tiny_gpt()
    loss_sum, tokens = summed_cross_entropy(
        reference(pad_collate(sequences)["input_ids"]), pad_collate(sequences)["labels"]
    )
    # One padded batch of 8 and four of 2 hold the same targets; the loss of the big batch is the reference.
    (loss_sum / tokens).backward()
    sgd = {"name": "sgd", "lr": 1.0, "momentum": 0.0, "nesterov": False, "weight_decay": 0.0}
    stepped, losses = fit(sequences, batch_size=2, accumulate=4, steps=1, optim=sgd)

    assert losses[0] == pytest.approx(float(loss_sum / tokens), rel=1e-6)
    before = tiny_gpt()
    for (name, p0), p1, ref in zip(
        before.named_parameters(), stepped.parameters(), reference.parameters(), strict=True
    ):
        torch.testing.assert_close(p0 - p1, ref.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_naive_per_micro_batch_mean_would_differ():
    """The batches above are uneven enough to matter: the mean of micro-batch means has another gradient."""
    sequences = ragged_sequences(8, seed=3)
    exact, naive = tiny_gpt(), tiny_gpt()
    batch = pad_collate(sequences)
    loss_sum, tokens = summed_cross_entropy(exact(batch["input_ids"]), batch["labels"])
    (loss_sum / tokens).backward()
    for i in range(0, 8, 2):
        micro = pad_collate(sequences[i : i + 2])
        micro_sum, micro_tokens = summed_cross_entropy(naive(micro["input_ids"]), micro["labels"])
        (micro_sum / micro_tokens / 4).backward()
    grad = torch.cat([p.grad.flatten() for p in exact.parameters()])
    naive_grad = torch.cat([p.grad.flatten() for p in naive.parameters()])
    assert (grad - naive_grad).norm() / grad.norm() > 0.05


def test_bf16_mixed_clips_with_the_fused_optimizer():
    """Lightning's mixed-precision plugin refuses to clip for a fused optimizer (it could unscale fp16
    gradients itself); under bf16 nothing is scaled, so the module clips: the step sees the clipped norm."""
    norms: list[float] = []

    def record_norm(optimizer, args, kwargs) -> None:  # after step(): the gradients it used, clipped
        grads = [p.grad for group in optimizer.param_groups for p in group["params"] if p.grad is not None]
        norms.append(float(torch.linalg.vector_norm(torch.stack([g.norm() for g in grads]))))

    class NormProbe(L.Callback):
        def on_train_start(self, trainer, pl_module) -> None:
            trainer.optimizers[0].register_step_post_hook(record_norm)

    module = LanguageModule(
        tiny_gpt(),
        CausalLM(),
        optim={**ADAMW, "fused": None},
        scheduler={"name": "constant", "warmup_steps": 0},
    )
    trainer = L.Trainer(
        accelerator="cpu",
        precision="bf16-mixed",
        gradient_clip_val=1e-3,
        max_steps=2,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[NormProbe()],
    )
    loader = DataLoader(ragged_sequences(8), batch_size=4, collate_fn=pad_collate)
    trainer.fit(module, train_dataloaders=loader)
    assert trainer.optimizers[0].defaults["fused"] is True
    assert len(norms) == 2 and all(norm <= 1e-3 * 1.01 for norm in norms)
