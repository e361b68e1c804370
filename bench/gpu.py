"""GPU training benchmark: GPT-2 124M on one GPU by a hand-written loop, under FSDP2, through the framework.

    python bench/gpu.py [--mode plain,fsdp,framework,framework_fsdp | both | all] [--batch-size 32]
                        [--grad-accum 4] [--steps 30] [--warmup 8] [--compile | --no-compile] [--sdpa flash]
                        [--rounds 2] [--out FILE] [--profile DIR] [--sync-debug DIR]
    python bench/gpu.py --device cpu --tiny --steps 6 --mode all     # smoke test of the same code

Modes (``--mode`` takes a comma-separated list; ``both`` = plain,fsdp; ``all`` = every mode):

- ``plain``: the framework's GPT in the shape of ``conf/experiment/gpt2_124m.yaml`` (12 layers, 12 heads, 768
  wide, 1024-token context, GPT-2's 50257-token vocabulary padded to 50304 rows, no biases, tied embeddings;
  4 micro-batches of 32 a step)
  trained by a hand-written loop on random token ids (speed does not depend on them) the way the framework
  trains it: bf16 autocast with fp32 weights (``bf16-mixed``), the ``causal_lm`` objective's loss, gradient
  clipping at 1.0, and the ``adamw`` plugin with ``fused=True`` on ``param_groups``. Attention runs under
  ``torch.nn.attention.sdpa_kernel`` restricted to ``--sdpa`` (default: flash attention, so a run fails
  rather than silently timing another kernel), and ``--compile`` compiles each block in place and the
  objective's loss (model call, head, cross-entropy) as ``LanguageModule`` does under ``parallel.compile``
  (``--no-compile-loss``: blocks only, the head and loss eager).
- ``fsdp``: the same loop after a 1-process group (NCCL on a GPU, gloo on a CPU), a 1-D ``DeviceMesh`` and
  ``parallelize(model, ParallelPlan(...), mesh)``: FSDP2 ``fully_shard`` per block and root with bf16
  parameters and fp32 gradient reduction, the framework's policy under ``bf16-mixed``. With one process
  nothing is sharded, so the difference to plain is FSDP's own overhead (all-gather and reduce-scatter
  calls, copies into the bf16 parameters, hooks).
- ``framework``: ``python -m lightning_llm experiment=gpt2_124m`` as composed from conf/ (same shape, batch,
  accumulation, precision, compile and clipping; the ``byte_bpe`` tokenizer trained to 50257 tokens on a
  generated corpus of random words, ``data=text``, every default callback, the CSV logger, validation pushed
  past the end), trained by ``lightning_llm.train.train`` in a fresh process. The attention kernel is
  whatever SDPA picks (flash, for this shape and dtype). ``framework_fsdp``: the same with ``trainer=fsdp``
  on one device (Lightning's ModelParallelStrategy).
- any mode + ``+float8`` (e.g. ``framework+float8``): the same with the blocks' linear layers in float8
  (``parallel.float8``, torchao; emulated with ``--device cpu``). With both a mode and its float8 variant,
  the summary gives float8's speed ratio and, for framework modes, how far its training loss is from the
  bf16 run's (largest relative gap over the logged steps, over the last tenth, and both final losses).

Each run times ``--steps`` optimizer steps after ``--warmup`` untimed ones (compilation happens there) as one
window: the device is synchronised at both ends and nowhere between, as a training loop runs, so
tokens/s = steps x tokens per step / window seconds. MFU = tokens/s x ``model.flops_per_token(block)``
(6 N + 12 L C T) / the device's dense peak for the dtype (``lightning_llm.flops``; null where unknown, e.g.
on a CPU). Peak memory: ``torch.cuda.max_memory_allocated`` over the run (on a CPU the process's peak RSS).
Runs alternate modes ``--rounds`` times (interleaved, so drift in clocks or temperature hits all alike), one
JSON line each, then a summary line with each mode's median tokens/s and its ratio to plain. ``--profile DIR``
writes a torch.profiler table of 3 more steps per mode; ``--sync-debug DIR`` (framework modes, CUDA) lists
every host sync of 3 more steps with the Python stack that caused it. Numbers belong
in bench/RESULTS.md, not in tests.
"""

from __future__ import annotations

import argparse
import contextlib
import csv
import functools
import gc
import json
import os
import random
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import lightning as L
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
    "batch_size": 32,
    "grad_accum": 4,
}
TINY = {
    "n_layer": 2,
    "n_head": 2,
    "n_embd": 64,
    "block_size": 64,
    "vocab_size": 512,
    "batch_size": 4,
    "grad_accum": 1,
}
SDPA_BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}
MODES = ("plain", "fsdp", "framework", "framework_fsdp")
MODE_ALIASES = {"both": ("plain", "fsdp"), "all": MODES}
FLOAT8 = "+float8"  # a mode with this suffix trains the blocks' linear layers in float8 (parallel.float8)


def base_mode(mode: str) -> str:
    return mode.removesuffix(FLOAT8)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--mode",
        default="plain",
        help="comma-separated modes: plain, fsdp, framework, framework_fsdp; or both (plain,fsdp) or all",
    )
    parser.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    parser.add_argument("--tiny", action="store_true", help="a 2-layer 64-wide model for a CPU smoke test")
    for key in GPT2_124M:  # the shape, batch and accumulation of conf/experiment/gpt2_124m.yaml
        flag = "--" + key.replace("_", "-")
        parser.add_argument(flag, type=int, default=None, help=f"default {GPT2_124M[key]} ({TINY[key]} tiny)")
    parser.add_argument("--steps", type=int, default=30, help="timed optimizer steps per run (one window)")
    parser.add_argument("--warmup", type=int, default=8, help="untimed optimizer steps before them")
    parser.add_argument("--rounds", type=int, default=1, help="times each mode runs, interleaved")
    parser.add_argument(
        "--dtype", choices=("bfloat16", "float32"), default=None, help="autocast dtype (default bf16 on cuda)"
    )
    parser.add_argument(
        "--compile", action=argparse.BooleanOptionalAction, default=None, help="default: on for cuda"
    )
    parser.add_argument(
        "--compile-loss",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="plain/fsdp: also compile the objective's loss, as the framework does under parallel.compile "
        "(default: as --compile; --no-compile-loss times compiled blocks with an eager head and loss)",
    )
    parser.add_argument(
        "--fused", action=argparse.BooleanOptionalAction, default=True, help="fused AdamW (default on)"
    )
    parser.add_argument("--sdpa", choices=(*SDPA_BACKENDS, "any"), default="flash", help="attention kernel")
    parser.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm; 0: no clipping")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    parser.add_argument(
        "--profile", default=None, help="profile 3 steps after the timed ones; the kernel table goes to DIR"
    )
    parser.add_argument(
        "--sync-debug",
        default=None,
        help="framework modes: list the host syncs of 3 steps after the timed ones (with stacks) in DIR",
    )
    parser.add_argument("--workdir", default=None, help="framework runs' corpus and caches (default: temp)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)  # framework or framework_fsdp, maybe +float8
    args = parser.parse_args(argv)
    shape = TINY if args.tiny else GPT2_124M
    for key, value in shape.items():
        if getattr(args, key) is None:
            setattr(args, key, value)
    if args.dtype is None:
        args.dtype = "bfloat16" if args.device == "cuda" else "float32"
    if args.compile is None:
        args.compile = args.device == "cuda"
    if args.compile_loss is None:
        args.compile_loss = args.compile
    args.modes = modes(args.mode, parser)
    if args.device == "cuda" and not torch.cuda.is_available():
        raise SystemExit("no CUDA device visible; for a smoke test on a CPU use --device cpu --tiny")
    return args


def modes(spec: str, parser: argparse.ArgumentParser) -> tuple[str, ...]:
    if spec in MODE_ALIASES:
        return MODE_ALIASES[spec]
    chosen = tuple(m.strip() for m in spec.split(",") if m.strip())
    unknown = [m for m in chosen if base_mode(m) not in MODES]
    if unknown or not chosen:
        parser.error(
            f"--mode {spec!r}: unknown {unknown}; choose from {', '.join(MODES)} (each may end in {FLOAT8}), "
            "both or all"
        )
    return chosen


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


def gpt_config(args: argparse.Namespace) -> GPTConfig:
    return GPTConfig(
        vocab_size=args.vocab_size,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
        block_size=args.block_size,
        dropout=0.0,
    )


def build(
    args: argparse.Namespace, mode: str, device: torch.device, mesh
) -> tuple[GPT, torch.optim.Optimizer]:
    """The model (compiled and, for fsdp, sharded as the framework does) and its optimizer."""
    torch.manual_seed(args.seed)
    model = GPT(gpt_config(args)).to(device).train()
    bf16 = args.dtype == "bfloat16"
    sharded = base_mode(mode) == "fsdp"
    plan = ParallelPlan(
        compile=args.compile,
        param_dtype="bfloat16" if sharded and bf16 else None,  # as strategy.resolve for bf16-mixed
        reduce_dtype="float32",
        float8=mode.endswith(FLOAT8),
    )
    model = parallelize(model, plan, mesh if sharded else None)
    optimizer = adamw(param_groups(model), lr=6e-4, fused=args.fused)  # built on the (sharded) parameters
    return model, optimizer


def random_batches(args: argparse.Namespace, device: torch.device, count: int = 4) -> list[dict]:
    generator = torch.Generator().manual_seed(args.seed)
    shape = (count, args.batch_size, args.block_size + 1)
    tokens = torch.randint(0, args.vocab_size, shape, generator=generator).to(device)
    return [{"input_ids": t[:, :-1], "labels": t[:, 1:]} for t in tokens]  # (B, T) each


# --------------------------------------------------------------------------- the hand-written loop


def optimizer_step(model, loss_fn, optimizer, batches, step: int, args, autocast) -> torch.Tensor:
    """``--grad-accum`` micro-batches (FSDP reduce-scatters after the last only, as the framework's module
    does), gradient clipping, AdamW. Returns the step's mean loss (not synchronised)."""
    total = torch.zeros((), device=batches[0]["input_ids"].device)
    for micro in range(args.grad_accum):
        if hasattr(model, "set_requires_gradient_sync"):
            model.set_requires_gradient_sync(micro == args.grad_accum - 1)
        batch = batches[(step * args.grad_accum + micro) % len(batches)]
        with autocast, attention(args.sdpa):
            loss_sum, n_tokens, _ = loss_fn(model, batch)
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


def loop_run(args: argparse.Namespace, mode: str, device: torch.device, mesh) -> dict:
    """plain or fsdp: the window's seconds, the shape's FLOPs and the peak memory."""
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model, optimizer = build(args, mode, device, mesh)
    flops_per_token = model.flops_per_token(args.block_size)
    params = model.num_params(non_embedding=False)
    objective = CausalLM()
    loss_fn = torch.compile(objective.loss) if args.compile_loss else objective.loss  # as LanguageModule
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=args.dtype == "bfloat16")
    step_fn = functools.partial(optimizer_step, model, loss_fn, optimizer, random_batches(args, device))
    for step in range(args.warmup):
        step_fn(step, args, autocast)
    synchronize(device)
    start = time.perf_counter()
    for step in range(args.warmup, args.warmup + args.steps):
        loss = step_fn(step, args, autocast)
    synchronize(device)
    seconds = time.perf_counter() - start
    if args.profile:
        profile(args, mode, device, functools.partial(step_fn, args=args, autocast=autocast))
    result = {
        "window_seconds": seconds,
        "params": params,
        "flops_per_token": flops_per_token,
        "fused_adamw": bool(optimizer.defaults.get("fused")),
        "peak_memory_mb": peak_memory_mb(device),
        "last_loss": round(loss.item(), 4),  # random tokens: about ln(vocab_size) if the step is sane
    }
    del model, optimizer, step_fn
    release(device)
    return result


def profile(args: argparse.Namespace, mode: str, device: torch.device, step_fn) -> None:
    """Three steps under torch.profiler: a table of the operators by device time (self), top 40."""
    from torch.profiler import ProfilerActivity

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if device.type == "cuda" else [])
    with torch.profiler.profile(activities=activities) as prof:
        for step in range(3):
            step_fn(step=step)
        synchronize(device)
    write_profile(
        prof, device, Path(args.profile) / f"{mode}-b{args.batch_size}-a{args.grad_accum}-profile.txt"
    )


def write_profile(prof: torch.profiler.profile, device: torch.device, path: Path) -> None:
    """The 40 operators that took the most device time (CPU time on a CPU), as a table."""
    sort = "self_cuda_time_total" if device.type == "cuda" else "self_cpu_time_total"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(prof.key_averages().table(sort_by=sort, row_limit=40, max_name_column_width=70))


# --------------------------------------------------------------------------- the framework


def framework_run(args: argparse.Namespace, mode: str, device: torch.device, workdir: Path) -> dict:
    """framework or framework_fsdp, in a fresh process (``--worker``): Lightning owns the device there."""
    command = [sys.executable, __file__, "--worker", mode, "--workdir", str(workdir)]
    for key in (
        "device",
        "n_layer",
        "n_head",
        "n_embd",
        "block_size",
        "vocab_size",
        "batch_size",
        "grad_accum",
        "steps",
        "warmup",
        "dtype",
        "grad_clip",
        "seed",
    ):
        command += ["--" + key.replace("_", "-"), str(getattr(args, key))]
    command.append("--compile" if args.compile else "--no-compile")
    command.append("--fused" if args.fused else "--no-fused")
    for key in ("profile", "sync_debug"):
        if getattr(args, key):
            command += ["--" + key.replace("_", "-"), str(Path(getattr(args, key)).resolve())]
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    for key in (
        "MASTER_ADDR",
        "MASTER_PORT",
    ):  # this process's group holds that port; Lightning picks its own
        env.pop(key, None)
    done = subprocess.run(command, capture_output=True, text=True, env=env)
    if done.returncode != 0:
        raise SystemExit(f"{mode} run failed (exit {done.returncode}):\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def framework_worker(args: argparse.Namespace) -> dict:
    """Train through ``lightning_llm.train.train`` on the composed ``experiment=gpt2_124m`` config."""
    from lightning_llm import cli, config, plugins
    from lightning_llm.train import train

    device = torch.device("cuda", 0) if args.device == "cuda" else torch.device("cpu")
    workdir = Path(args.workdir)
    total_steps = args.warmup + args.steps
    train_tokens = total_steps * args.grad_accum * args.batch_size * (args.block_size + 1)
    corpus = workdir / f"corpus-{train_tokens}.txt"  # about a word a token; val and test take 5% each
    if not corpus.is_file():
        write_corpus(corpus, words=int(1.3 * train_tokens) + 50_000)
    overrides = [
        "experiment=gpt2_124m",
        "data=text",
        f"data.paths=[{corpus}]",
        "logger=csv",
        f"paths.cache_dir={workdir / 'cache'}",
        f"tokenizer.vocab_size={args.vocab_size}",
        f"model.n_layer={args.n_layer}",
        f"model.n_head={args.n_head}",
        f"model.n_embd={args.n_embd}",
        f"model.block_size={args.block_size}",
        f"data.block_size={args.block_size}",
        f"data.batch_size={args.batch_size}",
        f"trainer.accumulate_grad_batches={args.grad_accum}",
        f"trainer.gradient_clip_val={args.grad_clip}",
        f"trainer.max_steps={total_steps + (3 if args.profile or args.sync_debug else 0)}",
        "scheduler.warmup_steps=null",  # 10% of this short run (the preset's 700 steps would outlast it)
        # Only training is timed: no validation, test or checkpoint (a 1.5 GB write at the end) to wait for.
        "trainer.limit_val_batches=0",
        "trainer.limit_test_batches=0",
        "callbacks.checkpoint.save_last=false",
        "callbacks.checkpoint.save_top_k=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "callbacks.samples.max_new_tokens=8",
        f"callbacks.throughput.warmup_steps={args.warmup}",
        f"parallel.compile={str(args.compile).lower()}",
        f"seed={args.seed}",
    ]
    if not args.fused:
        overrides.append("optim.fused=false")  # null (the default) picks the fused kernel
    if base_mode(args.worker) == "framework_fsdp":
        overrides += ["trainer=fsdp", "trainer.devices=1"]
    if args.worker.endswith(FLOAT8):
        overrides.append("parallel.float8=true")
    if args.device == "cpu":
        overrides += ["trainer.accelerator=cpu"]
    precision = "bf16-mixed" if args.dtype == "bfloat16" else "32-true"
    overrides.append(f"trainer.precision={precision}")
    plugins.load()
    config.store_schemas()
    cfg = cli.compose_config(overrides)

    window = Window(device, args.warmup, total_steps)  # a fresh process: its peak memory is this run's
    diagnose = Diagnose(args, total_steps, device)
    with tempfile.TemporaryDirectory(dir=workdir) as run_dir:
        summary, objects = train(cfg, run_dir=run_dir, callbacks=[window, diagnose])
        losses = train_losses(Path(run_dir))
    model = objects["model"]
    return {
        "window_seconds": window.end - window.start,
        "params": sum(p.numel() for p in model.parameters()),
        "flops_per_token": meta_flops_per_token(args),
        "fused_adamw": bool(objects["trainer"].optimizers[0].defaults.get("fused")),
        "peak_memory_mb": peak_memory_mb(device),
        "last_loss": round(float(summary["train_loss"]), 4),
        "framework_tokens_per_sec": summary.get("tokens_per_second"),  # the Throughput callback's own
        "framework_mfu": summary.get("mfu"),
        "tokenizer_vocab": objects["tokenizer"].vocab_size,
        "losses": losses,  # optimizer step -> train loss, every logged step (float8 is compared on them)
    }


def train_losses(run_dir: Path) -> dict[int, float]:
    """Optimizer step -> train loss, from the run's CSV log."""
    losses = {}
    for path in sorted(run_dir.glob("csv/version_*/metrics.csv")):
        with path.open() as file:
            for row in csv.DictReader(file):
                if row.get("train/loss"):
                    losses[int(row["step"]) + 1] = float(row["train/loss"])  # csv step 0 = optimizer step 1
    return losses


class Window(L.Callback):
    """Synchronises the device and reads the clock when optimizer steps ``start`` and ``end`` have ended."""

    def __init__(self, device: torch.device, start: int, end: int) -> None:
        self.device, self.steps = device, (start, end)
        self.start = self.end = 0.0
        self._last_step = -1

    def on_train_batch_end(self, trainer: L.Trainer, *_: object) -> None:
        step_ended, self._last_step = trainer.global_step != self._last_step, trainer.global_step
        if step_ended and trainer.global_step in self.steps:
            synchronize(self.device)
            if trainer.global_step == self.steps[0]:
                self.start = time.perf_counter()
            else:
                self.end = time.perf_counter()


class Diagnose(L.Callback):
    """``--profile`` / ``--sync-debug`` for the framework: over the 3 steps after the timed window, a
    torch.profiler table and/or every host sync CUDA reports (``torch.cuda.set_sync_debug_mode``), each with
    the Python stack that caused it."""

    def __init__(self, args: argparse.Namespace, start: int, device: torch.device) -> None:
        self.args, self.start, self.device = args, start, device
        self.name = f"{args.worker}-b{args.batch_size}-a{args.grad_accum}"
        self._last_step, self._profiler, self._syncs, self._saved = -1, None, [], None

    def on_train_batch_end(self, trainer: L.Trainer, *_: object) -> None:
        step_ended, self._last_step = trainer.global_step != self._last_step, trainer.global_step
        if step_ended and trainer.global_step == self.start:
            self._begin()
        elif step_ended and trainer.global_step == self.start + 3:
            self._finish()

    def _begin(self) -> None:
        if self.args.profile:
            from torch.profiler import ProfilerActivity

            cuda = [ProfilerActivity.CUDA] if self.device.type == "cuda" else []
            self._profiler = torch.profiler.profile(activities=[ProfilerActivity.CPU, *cuda])
            self._profiler.__enter__()
        if self.args.sync_debug and self.device.type == "cuda":
            import traceback
            import warnings

            self._saved = (warnings.filters[:], warnings.showwarning)
            warnings.simplefilter("always")
            warnings.showwarning = lambda message, *_, **__: self._syncs.append(
                f"{message}\n{''.join(traceback.format_stack(limit=30)[:-1])}"
            )
            torch.cuda.set_sync_debug_mode("warn")

    def _finish(self) -> None:
        if self._profiler is not None:
            synchronize(self.device)
            self._profiler.__exit__(None, None, None)
            write_profile(self._profiler, self.device, Path(self.args.profile) / f"{self.name}-profile.txt")
        if self._saved is not None:
            import warnings

            torch.cuda.set_sync_debug_mode(0)
            warnings.filters[:], warnings.showwarning = self._saved
            folder = Path(self.args.sync_debug)
            folder.mkdir(parents=True, exist_ok=True)
            text = f"{len(self._syncs)} host syncs in 3 steps\n\n" + "\n".join(self._syncs)
            (folder / f"{self.name}-syncs.txt").write_text(text)


def meta_flops_per_token(args: argparse.Namespace) -> float:
    """The model's FLOPs per token, from a copy built on the meta device (compiled or sharded modules may
    not expose ``flops_per_token`` any more)."""
    with torch.device("meta"):
        return GPT(gpt_config(args)).flops_per_token(args.block_size)


def write_corpus(path: Path, words: int, vocabulary: int = 80_000, seed: int = 0) -> Path:
    """``words`` random words (Zipf-distributed over random letter strings, in paragraphs of 8 lines of 16),
    so byte-level BPE can learn GPT-2's 50257 tokens; speed does not depend on what the text says."""
    rng = random.Random(seed)
    letters = "abcdefghijklmnopqrstuvwxyz"
    lexicon = ["".join(rng.choices(letters, k=rng.randint(2, 10))) for _ in range(vocabulary)]
    text = rng.choices(lexicon, weights=[1 / (rank + 1) for rank in range(vocabulary)], k=words)
    lines = [" ".join(text[i : i + 16]) for i in range(0, words, 16)]
    paragraphs = ("\n".join(lines[i : i + 8]) for i in range(0, len(lines), 8))
    tmp = path.with_suffix(".tmp")
    tmp.write_text("\n\n".join(paragraphs) + "\n")
    tmp.replace(path)
    return path


# --------------------------------------------------------------------------- results


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # Linux: KiB; cumulative


def release(device: torch.device) -> None:
    """Free one run's memory and compiled graphs so the next run starts from the same state."""
    gc.collect()
    torch._dynamo.reset()
    if device.type == "cuda":
        torch.cuda.empty_cache()


def describe(args: argparse.Namespace, mode: str, round_index: int, device: torch.device, run: dict) -> dict:
    cuda = device.type == "cuda"
    tokens_per_step = args.batch_size * args.block_size * args.grad_accum
    tokens_per_second = args.steps * tokens_per_step / run["window_seconds"]
    peak_flops = device_peak_flops(device, "bf16-mixed" if args.dtype == "bfloat16" else "32-true")
    mfu = None if peak_flops is None else round(tokens_per_second * run["flops_per_token"] / peak_flops, 4)
    return {
        "mode": mode,
        "round": round_index,
        "device": torch.cuda.get_device_name(device) if cuda else "cpu",
        "device_key": device_key(torch.cuda.get_device_name(device)) if cuda else None,
        "torch": torch.__version__,
        "dtype": args.dtype,
        "compile": args.compile,
        "compile_loss": args.compile_loss if base_mode(mode) in ("plain", "fsdp") else args.compile,
        "sdpa": args.sdpa if base_mode(mode) in ("plain", "fsdp") else "auto",
        "float8": mode.endswith(FLOAT8),
        "n_layer": args.n_layer,
        "n_head": args.n_head,
        "n_embd": args.n_embd,
        "block_size": args.block_size,
        "vocab_size": args.vocab_size,
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "tokens_per_step": tokens_per_step,
        "steps": args.steps,
        "warmup": args.warmup,
        "step_seconds": round(run["window_seconds"] / args.steps, 5),
        "tokens_per_second": round(tokens_per_second, 1),
        "peak_flops": peak_flops,
        "mfu": mfu,
        "memory_measure": "cuda_max_memory_allocated" if cuda else "cpu_process_peak_rss",
        **{k: v for k, v in run.items() if k != "window_seconds"},
    }


def emit(result: dict, out: Path | None) -> None:
    line = json.dumps(result)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as file:
            file.write(line + "\n")


def summarize(results: list[dict]) -> dict:
    """Each mode's median tokens/s, MFU and peak memory over rounds, and its ratio to plain's."""
    out: dict = {"summary": "modes", "rounds": max(r["round"] for r in results) + 1}
    medians = {}
    for mode in dict.fromkeys(r["mode"] for r in results):
        runs = [r for r in results if r["mode"] == mode]
        medians[mode] = statistics.median(r["tokens_per_second"] for r in runs)
        out[f"{mode}_tokens_per_second"] = round(medians[mode], 1)
        mfus = [r["mfu"] for r in runs if r["mfu"] is not None]
        out[f"{mode}_mfu"] = round(statistics.median(mfus), 4) if mfus else None
        out[f"{mode}_peak_memory_mb"] = statistics.median(r["peak_memory_mb"] for r in runs)
    if "plain" in medians:
        for mode, rate in medians.items():
            if mode != "plain":
                out[f"ratio_{mode}_over_plain"] = round(rate / medians["plain"], 4)
    for mode in [m for m in medians if m.endswith(FLOAT8) and base_mode(m) in medians]:
        out[f"ratio_{mode}_over_{base_mode(mode)}"] = round(medians[mode] / medians[base_mode(mode)], 4)
        out.update(float8_curves(results, mode))
    return out


def float8_curves(results: list[dict], mode: str) -> dict:
    """How far float8's training loss is from its high-precision run's (framework modes log a curve): the
    largest relative gap over the logged steps and over the last tenth of them, first round of each."""
    modes = (base_mode(mode), mode)
    curves = [next((r.get("losses") for r in results if r["mode"] == m), None) for m in modes]
    if not all(curves):
        return {}
    reference, float8 = ({int(step): loss for step, loss in curve.items()} for curve in curves)
    steps = sorted(set(reference) & set(float8))
    gaps = [abs(float8[s] - reference[s]) / abs(reference[s]) for s in steps]
    tail = gaps[-max(1, len(gaps) // 10) :]
    return {
        f"{mode}_loss_gap_max": round(max(gaps), 4),
        f"{mode}_loss_gap_last_tenth": round(max(tail), 4),
        f"{mode}_final_losses": [reference[steps[-1]], float8[steps[-1]]],
    }


# --------------------------------------------------------------------------- main


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps(framework_worker(args)), flush=True)
        return
    device = (
        torch.device("cuda", torch.cuda.current_device()) if args.device == "cuda" else torch.device("cpu")
    )
    out = Path(args.out) if args.out else None
    mesh = start_process_group(device) if "fsdp" in args.modes else None
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(args.workdir or tmp)
        try:
            for round_index in range(args.rounds):
                for mode in args.modes:
                    if mode.startswith("framework"):
                        run = framework_run(args, mode, device, workdir)
                    else:
                        run = loop_run(args, mode, device, mesh)
                    result = describe(args, mode, round_index, device, run)
                    emit(result, out)
                    results.append(result)
            if len(results) > 1:
                emit(summarize(results), out)
        finally:
            if mesh is not None:
                torch.distributed.destroy_process_group()


if __name__ == "__main__":
    main()
