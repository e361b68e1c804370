"""Make any model plugin train at scale, in a fixed order: activation checkpointing, ``torch.compile``, FSDP2.

Model code stays single-device code. A model plugin only has to keep its Transformer layers in an
``nn.ModuleList`` called ``blocks``; this module does the rest, so a new architecture gets sharding, compiling
and recomputation for free:

0. float8 matmuls in the blocks' linear layers, with ``parallel.float8`` (torchao),
1. activation checkpointing per block (recompute the block's activations in backward instead of storing them),
2. ``torch.compile`` per block (small graphs compile fast, and every block of a stack reuses one graph),
3. FSDP2 ``fully_shard`` per block, then per untied embedding or output head, then the root (the norms, and
   weights tied between embedding and head, which must live in one FSDP unit), all with one mixed-precision
   policy.

Wrapping per block is what makes FSDP overlap communication with compute: while block ``i`` computes, the
parameters of block ``i + 1`` are being all-gathered.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from lightning_llm.distributed.plan import ParallelPlan

if TYPE_CHECKING:
    from torch.distributed.device_mesh import DeviceMesh

log = logging.getLogger("lightning_llm")

# Methods other than forward that run the model's FSDP units (encoder-decoder inference, sampling).
FSDP_FORWARD_METHODS = ("encode", "decode", "generate")
_RESHARD_ATTR = "_lightning_llm_reshard_after_forward"


def parallelize(
    model: nn.Module, plan: ParallelPlan, mesh: DeviceMesh | None = None, device_type: str | None = None
) -> nn.Module:
    """Apply ``plan`` to ``model`` in place and return it. ``mesh`` (the data-parallel mesh) shards with
    FSDP2; without one only checkpointing and compiling apply (single device, DDP). ``device_type``: where the
    model trains (float8 is emulated off CUDA); None: where its parameters are."""
    blocks = _blocks(model)
    if plan.float8:
        device_type = device_type or next(model.parameters()).device.type
        to_float8(blocks, emulate=device_type != "cuda")
    for block in blocks:
        if plan.activation_checkpointing:
            # Recompute the block's activations in backward. Its own forward is replaced, not the module
            # wrapped, so parameter names (and checkpoints) are the same with or without recomputation.
            block.forward = functools.partial(checkpoint, block.forward, use_reentrant=False)
        if plan.compile:
            block.compile()  # in place: names and state dict unchanged
    if mesh is not None:
        _fully_shard(model, blocks, mesh, plan)
    return model


def to_float8(blocks: list[nn.Module], emulate: bool = False) -> int:
    """Make the blocks' linear layers compute their matmuls in float8 (torchao's ``Float8Linear``, dynamic
    per-tensor scales: the recipe torchtitan trains with); returns how many were converted.

    Only plain ``nn.Linear`` layers inside blocks whose sizes are multiples of 16 (what float8 matmul kernels
    take): embeddings, the output head, norms and LoRA layers keep their precision, as in torchtitan.
    Parameter names and values do not change, so checkpoints load with or without float8. ``emulate``:
    float8 numerics in higher-precision matmuls, for devices without float8 (tests on a CPU)."""
    from torchao.float8 import Float8LinearConfig, convert_to_float8_training

    def fits(module: nn.Module, fqn: str) -> bool:
        # Exactly nn.Linear: a subclass (a LoRA layer, a plugin's own) computes more than its matmul, which
        # the swap to Float8Linear would drop; it keeps its precision.
        sizes = (module.in_features, module.out_features) if type(module) is nn.Linear else (1,)
        return all(size % 16 == 0 for size in sizes)

    config = Float8LinearConfig(emulate=emulate)
    converted = 0
    for block in blocks:
        convert_to_float8_training(block, module_filter_fn=fits, config=config)
        converted += sum(type(m).__name__ == "Float8Linear" for m in block.modules())
    if not converted:
        log.warning("parallel.float8: no linear layer in the blocks has sizes that are multiples of 16")
    return converted


def _blocks(model: nn.Module) -> list[nn.Module]:
    blocks = getattr(model, "blocks", None)
    if isinstance(blocks, nn.ModuleList) and len(blocks):
        return list(blocks)
    log.warning(
        "%s has no `blocks` ModuleList: activation checkpointing and compile are skipped and FSDP shards the "
        "whole model as one unit (no communication overlap)",
        type(model).__name__,
    )
    return []


def _fully_shard(model: nn.Module, blocks: list[nn.Module], mesh: DeviceMesh, plan: ParallelPlan) -> None:
    from torch.distributed.fsdp import CPUOffloadPolicy, MixedPrecisionPolicy, OffloadPolicy, fully_shard

    options = {
        "mesh": mesh,
        "mp_policy": MixedPrecisionPolicy(
            param_dtype=_dtype(plan.param_dtype), reduce_dtype=_dtype(plan.reduce_dtype)
        ),
        "offload_policy": CPUOffloadPolicy() if plan.cpu_offload else OffloadPolicy(),
    }
    for module in [*blocks, *_untied_edges(model, blocks)]:
        fully_shard(module, reshard_after_forward=plan.reshard_after_forward, **options)
        setattr(module, _RESHARD_ATTR, plan.reshard_after_forward)  # for ``gathered`` to restore
    # The root keeps its parameters gathered after forward: backward needs them first anyway.
    fully_shard(model, reshard_after_forward=False, **options)
    setattr(model, _RESHARD_ATTR, False)
    from torch.distributed.fsdp import register_fsdp_forward_method

    for name in FSDP_FORWARD_METHODS:
        if callable(getattr(model, name, None)):
            register_fsdp_forward_method(model, name)


def _untied_edges(model: nn.Module, blocks: list[nn.Module]) -> list[nn.Module]:
    """Embedding tables and the output head, each its own FSDP unit, unless it shares a weight with another
    module (a tied embedding and head): tied weights stay with the root."""
    inside_blocks = {id(p) for block in blocks for p in block.parameters()}
    owners: dict[int, int] = {}
    for module in model.modules():
        for p in module.parameters(recurse=False):
            owners[id(p)] = owners.get(id(p), 0) + 1
    edges = []
    for name, module in model.named_children():
        is_edge = isinstance(module, nn.Embedding) or name in ("lm_head", "head", "classifier")
        params = list(module.parameters())
        if not is_edge or not params or any(id(p) in inside_blocks for p in params):
            continue
        if all(owners[id(p)] == 1 for p in params):
            edges.append(module)
    return edges


@contextmanager
def gathered(model: nn.Module) -> Iterator[None]:
    """Inside, a sharded model holds its full parameters on every process, so each may run forward any number
    of times on its own: decoding loops that stop when their own batch is done (greedy and beam search) would
    otherwise leave processes waiting in different all-gathers. Costs the full model's memory while inside.
    Collective on entry (every process must enter together); a no-op for a model that is not sharded."""
    units = [unit for unit in model.modules() if hasattr(unit, "unshard") and hasattr(unit, "reshard")]
    if not units:
        yield
        return
    for unit in units:
        unit.set_reshard_after_forward(False, recurse=False)
        unit.unshard()
    try:
        yield
    finally:
        for unit in units:
            unit.reshard()
            unit.set_reshard_after_forward(getattr(unit, _RESHARD_ATTR, True), recurse=False)


def local_part(tensor: torch.Tensor) -> torch.Tensor:
    """This process's part of a tensor: its shard of an FSDP-sharded (DTensor) one, as a view that can be
    changed in place; any other tensor itself."""
    return tensor.to_local() if hasattr(tensor, "to_local") else tensor


def is_sharded(model: nn.Module) -> bool:
    """Whether FSDP shards the model's parameters (its forward is then a collective)."""
    return any(hasattr(p, "to_local") for p in model.parameters())


def _dtype(name: str | None) -> torch.dtype | None:
    return getattr(torch, name) if name else None
