"""Throughput through real Lightning fits on CPU, timed by a fake clock that only the work advances.

Every training micro-batch costs 100 fake seconds during warm-up and 0.5 after; every validation batch
1000. Batches are 2 sequences of 8 tokens, so a steady run does 16 tokens / 0.5 s = 32 tokens/s exactly,
and any warm-up or validation time that leaked in would change the number by orders of magnitude.
"""

from __future__ import annotations

from typing import Any

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.loggers import Logger
from torch import nn

from lightning_llm.callbacks import Throughput, throughput
from lightning_llm.flops import counted_flops_per_token
from lightning_llm.models.gpt import GPT, GPTConfig

BATCH, SEQ, VOCAB = 2, 8, 32
TOKENS = BATCH * SEQ  # per micro-batch
WARMUP_COST, STEP_COST, VAL_COST = 100.0, 0.5, 1000.0
WARMUP = 2


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch) -> FakeClock:
    fake = FakeClock()
    monkeypatch.setattr(throughput, "perf_counter", fake)
    return fake


class Recorder(Logger):
    """Keeps every perf/ metric Lightning hands its loggers, in order."""

    name, version = "recorder", 0

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[dict[str, float]] = []

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        if perf := {k: v for k, v in metrics.items() if k.startswith("perf/")}:
            self.rows.append(perf)

    def log_hyperparams(self, *args: Any, **kwargs: Any) -> None:
        pass

    def series(self, name: str) -> list[float]:
        return [row[name] for row in self.rows if name in row]


class PlainModel(nn.Module):
    """A third-party model plugin: no flops_per_token."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.net(input_ids)


class Uncopyable(PlainModel):
    def __deepcopy__(self, memo: dict) -> None:
        raise RuntimeError("cannot copy a sharded model")


class TinyLM(L.LightningModule):
    """A tiny GPT as ``.model`` (as LanguageModule holds it) whose steps advance the fake clock."""

    def __init__(self, clock: FakeClock, plain: bool = False, wrap: bool = False) -> None:
        super().__init__()
        self.clock, self.wrap = clock, wrap
        net = GPT(GPTConfig(vocab_size=VOCAB, n_layer=1, n_head=2, n_embd=16, block_size=SEQ))
        self.model = PlainModel(net) if plain else net

    def configure_model(self) -> None:
        if self.wrap:  # as FSDP or compile may leave it: a model the FLOP counter cannot copy
            self.model = Uncopyable(self.model)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        self.clock.now += WARMUP_COST if self.trainer.global_step < WARMUP else STEP_COST
        logits = self.model(batch["input_ids"])
        return F.cross_entropy(logits.flatten(0, 1), batch["labels"].flatten())

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.clock.now += VAL_COST

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


class Windows(torch.utils.data.Dataset):
    """Token windows; each one read costs ``cost`` fake seconds (data loading)."""

    def __init__(self, n: int, clock: FakeClock, cost: float = 0.0) -> None:
        self.ids = torch.randint(0, VOCAB, (n, SEQ), generator=torch.Generator().manual_seed(0))
        self.clock, self.cost = clock, cost

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        self.clock.now += self.cost
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def fit(
    clock: FakeClock,
    callback: Throughput,
    *,
    accumulate: int = 1,
    max_steps: int = 6,
    validate: bool = True,
    load_cost: float = 0.0,
    plain: bool = False,
    wrap: bool = False,
    ckpt_path: str | None = None,
) -> tuple[Recorder, L.Trainer, TinyLM]:
    recorder, module = Recorder(), TinyLM(clock, plain, wrap)
    trainer = L.Trainer(
        accelerator="cpu",
        max_steps=max_steps,
        accumulate_grad_batches=accumulate,
        log_every_n_steps=2,
        val_check_interval=4,  # micro-batches: with accumulate=3, validation lands inside a step
        limit_val_batches=1 if validate else 0,
        callbacks=[callback],
        logger=recorder,
        enable_progress_bar=False,
        enable_model_summary=False,
        enable_checkpointing=False,
    )
    train = torch.utils.data.DataLoader(Windows(200, clock, load_cost), batch_size=BATCH)
    val = torch.utils.data.DataLoader(Windows(4, clock), batch_size=BATCH)
    trainer.fit(module, train, val, ckpt_path=ckpt_path)
    return recorder, trainer, module


@pytest.mark.parametrize("accumulate", [1, 3])
def test_steady_rate_is_tokens_over_step_seconds(clock, accumulate):
    callback = Throughput(warmup_steps=WARMUP)
    recorder, trainer, _ = fit(clock, callback, accumulate=accumulate)

    steady_steps = 6 - WARMUP
    assert callback.total.tokens == steady_steps * accumulate * TOKENS  # every micro-batch counted
    assert callback.total.samples == steady_steps * accumulate * BATCH
    assert callback.total.seconds == steady_steps * accumulate * STEP_COST  # every micro-batch timed
    assert callback.tokens_per_second == TOKENS / STEP_COST == 32.0
    assert callback.samples_per_second == BATCH / STEP_COST
    # Logged every 2 optimizer steps over the steps since the last log: the first window is warm-up.
    assert recorder.series("perf/tokens_per_sec") == [TOKENS / WARMUP_COST, 32.0, 32.0]
    assert recorder.series("perf/samples_per_sec") == [BATCH / WARMUP_COST, 4.0, 4.0]
    assert clock.now > 2 * VAL_COST  # validation did run (sanity check and during training)


def test_mfu_is_flops_per_token_times_tokens_per_second_over_peak(clock):
    peak = 1e6
    callback = Throughput(warmup_steps=WARMUP, peak_flops=peak)
    recorder, _, module = fit(clock, callback, accumulate=3)

    expected = module.model.flops_per_token(SEQ) * 32.0 / peak
    assert callback.flops_per_token == module.model.flops_per_token(SEQ)
    assert callback.mfu == pytest.approx(expected, rel=1e-12)
    assert recorder.series("perf/mfu")[1:] == pytest.approx([expected, expected], rel=1e-12)
    assert callback.summary() == {
        "tokens_per_second": 32.0,
        "samples_per_second": 4.0,
        "mfu": round(expected, 4),
        "flops_per_token": module.model.flops_per_token(SEQ),
    }


def test_no_mfu_without_a_known_peak(clock):
    callback = Throughput(warmup_steps=WARMUP)  # CPU: no table entry, no override
    recorder, _, module = fit(clock, callback)

    assert recorder.series("perf/mfu") == [] and callback.mfu is None
    assert callback.summary()["mfu"] is None
    assert callback.summary()["tokens_per_second"] == 32.0
    assert callback.summary()["flops_per_token"] == module.model.flops_per_token(SEQ)


def test_all_processes_count_against_all_devices(clock, monkeypatch):
    """W processes: W times the tokens in the same seconds, and W devices' peak, so MFU is unchanged."""
    single = Throughput(warmup_steps=WARMUP, peak_flops=1e6)
    fit(clock, single)
    monkeypatch.setattr(L.Trainer, "world_size", property(lambda self: 2))  # each process sees its batch
    double = Throughput(warmup_steps=WARMUP, peak_flops=1e6)
    fit(clock, double)

    assert double.tokens_per_second == 2 * single.tokens_per_second == 64.0
    assert double.samples_per_second == 2 * single.samples_per_second == 8.0
    assert double.mfu == pytest.approx(single.mfu, rel=1e-12)
    assert double.mfu == pytest.approx(double.flops_per_token * 64.0 / (2 * 1e6), rel=1e-12)


def test_loading_between_steps_is_charged_to_the_step(clock):
    """A step's clock starts where the previous step's stopped, so reading its first batch counts (on an
    asynchronous GPU the host waits there for the previous step's kernels)."""
    callback = Throughput(warmup_steps=WARMUP)
    fit(clock, callback, validate=False, load_cost=0.125)  # 2 windows: 0.25 s a batch

    assert callback.total.seconds == (6 - WARMUP) * (STEP_COST + 0.25)
    assert callback.tokens_per_second == TOKENS / 0.75


@pytest.mark.parametrize("wrap", [False, True])
def test_a_model_without_a_formula_is_counted(clock, wrap):
    """Counted on a copy taken at setup, so also when configure_model wraps the model (FSDP, compile)."""
    callback = Throughput(warmup_steps=WARMUP, peak_flops=1e6)
    _, _, module = fit(clock, callback, plain=True, wrap=wrap)

    if wrap:
        assert isinstance(module.model, Uncopyable)
        module.model = module.model.net
    assert callback.flops_per_token == counted_flops_per_token(module.model.net, SEQ)
    assert callback.flops_per_token == pytest.approx(module.model.net.flops_per_token(SEQ), rel=0.02)
    assert callback.mfu == pytest.approx(callback.flops_per_token * 32.0 / 1e6, rel=1e-12)


def test_resume_keeps_totals_and_warms_up_again(clock, tmp_path):
    first = Throughput(warmup_steps=WARMUP)
    _, trainer, _ = fit(clock, first)
    trainer.save_checkpoint(tmp_path / "six.ckpt")

    resumed = Throughput(warmup_steps=WARMUP)
    fit(clock, resumed, max_steps=10, validate=False, ckpt_path=str(tmp_path / "six.ckpt"))

    # Steps 7-8 are this process's warm-up; 9-10 add to the 4 steady steps of the first fit.
    assert resumed.total.tokens == first.total.tokens + 2 * TOKENS == 6 * TOKENS
    assert resumed.total.seconds == first.total.seconds + 2 * STEP_COST
    assert resumed.total.flops == pytest.approx(first.total.flops * 6 / 4, rel=1e-12)
    assert resumed.tokens_per_second == 32.0


def test_a_run_within_its_warmup_has_no_steady_state(clock):
    callback = Throughput(warmup_steps=10)
    fit(clock, callback)

    summary = callback.summary()
    assert summary["tokens_per_second"] is None and summary["samples_per_second"] is None
    assert summary["mfu"] is None
