"""FLOPs per token (the models' formulas against a counter) and the device peak table behind MFU."""

import math

import pytest
import torch
from torch import nn

from lightning_llm import flops
from lightning_llm.flops import (
    DEVICE_PEAK_FLOPS,
    counted_flops_per_token,
    device_peak_flops,
    flops_per_token,
    meta_copy,
    precision_dtype,
)
from lightning_llm.models.gpt import GPT, GPTConfig

SHAPES = [
    {"n_layer": 2, "n_head": 4, "n_embd": 64, "block_size": 64},
    {"n_layer": 3, "n_head": 4, "n_embd": 128, "block_size": 128, "positions": "rotary", "mlp": "swiglu"},
    {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 32, "tie_embeddings": False, "bias": True},
]


class Plugin(nn.Module):
    """A third-party model: no flops_per_token, and its own idea of what forward returns."""

    def __init__(self, net: nn.Module, output: str = "tensor") -> None:
        super().__init__()
        self.net, self.output = net, output

    def forward(self, input_ids: torch.Tensor) -> object:
        logits = self.net(input_ids)
        forms = {"tensor": logits, "tuple": (logits, None), "dict": {"loss": None, "logits": logits}}
        return forms[self.output]


@pytest.mark.parametrize("shape", SHAPES)
def test_counter_agrees_with_the_gpt_formula(shape):
    model = GPT(GPTConfig(vocab_size=100, **shape))
    seq_len = shape["block_size"]
    counted = counted_flops_per_token(model, seq_len)
    assert counted == pytest.approx(model.flops_per_token(seq_len), rel=0.02)
    # Exactly where they differ: norm weights and biases are in N (6 N) but do no matmul, so the counter
    # leaves them out. Embedding lookups are free in both (a tied table is counted once, as the head).
    no_matmul = sum(p.numel() for p in model.parameters() if p.dim() < 2)
    assert counted == model.flops_per_token(seq_len) - 6 * no_matmul


@pytest.mark.parametrize("shape", SHAPES[:2])
def test_counter_counts_attention_matmuls(shape):
    """Per token, attention (scores and weighted sum, forward and backward) grows by 12 L C per extra
    position, exactly the formula's second term, causal masking's savings not subtracted in either."""
    model, half = GPT(GPTConfig(vocab_size=100, **shape)), shape["block_size"] // 2
    growth = counted_flops_per_token(model, 2 * half) - counted_flops_per_token(model, half)
    assert growth == 12 * shape["n_layer"] * shape["n_embd"] * half


def test_flops_per_token_asks_the_model_first_then_counts():
    model = GPT(GPTConfig(vocab_size=100, **SHAPES[0]))
    assert flops_per_token(model, 64) == model.flops_per_token(64)
    assert flops_per_token(Plugin(model), 64) == counted_flops_per_token(model, 64)


@pytest.mark.parametrize("output", ["tuple", "dict"])
def test_counter_finds_the_logits_in_any_output(output):
    model = GPT(GPTConfig(vocab_size=100, **SHAPES[0]))
    assert counted_flops_per_token(Plugin(model, output), 32) == counted_flops_per_token(model, 32)


def test_counting_leaves_the_model_untouched():
    model = GPT(GPTConfig(vocab_size=100, **SHAPES[0]))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    counted_flops_per_token(model, 64)
    assert all(p.device.type == "cpu" and p.grad is None for p in model.parameters())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_meta_copy_keeps_tied_weights_and_copies_no_data():
    model = GPT(GPTConfig(vocab_size=100, **SHAPES[0]))
    copy = meta_copy(model)
    assert copy.lm_head.weight is copy.wte.weight  # tied stays tied: one head matmul, not two tables
    assert {t.device.type for t in [*copy.parameters(), *copy.buffers()]} == {"meta"}
    assert model.wte.weight.device.type == "cpu"


@pytest.mark.parametrize(
    ("precision", "dtype"),
    [("bf16-mixed", "bf16"), ("bf16-true", "bf16"), ("16-mixed", "fp16"), ("16-true", "fp16"),
     ("32-true", "fp32"), ("32", "fp32"), ("64-true", None), ("transformer-engine", None)],
)  # fmt: skip
def test_precision_picks_the_matmul_dtype(precision, dtype):
    assert precision_dtype(precision) == dtype


@pytest.fixture
def fake_gpu(monkeypatch):
    """Make device_peak_flops see a GPU of the given name and compute capability."""

    def use(name: str, capability: tuple[int, int] = (9, 0)) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_name", lambda device=None: name)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: capability)

    return use


@pytest.fixture
def tf32():
    """Toggle TF32 for fp32 matmuls through the public API, restoring the setting afterwards."""
    saved = torch.get_float32_matmul_precision()
    yield lambda on: torch.set_float32_matmul_precision("high" if on else "highest")
    torch.set_float32_matmul_precision(saved)


CUDA = torch.device("cuda", 0)


@pytest.mark.parametrize(
    ("name", "precision", "tflops"),
    [
        ("NVIDIA H100 80GB HBM3", "bf16-mixed", 989.4),
        ("NVIDIA H100 PCIe", "16-mixed", 756),
        ("NVIDIA H100 NVL", "bf16-true", 835.5),
        ("NVIDIA H200", "bf16-mixed", 989.4),
        ("NVIDIA A100-SXM4-40GB", "bf16-mixed", 312),
        ("NVIDIA A100 80GB PCIe", "16-mixed", 312),
        ("NVIDIA A10G", "bf16-mixed", 125),
        ("NVIDIA L4", "bf16-mixed", 121),
        ("NVIDIA L40S", "bf16-mixed", 362.05),
        ("Tesla V100-SXM2-16GB", "16-mixed", 125),
        ("Tesla V100-PCIE-32GB", "16-mixed", 112),
        ("NVIDIA GeForce RTX 4090", "bf16-mixed", 165.2),
        ("NVIDIA GeForce RTX 3090", "16-mixed", 71),
        ("AMD Instinct MI300X", "bf16-mixed", 1307.4),
    ],
)
def test_device_names_map_to_dense_datasheet_peaks(fake_gpu, name, precision, tflops):
    fake_gpu(name)
    assert device_peak_flops(CUDA, precision) == pytest.approx(tflops * 1e12)


@pytest.mark.parametrize(
    ("name", "precision"),
    [
        ("NVIDIA GeForce RTX 3090 Ti", "bf16-mixed"),  # a different card, not in the table
        ("NVIDIA L40", "bf16-mixed"),  # not an L4, not an L40S
        ("Tesla V100-SXM2-16GB", "bf16-mixed"),  # no bf16 tensor cores
        ("NVIDIA H100 80GB HBM3", "64-true"),
        ("Some Future Accelerator", "bf16-mixed"),
    ],
)
def test_unknown_device_or_dtype_has_no_peak(fake_gpu, name, precision):
    fake_gpu(name)
    assert device_peak_flops(CUDA, precision) is None


def test_cpu_has_no_peak():
    assert device_peak_flops(torch.device("cpu"), "bf16-mixed") is None
    assert device_peak_flops(torch.device("cpu"), "32-true") is None


def test_fp32_counts_as_tf32_only_when_allowed_and_on_ampere_or_later(fake_gpu, tf32):
    fake_gpu("NVIDIA A100-SXM4-80GB", (8, 0))
    tf32(False)
    assert device_peak_flops(CUDA, "32-true") == pytest.approx(19.5e12)
    tf32(True)
    assert flops._tf32_enabled()
    assert device_peak_flops(CUDA, "32-true") == pytest.approx(156e12)
    fake_gpu("Tesla V100-SXM2-16GB", (7, 0))  # Volta has no TF32, whatever the flag says
    assert device_peak_flops(CUDA, "32-true") == pytest.approx(15.7e12)


@pytest.mark.parametrize("device", [k for k, v in DEVICE_PEAK_FLOPS.items() if "tf32" in v])
def test_table_holds_dense_numbers(device):
    """Dense tensor-core rates keep TF32 at half of BF16 on every listed part; a sparse figure (2x)
    entered for one of the two breaks the ratio."""
    peaks = DEVICE_PEAK_FLOPS[device]
    assert peaks["bf16"] == peaks["fp16"]
    assert math.isclose(peaks["tf32"] / peaks["bf16"], 0.5, rel_tol=0.02)
    assert peaks["fp32"] <= peaks["tf32"]
