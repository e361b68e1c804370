"""GPU training benchmark: the GPT-2 124M shape on one GPU, plain and under FSDP2: tokens/s, MFU, peak memory.

    python bench/gpu.py [--mode plain|fsdp|both] [--batch-size 16] [--grad-accum 1] [--steps 20]
                        [--warmup 5] [--compile | --no-compile] [--sdpa flash] [--rounds 2] [--out FILE]
    python bench/gpu.py --device cpu --tiny --steps 6 [--mode both]     # smoke test of the same code

The model is the framework's GPT in the shape of ``conf/experiment/gpt2_124m.yaml`` (12 layers, 12 heads,
768 wide, 1024-token context, GPT-2's 50257-token vocabulary padded to 50304 rows, no biases, tied
embeddings), trained on random token ids (speed does not depend on them) the way the framework trains it:
bf16 autocast with fp32 weights (``bf16-mixed``), the ``causal_lm`` objective's loss, gradient clipping at
1.0, and the ``adamw`` plugin with ``fused=True`` on ``param_groups``. Attention runs under
``torch.nn.attention.sdpa_kernel`` restricted to ``--sdpa`` (default: flash attention, so a run fails
rather than silently timing another kernel), and ``--compile`` compiles each block in place as
``lightning_llm.distributed.parallelize`` does.

``--mode plain`` trains the model as is. ``--mode fsdp`` first starts a 1-process group (NCCL on a GPU,
gloo on a CPU; ``MASTER_ADDR``/``MASTER_PORT`` from the environment or a free local port), builds a 1-D
``DeviceMesh`` and applies ``parallelize(model, ParallelPlan(...), mesh)``: FSDP2 ``fully_shard`` per block
and root with bf16 parameters and fp32 gradient reduction, the framework's policy under ``bf16-mixed``.
With one process nothing is sharded, so the difference to plain is FSDP's own overhead (all-gather and
reduce-scatter calls, copies into the bf16 parameters, hooks). ``--mode both`` alternates plain and fsdp
runs ``--rounds`` times (interleaved, so drift in clocks or temperature hits both alike) and ends with a
line giving fsdp/plain ratios of the medians.

Each run prints one JSON line: tokens/s from the median optimizer-step time over ``--steps`` steps after
``--warmup`` untimed ones (compilation happens there); MFU = tokens/s x ``model.flops_per_token(block)``
(6 N + 12 L C T) / the device's dense peak for the dtype (``lightning_llm.flops``; null where unknown,
e.g. on a CPU); peak memory: ``torch.cuda.max_memory_allocated`` since just before the model was built (on a
CPU the process's peak RSS, cumulative over the runs of one invocation). Numbers belong in
bench/RESULTS.md, not in tests.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import json
import os
import resource
import socket
import statistics
import time
from pathlib import Path

import torch
from torch.nn.attention import SDPBackend, sdpa_kernel

from lightning_llm.distributed.parallelize import ParallelPlan, parallelize
from lightning_llm.flops import device_key, device_peak_flops
from lightning_llm.models.gpt import GPT, GPTConfig
from lightning_llm.objectives.causal_lm import CausalLM
from lightning_llm.optim import adamw, param_groups

# conf/experiment/gpt2_124m.yaml; --tiny: a shape a CPU runs in seconds.
GPT2_124M = {
    "n_layer": 12,
    "n_head": 12,
    "n_embd": 768,
    "block_size": 1024,
    "vocab_size": 50257,
    "batch_size": 16,
}
TINY = {"n_layer": 2, "n_head": 2, "n_embd": 64, "block_size": 64, "vocab_size": 512, "batch_size": 4}
SDPA_BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--mode", choices=("plain", "fsdp", "both"), default="plain")
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer 64-wide model for a CPU smoke test")
    for key in ("n_layer", "n_head", "n_embd", "block_size", "vocab_size", "batch_size"):
        flag = "--" + key.replace("_", "-")
        parser.add_argument(flag, type=int, default=None, help=f"default {GPT2_124M[key]} ({TINY[key]} tiny)")
    parser.add_argument("--grad-accum", type=int, default=1, help="micro-batches per optimizer step")
    parser.add_argument("--steps", type=int, default=20, help="timed optimizer steps per run (median)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed optimizer steps before them")
    parser.add_argument("--rounds", type=int, default=2, help="--mode both: plain/fsdp pairs of runs")
    parser.add_argument(
        "--dtype", choices=("bfloat16", "float32"), default=None, help="autocast dtype (default bf16 on cuda)"
    )
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="default: on for cuda"
    )
    parser.add_argument(
        "--fused", action=argparse.BooleanOptionalAction, default=True, help="fused AdamW (default on)"
    )
    parser.add_argument("--sdpa", choices=(*SDPA_BACKENDS, "any"), default="flash", help="attention kernel")
    parser.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm; 0: no clipping")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    args = parser.parse_args()
    shape = TINY if args.tiny else GPT2_124M
    for key, value in shape.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.dtype is None:
        args.dtype = "bfloat16" if args.device == "cuda" else "float32"
    if args.compile is None:
        args.compile = args.device == "cuda"
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible; for a smoke test on a CPU use --device cpu --tiny")
    return args


# --------------------------------------------------------------------------- setup


def start_process_group(device: torch.device):
    """A 1-process group and its 1-D mesh: what FSDP2 needs even when nothing is sharded."""
    import torch.distributed as dist
    from torch.distributed.device_mesh import init_device_mesh

    if not dist.is_initialized():
        os.environ.setdefault("MASTER_ADDR", "127.0.0.1")
        os.environ.setdefault("MASTER_PORT", str(free_port()))
        cuda = device.type == "cuda"
        dist.init_process_group(
            "nccl" if cuda else "gloo", rank=0, world_size=1, device_id=device if cuda else None
        )
    return init_device_mesh(device.type, (1,), mesh_dim_names=("data_parallel",))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def build(
    args: argparse.Namespace, mode: str, device: torch.device, mesh
) -> tuple[GPT, torch.optim.Optimizer]:
    """The model (compiled and, for fsdp, sharded as the framework does) and its optimizer."""
    torch.manual_seed(args.seed)
    config = GPTConfig(
        vocab_size=args.vocab_size,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
        block_size=args.block_size,
        dropout=0.0,
    )
    model = GPT(config).to(device).train()
    bf16 = args.dtype == "bfloat16"
    plan = ParallelPlan(
        compile=args.compile,
        param_dtype=torch.bfloat16 if mode == "fsdp" and bf16 else None,  # as strategy.resolve for bf16-mixed
        reduce_dtype=torch.float32,
    )
    model = parallelize(model, plan, mesh if mode == "fsdp" else None)
    optimizer = adamw(param_groups(model), lr=6e-4, fused=args.fused)  # built on the (sharded) parameters
    return model, optimizer


def random_batches(args: argparse.Namespace, device: torch.device, count: int = 4) -> list[dict]:
    generator = torch.Generator().manual_seed(args.seed)
    shape = (count, args.batch_size, args.block_size + 1)
    tokens = torch.randint(0, args.vocab_size, shape, generator=generator).to(device)
    return [{"input_ids": t[:, :-1], "labels": t[:, 1:]} for t in tokens]  # (B, T) each


# --------------------------------------------------------------------------- one run


def optimizer_step(model, objective, optimizer, batches, step: int, args, autocast) -> torch.Tensor:
    """``--grad-accum`` micro-batches (FSDP reduce-scatters after the last only, as the framework's module
    does), gradient clipping, AdamW. Returns the step's mean loss (not synchronised)."""
    total = torch.zeros((), device=batches[0]["input_ids"].device)
    for micro in range(args.grad_accum):
        if hasattr(model, "set_requires_gradient_sync"):
            model.set_requires_gradient_sync(micro == args.grad_accum - 1)
        batch = batches[(step * args.grad_accum + micro) % len(batches)]
        with autocast, attention(args.sdpa):
            loss_sum, n_tokens, _ = objective.loss(model, batch)
            loss = loss_sum / (n_tokens * args.grad_accum)
        loss.backward()
        total += loss.detach()
    if args.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return total


def attention(sdpa: str) -> contextlib.AbstractContextManager:
    """A fresh context (sdpa_kernel's is single-use) that restricts SDPA to the chosen kernel."""
    return contextlib.nullcontext() if sdpa == "any" else sdpa_kernel(SDPA_BACKENDS[sdpa])


def run(args: argparse.Namespace, mode: str, device: torch.device, mesh, round_index: int) -> dict:
    cuda = device.type == "cuda"
    if cuda:
        torch.cuda.reset_peak_memory_stats(device)
    model, optimizer = build(args, mode, device, mesh)
    flops_per_token = model.flops_per_token(args.block_size)
    params = model.num_params(non_embedding=False)
    objective = CausalLM()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")
    batches = random_batches(args, device)

    seconds = []
    for step in range(args.warmup + args.steps):
        synchronize(device)
        start = time.perf_counter()
        loss = optimizer_step(model, objective, optimizer, batches, step, args, autocast)
        synchronize(device)
        if step >= args.warmup:
            seconds.append(time.perf_counter() - start)
    loss = loss.item()

    step_seconds = statistics.median(seconds)
    tokens_per_step = args.batch_size * args.block_size * args.grad_accum
    tokens_per_second = tokens_per_step / step_seconds
    peak_flops = device_peak_flops(device, "bf16-mixed" if args.dtype == "bfloat16" else "32-true")
    if cuda:
        peak_mb, memory_measure = torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated"
    else:
        peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB
        memory_measure = "cpu_process_peak_rss_cumulative"
    result = {
        "mode": mode,
        "round": round_index,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "device_key": device_key(torch.cuda.get_device_name(device)) if cuda else None,
        "dtype": args.dtype,
        "compile": args.compile,
        "fused_adamw": bool(optimizer.defaults.get("fused")),
        "sdpa": args.sdpa,
        "n_layer": args.n_layer,
        "n_head": args.n_head,
        "n_embd": args.n_embd,
        "block_size": args.block_size,
        "vocab_size": args.vocab_size,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "tokens_per_step": tokens_per_step,
        "params": params,
        "flops_per_token": flops_per_token,
        "steps": args.steps,
        "warmup": args.warmup,
        "step_seconds_median": round(step_seconds, 5),
        "tokens_per_second": round(tokens_per_second, 1),
        "peak_flops": peak_flops,
        "mfu": None if peak_flops is None else round(tokens_per_second * flops_per_token / peak_flops, 4),
        "peak_memory_mb": round(peak_mb, 1),
        "memory_measure": memory_measure,
        "last_loss": round(loss, 4),  # random tokens: about ln(vocab_size) if the step is sane
    }
    del model, optimizer, batches
    release(device)
    return result


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def release(device: torch.device) -> None:
    """Free one run's memory and compiled graphs so the next run starts from the same state."""
    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


# --------------------------------------------------------------------------- main


def emit(result: dict, out: Path | None) -> None:
    line = json.dumps(result)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as file:
            file.write(line + "\n")


def ratios(results: list[dict]) -> dict:
    """fsdp / plain for the medians over rounds of tokens/s, step time and peak memory."""

    def median(mode: str, key: str) -> float:
        return statistics.median(r[key] for r in results if r["mode"] == mode)

    out = {"summary": "fsdp_over_plain", "rounds": max(r["round"] for r in results) + 1}
    for key in ("tokens_per_second", "step_seconds_median", "peak_memory_mb"):
        plain, fsdp = median("plain", key), median("fsdp", key)
        out[f"plain_{key}"], out[f"fsdp_{key}"] = plain, fsdp
        out[f"ratio_{key}"] = round(fsdp / plain, 4)
    return out


def main() -> None:
    args = parse_args()
    device = (
        torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    )
    out = Path(args.out) if args.out else None
    mesh = start_process_group(device) if args.mode in ("fsdp", "both") else None
    schedule = (
        [(0, args.mode)]
        if args.mode != "both"
        else [(r, m) for r in range(args.rounds) for m in ("plain", "fsdp")]
    )
    results = []
    try:
        for round_index, mode in schedule:
            result = run(args, mode, device, mesh, round_index)
            emit(result, out)
            results.append(result)
        if args.mode == "both":
            emit(ratios(results), out)
    finally:
        if mesh is not None:
            torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
