"""LoRA (Hu et al. 2021): fine-tune a few million adapter weights instead of the whole model, then merge them.

A ``nn.Linear`` named by ``model.lora.targets`` becomes a ``LoRALinear``: the same module, keeping its
``weight`` and ``bias`` (so checkpoints and the Hugging Face mapping name them as before), frozen, plus two
small matrices ``lora_a`` (rank x in) and ``lora_b`` (out x rank). It computes
``x W^T + b + (alpha / rank) * dropout(x) A^T B^T``; B starts at zero, so the adapted model starts exactly as
the base model. ``merge_lora`` folds ``(alpha / rank) * B A`` into ``W`` and turns each module back into a
plain ``nn.Linear``: the merged model gives the adapted model's outputs, with no adapter left.

With ``adapters_only`` a checkpoint keeps only the trained entries; ``frozen_fingerprint`` identifies the base
it was trained on, so that loading it over another base is refused instead of silently giving another model.
"""

from __future__ import annotations

import hashlib
import math

import torch
import torch.nn.functional as F
from torch import nn

from lightning_llm.config import LoraSettings

__all__ = [
    "LoRALinear",
    "LoraSettings",
    "apply_lora",
    "frozen_fingerprint",
    "has_adapters",
    "lora_parameters",
    "merge_lora",
    "merged_state",
]


class LoRALinear(nn.Linear):
    """A linear layer with a low-rank adapter beside its frozen weight (built by ``apply_lora``)."""

    lora_a: nn.Parameter
    lora_b: nn.Parameter

    def init_lora(self, rank: int, alpha: float, dropout: float) -> None:
        self.rank, self.scaling = rank, alpha / rank
        self.lora_dropout = nn.Dropout(dropout) if dropout else nn.Identity()
        device, dtype = self.weight.device, self.weight.dtype
        self.lora_a = nn.Parameter(torch.empty(rank, self.in_features, device=device, dtype=dtype))
        self.lora_b = nn.Parameter(torch.zeros(self.out_features, rank, device=device, dtype=dtype))
        nn.init.kaiming_uniform_(self.lora_a, a=math.sqrt(5))  # as nn.Linear starts its weight (and PEFT)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        adapter = F.linear(F.linear(self.lora_dropout(x), self.lora_a), self.lora_b)
        return F.linear(x, self.weight, self.bias) + self.scaling * adapter

    def effective_weight(self) -> torch.Tensor:
        """W + (alpha / rank) B A: the weight this layer applies (for code that reads the weight itself)."""
        return self.weight + self.scaling * (self.lora_b @ self.lora_a)


def apply_lora(model: nn.Module, settings: LoraSettings) -> list[str]:
    """Put adapters on ``model``'s targeted linear layers, freeze everything else; returns their names.

    A target that names no linear layer is an error listing the names there are."""
    if settings.rank < 1:
        raise ValueError(f"model.lora.rank must be >= 1 to apply LoRA, got {settings.rank}")
    linears = {name: module for name, module in model.named_modules() if type(module) is nn.Linear}
    shared = {name for group in tied_groups(model) for name in group}
    adapted = []
    for target in settings.targets:
        matches = [name for name in linears if name.rsplit(".", 1)[-1] == target]
        if not matches:
            names = sorted({name.rsplit(".", 1)[-1] for name in linears})
            raise ValueError(
                f"model.lora.targets: '{target}' names no linear layer of this model; its linear layers: "
                f"{', '.join(names)}"
            )
        for name in matches:
            if why := _unadaptable(model, name, shared):
                raise ValueError(f"model.lora.targets: '{target}' names {name}, {why}; adapt other layers")
            if settings.rank > (full := min(linears[name].in_features, linears[name].out_features)):
                raise ValueError(
                    f"model.lora.rank={settings.rank} is over the rank of {name} ({full}): a low-rank "
                    f"adapter must be smaller than its layer; give at most {full}"
                )
        adapted += matches
    for parameter in model.parameters():
        parameter.requires_grad_(False)
    for name in sorted(set(adapted)):
        module = linears[name]
        module.__class__ = LoRALinear  # the same module, weight and bias kept under their names
        module.init_lora(settings.rank, settings.alpha, settings.dropout)
    return sorted(set(adapted))


def tied_groups(model: nn.Module) -> list[list[str]]:
    """The names under which one parameter of ``model`` appears twice or more (a head tied to its
    embedding), a group each: its state dict holds each name, loading copies each into that one tensor."""
    names: dict[int, list[str]] = {}
    for name, parameter in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(parameter), []).append(name)
    return [group for group in names.values() if len(group) > 1]


def _unadaptable(model: nn.Module, name: str, shared: set[str]) -> str | None:
    """Why the linear layer ``name`` cannot take an adapter, or None: a merged adapter cannot be written
    into a weight the embedding shares (the export would hold two different copies of one tensor), and a
    model's output head is read as a weight by its loss in chunks, which would leave the adapter out."""
    if name in getattr(model, "output_heads", ()):
        return "the model's output head, whose weight its loss in chunks reads directly (the adapter unused)"
    if f"{name}.weight" in shared:
        return "whose weight is tied to another (the embedding), so a merged adapter would change both"
    return None


def lora_parameters(model: nn.Module) -> dict[str, nn.Parameter]:
    return {
        name: p for name, p in model.named_parameters() if name.rsplit(".", 1)[-1] in ("lora_a", "lora_b")
    }


def merged_state(state: dict[str, torch.Tensor], scaling: float) -> dict[str, torch.Tensor]:
    """A state dict with its adapters folded into their weights (``W + scaling * B A``) and dropped: what a
    plain model of the same architecture loads."""
    merged = dict(state)
    for name in [n for n in state if n.endswith(".lora_a")]:
        layer = name[: -len(".lora_a")]
        a, b = merged.pop(f"{layer}.lora_a"), merged.pop(f"{layer}.lora_b")
        weight = merged[f"{layer}.weight"]
        merged[f"{layer}.weight"] = (weight.float() + scaling * (b.float() @ a.float())).to(weight.dtype)
    return merged


def has_adapters(state: dict[str, torch.Tensor]) -> bool:
    return any(name.endswith(".lora_a") for name in state)


@torch.no_grad()
def merge_lora(model: nn.Module) -> int:
    """Fold every adapter into its weight and make the layer a plain ``nn.Linear`` again; returns how many."""
    merged = 0
    for module in model.modules():
        if isinstance(module, LoRALinear):
            module.weight.copy_(module.effective_weight())
            for name in ("lora_a", "lora_b", "lora_dropout"):
                delattr(module, name)
            del module.rank, module.scaling
            module.__class__ = nn.Linear
            merged += 1
    return merged


def frozen_fingerprint(state: dict[str, torch.Tensor]) -> str:
    """sha256 of a state dict's names, shapes, dtypes and bytes, in name order: the identity of the frozen
    base weights an adapters-only checkpoint was trained on."""
    digest = hashlib.sha256()
    for name in sorted(state):
        tensor = state[name].detach().cpu().contiguous()
        digest.update(f"{name}\0{tuple(tensor.shape)}\0{tensor.dtype}\0".encode())
        if tensor.numel():
            digest.update(tensor.view(-1).view(torch.uint8).numpy())  # the bytes, not copied
    return digest.hexdigest()
