"""Materialising a model built on the meta device (the FSDP path's ranks but 0): every buffer is rank 0's,
also one the state dict leaves out and the plugin's ``init_weights`` does not set."""

from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch import nn

pytestmark = pytest.mark.slow  # two processes

WIDTH = 8


class Buffered(nn.Module):
    """A plugin model with a non-persistent buffer made in ``__init__`` alone."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(WIDTH, WIDTH)
        self.register_buffer("scale", torch.full((WIDTH,), 0.5), persistent=False)

    def init_weights(self) -> None:  # the weights only, as a plugin may write it
        nn.init.normal_(self.lin.weight, std=0.02)
        nn.init.zeros_(self.lin.bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.lin(x * self.scale)


def _materialise(rank: int, port: int, results: dict) -> None:
    from lightning_llm.module import LanguageModule

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        torch.manual_seed(0)
        with torch.device("meta" if rank else "cpu"):
            model = Buffered()
        module = LanguageModule(model, None, optim={"name": "adamw"}, scheduler={"name": "constant"})
        module._materialise_and_broadcast(model.state_dict() if rank == 0 else {})
        results[rank] = (module.model.scale.tolist(), module.model.lin.weight.tolist())
    finally:
        dist.destroy_process_group()


def test_ranks_built_on_meta_get_rank_0s_buffers_and_weights():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with mp.Manager() as manager:
        results = manager.dict()
        mp.spawn(_materialise, args=(port, results), nprocs=2, join=True)
        (scale_0, weight_0), (scale_1, weight_1) = results[0], results[1]
    assert scale_0 == scale_1 == [0.5] * WIDTH  # rank 1's was uninitialised memory
    assert weight_0 == weight_1
