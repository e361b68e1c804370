"""FLOPs a model spends per training token, and the peak FLOP/s of the accelerator it runs on (for MFU).

Model FLOPs utilisation (PaLM, Chowdhery et al. 2022, appendix B) is the FLOP/s a run achieves, counting
only the model's own arithmetic (no recomputation), divided by the hardware's peak. Both halves live here:
``flops_per_token`` asks the model (or counts once on a meta-device copy), ``device_peak_flops`` looks the
device up in a table of vendor datasheet numbers. An unknown device gives None: MFU is then left out
rather than made up.

Why not Lightning's ``get_available_flops``: its table (lightning 2.6) gives the H100 NVL's dense figure of
the two-GPU pair (so MFU would read half), finds an H200 only when its name says "sxm1" or "nvl1" (a plain
"NVIDIA H200" gets None), and has no GH200, L40S or MI300X. This table is per device, dense, with the
datasheet each number comes from.
``counted_flops_per_token`` uses torch's ``FlopCounterMode`` (what Lightning's ``measure_flops`` wraps).
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

__all__ = [
    "DEVICE_PEAK_FLOPS",
    "counted_flops_per_token",
    "device_peak_flops",
    "flops_per_token",
    "precision_dtype",
]

_T = 1e12  # the datasheets give TFLOP/s

# Dense peak FLOP/s per matmul dtype. Datasheets print the tensor-core numbers "with sparsity" (2:4
# structured sparsity, marked *) beside or instead of the dense ones; training is dense, so every figure
# here is the dense one (half the starred figure). fp32 is the non-tensor-core rate; tf32 is what fp32
# matmuls get on Ampere and later when TF32 is allowed. bf16/fp16 are with fp32 accumulation (what
# PyTorch uses), which on GeForce cards is half the fp16-accumulate rate.
DEVICE_PEAK_FLOPS: dict[str, dict[str, float]] = {
    # NVIDIA H100 Tensor Core GPU datasheet and H100 whitepaper (SXM5: BF16 1,979* TFLOPS, TF32 989*).
    "H100 SXM": {"bf16": 989.4 * _T, "fp16": 989.4 * _T, "tf32": 494.7 * _T, "fp32": 67 * _T},
    # Same datasheet, PCIe column: BF16 1,513*, TF32 756*.
    "H100 PCIe": {"bf16": 756 * _T, "fp16": 756 * _T, "tf32": 378 * _T, "fp32": 51 * _T},
    # Same datasheet, NVL column (per GPU): BF16 1,671*, TF32 835*.
    "H100 NVL": {"bf16": 835.5 * _T, "fp16": 835.5 * _T, "tf32": 417.5 * _T, "fp32": 60 * _T},
    # NVIDIA H200 datasheet, SXM column: the H100 SXM's compute (BF16 1,979*, TF32 989*) with more memory.
    "H200": {"bf16": 989.4 * _T, "fp16": 989.4 * _T, "tf32": 494.7 * _T, "fp32": 67 * _T},
    # Same datasheet, NVL column: BF16 1,671*, TF32 835*.
    "H200 NVL": {"bf16": 835.5 * _T, "fp16": 835.5 * _T, "tf32": 417.5 * _T, "fp32": 60 * _T},
    # NVIDIA GH200 Grace Hopper datasheet: its GPU is an H100 SXM (BF16 1,979*, TF32 989*).
    "GH200": {"bf16": 989.4 * _T, "fp16": 989.4 * _T, "tf32": 494.7 * _T, "fp32": 67 * _T},
    # NVIDIA A100 datasheet (40 GB and 80 GB, SXM and PCIe alike): BF16 312 | 624*, TF32 156 | 312*.
    "A100": {"bf16": 312 * _T, "fp16": 312 * _T, "tf32": 156 * _T, "fp32": 19.5 * _T},
    # AWS publishes no tensor-core figures for its A10G; these are the NVIDIA A10 datasheet's
    # (BF16 125 | 250*, TF32 62.5 | 125*). If the A10G's clocks are lower, MFU reads low, never high.
    "A10G": {"bf16": 125 * _T, "fp16": 125 * _T, "tf32": 62.5 * _T, "fp32": 31.2 * _T},
    # NVIDIA L4 datasheet: BF16 242*, TF32 120*, FP32 30.3.
    "L4": {"bf16": 121 * _T, "fp16": 121 * _T, "tf32": 60 * _T, "fp32": 30.3 * _T},
    # NVIDIA L40S datasheet: BF16 362.05 | 733*, TF32 183 | 366*, FP32 91.6.
    "L40S": {"bf16": 362.05 * _T, "fp16": 362.05 * _T, "tf32": 183 * _T, "fp32": 91.6 * _T},
    # NVIDIA V100 datasheet: tensor cores do fp16 only (125 SXM2, 112 PCIe, 130 V100S); no bf16, no tf32.
    "V100 SXM2": {"fp16": 125 * _T, "fp32": 15.7 * _T},
    "V100 PCIe": {"fp16": 112 * _T, "fp32": 14 * _T},
    "V100S": {"fp16": 130 * _T, "fp32": 16.4 * _T},
    # NVIDIA Ada Lovelace whitepaper, appendix A: FP16/BF16 tensor with FP32 accumulate 165.2 | 330.4*,
    # TF32 82.6 | 165.2*, FP32 82.6.
    "RTX 4090": {"bf16": 165.2 * _T, "fp16": 165.2 * _T, "tf32": 82.6 * _T, "fp32": 82.6 * _T},
    # NVIDIA Ampere GA102 whitepaper: FP16/BF16 tensor with FP32 accumulate 71 | 142*, TF32 35.6 | 71*.
    "RTX 3090": {"bf16": 71 * _T, "fp16": 71 * _T, "tf32": 35.6 * _T, "fp32": 35.6 * _T},
    # AMD Instinct MI300X datasheet: BF16/FP16 1,307.4 (2,614.9 with sparsity), TF32 653.7, FP32 163.4.
    "MI300X": {"bf16": 1307.4 * _T, "fp16": 1307.4 * _T, "tf32": 653.7 * _T, "fp32": 163.4 * _T},
}

# torch.cuda.get_device_name() -> table key, first match wins, so a qualified name (H100 PCIe) comes
# before the bare one (H100 is the SXM part: "NVIDIA H100 80GB HBM3"). Word boundaries keep "L4" from
# matching "L40S" and "H200" from matching "GH200".
_DEVICE_NAMES: list[tuple[str, str]] = [
    (r"\bH100\b.*\bPCIe\b", "H100 PCIe"),
    (r"\bH100\b.*\bNVL\b", "H100 NVL"),
    (r"\bH100\b", "H100 SXM"),
    (r"\bH200\b.*\bNVL\b", "H200 NVL"),
    (r"\bH200\b", "H200"),
    (r"\bGH200\b", "GH200"),
    (r"\bA100\b", "A100"),
    (r"\bA10G\b", "A10G"),
    (r"\bL4\b", "L4"),
    (r"\bL40S\b", "L40S"),
    (r"\bV100S\b", "V100S"),
    (r"\bV100\b.*\bPCIE\b", "V100 PCIe"),
    (r"\bV100\b", "V100 SXM2"),
    (r"\bRTX 4090\b(?! D)", "RTX 4090"),
    (r"\bRTX 3090\b(?! Ti)", "RTX 3090"),
    (r"\bMI300X\b", "MI300X"),
]


def device_key(name: str) -> str | None:
    """The ``DEVICE_PEAK_FLOPS`` key for a device name such as ``torch.cuda.get_device_name()`` gives."""
    for pattern, key in _DEVICE_NAMES:
        if re.search(pattern, name, flags=re.IGNORECASE):
            return key
    return None


def precision_dtype(precision: str) -> str | None:
    """The dtype matmuls run in under a Trainer precision string: "bf16-mixed" / "bf16-true" -> "bf16",
    "16-mixed" / "16-true" -> "fp16", "32-true" -> "fp32". None for anything without a table column
    (64-bit, transformer-engine's fp8)."""
    precision = str(precision).lower()
    if precision.startswith("bf16"):
        return "bf16"
    if precision.startswith(("16", "fp16", "float16", "half")):
        return "fp16"
    if precision.startswith(("32", "fp32", "float32")):
        return "fp32"
    return None


def device_peak_flops(device: torch.device, precision: str) -> float | None:
    """Dense peak FLOP/s of one ``device`` for matmuls under the Trainer ``precision`` string, or None
    when it is not known (CPU, a device missing from the table, a dtype the device has no figure for).

    fp32 counts as tf32 on Ampere and later when PyTorch lets fp32 matmuls use TF32
    (``torch.set_float32_matmul_precision("high")``); otherwise as plain fp32.
    """
    device = torch.device(device)
    dtype = precision_dtype(precision)
    if device.type != "cuda" or dtype is None:
        return None
    key = device_key(torch.cuda.get_device_name(device))
    if key is None:
        return None
    if dtype == "fp32" and _tf32_enabled() and torch.cuda.get_device_capability(device) >= (8, 0):
        dtype = "tf32"
    return DEVICE_PEAK_FLOPS[key].get(dtype)


def _tf32_enabled() -> bool:
    # PyTorch >= 2.9 has fp32_precision ("tf32" / "ieee" / "none" = follow the legacy flag); reading the
    # legacy allow_tf32 after the new API was used raises, so the new one is asked first.
    matmul = torch.backends.cuda.matmul
    precision = getattr(matmul, "fp32_precision", "none")
    if precision in ("tf32", "ieee"):
        return precision == "tf32"
    try:
        return bool(matmul.allow_tf32)
    except RuntimeError:
        return False


def flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Training FLOPs (forward + backward) per token of sequences of ``seq_len`` tokens: the model's own
    ``flops_per_token(seq_len)`` when it has one (every built-in model), else counted once by
    ``counted_flops_per_token``, so a third-party model plugin gets MFU without writing a formula."""
    own = getattr(model, "flops_per_token", None)
    if callable(own):
        return float(own(seq_len))
    return counted_flops_per_token(model, seq_len)


def counted_flops_per_token(model: nn.Module, seq_len: int) -> float:
    """Counts the FLOPs of a forward and backward pass of one (1, seq_len) batch of token ids with
    ``torch.utils.flop_counter.FlopCounterMode`` and divides by seq_len.

    It runs on a meta-device copy, so no real memory or compute is spent and the model is left untouched.
    The counter sees matmuls only (linear layers, attention scores and the weighted sum, their gradients):
    for GPT it agrees with 6 N + 12 L C T to within a few percent, the difference being exactly 6 x the
    norm weights and biases, which N counts and which do no matmul. An embedding lookup is free in both.
    """
    meta_model = meta_copy(model)
    input_ids = torch.zeros(1, seq_len, dtype=torch.long, device="meta")
    with FlopCounterMode(display=False) as counter:
        _first_tensor(meta_model(input_ids)).float().sum().backward()
    return counter.get_total_flops() / seq_len


def meta_copy(model: nn.Module) -> nn.Module:
    """A deep copy of ``model`` whose parameters and buffers are empty meta tensors.

    ``copy.deepcopy(model).to("meta")`` would first copy every weight on the model's real device (twice
    the memory of a large model on its GPU). Instead the deepcopy memo is seeded with a meta twin of each
    tensor, so deepcopy never touches the real data; shared (tied) weights stay shared, being one entry.
    """
    memo: dict[int, Any] = {}
    for tensor in [*model.parameters(), *model.buffers()]:
        twin = torch.empty_like(tensor, device="meta")
        if isinstance(tensor, nn.Parameter):
            twin = nn.Parameter(twin, requires_grad=tensor.requires_grad)
        memo[id(tensor)] = twin
    return copy.deepcopy(model, memo)


def _first_tensor(output: Any) -> torch.Tensor:
    """The logits from whatever a model returns: a tensor, a tuple, or a dict / ModelOutput."""
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, Mapping):
        values = [output["logits"]] if "logits" in output else list(output.values())
    elif isinstance(output, Sequence):
        values = list(output)
    else:
        raise TypeError(f"cannot find a tensor in the model's output of type {type(output).__name__}")
    return next(v for v in values if isinstance(v, torch.Tensor))
