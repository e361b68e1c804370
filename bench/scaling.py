"""Scaling benchmark: GPT training speed and memory against model size and sequence length, and FSDP's
parameter memory per process against the number of processes.

    python bench/scaling.py [--shapes 2/2/64 4/4/128 6/6/192 6/6/384 8/8/512] [--block-size 128]
                            [--seq-shape 4/4/256] [--seq-lens 64 128 256 512] [--batch-size 8]
                            [--steps 8] [--warmup 2] [--device cpu] [--dtype float32] [--threads N]
                            [--devices 1 2] [--parts size seq fsdp] [--out results.jsonl]
                            [--plot bench/scaling.png]

Three parts, each printing one JSON line per measurement (also appended to ``--out`` when given):

- ``size``: training steps of the real GPT (``lightning_llm.models.gpt``) for each shape ``L/H/C``
  (layers, heads, width) at ``--block-size`` tokens: the ``causal_lm`` objective's cross-entropy, backward,
  gradient clipping, then the framework's ``adamw`` plugin on ``param_groups`` (fused or foreach as the
  plugin picks by default; the JSON's ``fused_adamw`` says which). ``--dtype bfloat16`` runs forward and
  loss under bf16 autocast with fp32 weights (the framework's ``bf16-mixed``). Tokens/s comes from the
  median step time over ``--steps`` steps after ``--warmup`` untimed ones. Each measurement runs in a fresh
  subprocess, so its peak memory is its own: on CUDA ``torch.cuda.max_memory_allocated`` (weights,
  gradients, optimizer state, activations); on CPU the growth of the process's peak resident memory
  (``ru_maxrss``) from just before the model is built, after a throwaway step of a micro model has paid
  the kernel libraries' one-off ~90 MB. The JSON's ``memory_measure`` says which.
- ``seq``: the same at one shape (``--seq-shape``) for each of ``--seq-lens`` (fixed batch size, so a
  step holds more tokens at longer sequences).
- ``fsdp``: the framework CLI itself (``python -m lightning_llm trainer=fsdp trainer.devices=N ...``, a few
  steps, ``logger=csv``) for each N in ``--devices`` (N=1 runs ``trainer.strategy=single``: the whole
  model), reading ``params`` and ``params_per_process`` (counted on rank 0) from the run's summary.json:
  the parameter bytes each process holds and their fraction of the full model.

A PNG (``--plot``) shows tokens/s and peak memory against parameters for the ``size`` part. Weights and
token ids are random: speed and memory do not depend on them. On a CPU shared with other work use
``--threads 1``: spin-waiting worker threads on busy cores make steps many times slower. On a GPU
machine: ``--device cuda --dtype bfloat16 --devices 1 2 4 8`` (larger shapes and batches welcome).
Numbers belong in bench/RESULTS.md, not in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from lightning_llm.flops import device_peak_flops
from lightning_llm.models.gpt import GPT, GPTConfig
from lightning_llm.objectives.causal_lm import CausalLM
from lightning_llm.optim import adamw, param_groups

REPO = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--parts", nargs="+", choices=("size", "seq", "fsdp"), default=["size", "seq", "fsdp"]
    )
    parser.add_argument(
        "--shapes",
        nargs="+",
        default=["2/2/64", "4/4/128", "6/6/192", "6/6/384", "8/8/512"],
        help="model shapes for the size part, each n_layer/n_head/n_embd",
    )
    parser.add_argument("--block-size", type=int, default=128, help="sequence length of the size part")
    parser.add_argument("--seq-shape", default="4/4/256", help="model shape of the seq part")
    parser.add_argument("--seq-lens", type=int, nargs="+", default=[64, 128, 256, 512])
    parser.add_argument("--batch-size", type=int, default=8, help="sequences per step (size and seq parts)")
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--steps", type=int, default=8, help="timed steps per measurement (median)")
    parser.add_argument("--warmup", type=int, default=2, help="untimed steps before them")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32", help="bf16: autocast")
    parser.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: torch's)")
    parser.add_argument("--grad-clip", type=float, default=1.0, help="max gradient norm; 0: no clipping")
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2], help="processes of the fsdp part")
    parser.add_argument("--fsdp-shape", default="6/6/384", help="model shape of the fsdp part")
    parser.add_argument("--fsdp-block-size", type=int, default=128)
    parser.add_argument("--fsdp-steps", type=int, default=4, help="optimizer steps of each fsdp run")
    parser.add_argument(
        "--fsdp-precision",
        default=None,
        help="trainer.precision (default: 32-true on cpu, bf16-mixed on cuda)",
    )
    parser.add_argument("--run-root", default=None, help="folder for the fsdp runs (default: a temp dir)")
    parser.add_argument("--timeout", type=int, default=900, help="seconds allowed per subprocess")
    parser.add_argument("--out", default=None, help="also append the JSON lines to this file")
    parser.add_argument("--plot", default=str(REPO / "bench" / "scaling.png"), help="PNG path; '' for none")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)  # one measurement, as JSON
    return parser.parse_args(argv)


def parse_shape(shape: str) -> tuple[int, int, int]:
    try:
        n_layer, n_head, n_embd = (int(part) for part in shape.split("/"))
    except ValueError:
        raise SystemExit(f"a shape is n_layer/n_head/n_embd, e.g. 4/4/128; got {shape!r}") from None
    return n_layer, n_head, n_embd


# --------------------------------------------------------------------------- one measurement (subprocess)


def train_step(model, objective, optimizer, batch, autocast, grad_clip: float) -> None:
    """One optimizer step as the framework's LightningModule takes it: mean token loss, backward, clip,
    AdamW, zero the gradients."""
    with autocast:
        loss_sum, n_tokens, _ = objective.loss(model, batch)
        loss = loss_sum / n_tokens
    loss.backward()
    if grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)


def timed_training(spec: dict, steps: int) -> tuple[GPT, torch.optim.Optimizer, list[float]]:
    """Builds the model and optimizer of ``spec`` and trains ``steps`` steps on random tokens; returns them
    and each step's seconds."""
    device = torch.device(spec["device"])
    config = GPTConfig(
        vocab_size=spec["vocab_size"],
        n_layer=spec["n_layer"],
        n_head=spec["n_head"],
        n_embd=spec["n_embd"],
        block_size=spec["block_size"],
    )
    model = GPT(config).to(device).train()
    optimizer = adamw(param_groups(model))  # fused or not: the plugin's default for this device
    objective = CausalLM()
    autocast = torch.autocast(device.type, dtype=torch.bfloat16, enabled=spec["dtype"] == "bfloat16")
    B, T = spec["batch_size"], spec["block_size"]
    generator = torch.Generator().manual_seed(spec["seed"])
    tokens = torch.randint(0, config.vocab_size, (4, B, T + 1), generator=generator).to(device)
    batches = [{"input_ids": t[:, :-1], "labels": t[:, 1:]} for t in tokens]  # (B, T) each
    seconds = []
    for step in range(steps):
        synchronize(device)
        start = time.perf_counter()
        train_step(model, objective, optimizer, batches[step % len(batches)], autocast, spec["grad_clip"])
        synchronize(device)
        seconds.append(time.perf_counter() - start)
    return model, optimizer, seconds


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def measure(spec: dict) -> dict:
    """Tokens/s and peak memory of training one shape; meant to run in a fresh process (see ``worker``)."""
    device = torch.device(spec["device"])
    if spec["threads"]:
        torch.set_num_threads(spec["threads"])
    torch.manual_seed(spec["seed"])
    # The first step of any model initialises the kernel libraries and thread pool (~90 MB of CPU memory
    # that does not grow with the model); a throwaway step of a micro model pays that before the baseline.
    timed_training({**spec, "n_layer": 1, "n_head": 1, "n_embd": 8, "block_size": 8, "batch_size": 1}, 1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    rss_before_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # Linux reports KiB

    model, optimizer, seconds = timed_training(spec, spec["warmup"] + spec["steps"])
    step_seconds = statistics.median(seconds[spec["warmup"] :])
    if device.type == "cuda":
        peak_mb, memory_measure = torch.cuda.max_memory_allocated(device) / 2**20, "cuda_max_memory_allocated"
    else:
        peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before_kib
        peak_mb, memory_measure = peak_kib / 1024, "cpu_peak_rss_growth_fresh_process"
    tokens_per_second = spec["batch_size"] * spec["block_size"] / step_seconds
    flops_per_token = model.flops_per_token(spec["block_size"])
    achieved = tokens_per_second * flops_per_token
    peak_flops = device_peak_flops(device, "bf16-mixed" if spec["dtype"] == "bfloat16" else "32-true")
    return {
        "params": model.num_params(non_embedding=False),
        "params_non_embedding": model.num_params(),
        "flops_per_token": flops_per_token,
        "step_seconds_median": round(step_seconds, 5),
        "tokens_per_second": round(tokens_per_second, 1),
        "tflops_per_second": round(achieved / 1e12, 4),
        "mfu": None if peak_flops is None else round(achieved / peak_flops, 4),
        "peak_memory_mb": round(peak_mb, 1),
        "memory_measure": memory_measure,
        "threads": torch.get_num_threads(),
        "fused_adamw": bool(optimizer.defaults.get("fused")),
    }


def worker(spec_json: str) -> None:
    spec = json.loads(spec_json)
    print(json.dumps(measure(spec)), flush=True)


def run_measurement(spec: dict, timeout: int) -> dict:
    """``measure(spec)`` in a fresh Python process, so the peak memory is this measurement's alone."""
    command = [sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"measurement {spec} failed (exit {result.returncode}):\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def training_runs(args: argparse.Namespace) -> list[dict]:
    """The size and seq parts: one spec per measurement."""
    common = {
        "batch_size": args.batch_size,
        "vocab_size": args.vocab_size,
        "steps": args.steps,
        "warmup": args.warmup,
        "device": args.device,
        "dtype": args.dtype,
        "threads": args.threads,
        "grad_clip": args.grad_clip,
        "seed": args.seed,
    }
    specs = []
    if "size" in args.parts:
        for shape in args.shapes:
            n_layer, n_head, n_embd = parse_shape(shape)
            shape_spec = {"n_layer": n_layer, "n_head": n_head, "n_embd": n_embd}
            specs.append({"part": "size", **shape_spec, "block_size": args.block_size, **common})
    if "seq" in args.parts:
        n_layer, n_head, n_embd = parse_shape(args.seq_shape)
        for block_size in args.seq_lens:
            shape_spec = {"n_layer": n_layer, "n_head": n_head, "n_embd": n_embd}
            specs.append({"part": "seq", **shape_spec, "block_size": block_size, **common})
    return specs


# --------------------------------------------------------------------------- FSDP through the CLI


def fsdp_run(args: argparse.Namespace, processes: int, run_root: Path) -> dict:
    """One short run of ``python -m lightning_llm`` with ``processes`` processes; its summary's parameter
    counts. N=1 is the unsharded reference (``trainer.strategy=single``)."""
    n_layer, n_head, n_embd = parse_shape(args.fsdp_shape)
    cuda = args.device == "cuda"
    precision = args.fsdp_precision or ("bf16-mixed" if cuda else "32-true")
    run_dir = run_root / f"fsdp_{processes}"
    strategy = ["trainer=fsdp"] if processes > 1 else ["trainer.strategy=single"]
    overrides = [
        *strategy,
        f"trainer.accelerator={'gpu' if cuda else 'cpu'}",
        f"trainer.devices={processes}",
        f"trainer.precision={precision}",
        f"trainer.max_steps={args.fsdp_steps}",
        f"trainer.val_check_interval={args.fsdp_steps}",
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "trainer.log_every_n_steps=1",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "logger=csv",
        "tokenizer=char",  # trains in a second; the parameters are the blocks', not a large vocabulary's
        f"model.n_layer={n_layer}",
        f"model.n_head={n_head}",
        f"model.n_embd={n_embd}",
        f"model.block_size={args.fsdp_block_size}",
        f"data.block_size={args.fsdp_block_size}",
        f"data.batch_size={args.batch_size}",
        "callbacks.samples.num_samples=0",
        "callbacks.throughput.warmup_steps=1",
        f"seed={args.seed}",
        f"hydra.run.dir={run_dir}",
    ]
    env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
    env.pop("LOCAL_RANK", None)  # Lightning must start this run's own processes
    if not cuda:  # N processes share the cores; oversubscribed spin-waiting threads crawl
        env.setdefault("OMP_NUM_THREADS", str(max(1, (os.cpu_count() or 1) // processes)))
    command = [sys.executable, "-m", "lightning_llm", *overrides]
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=args.timeout, cwd=REPO)
    if result.returncode != 0:
        raise SystemExit(f"fsdp run with {processes} processes failed:\n{result.stderr[-3000:]}")
    summary = json.loads((run_dir / "summary.json").read_text())
    bytes_per_param = 2 if precision == "bf16-true" else 4  # mixed precision keeps fp32 weights
    params, local = summary["params"], summary["params_per_process"]
    return {
        "part": "fsdp",
        "processes": processes,
        "strategy": "fsdp" if processes > 1 else "single",
        "n_layer": n_layer,
        "n_head": n_head,
        "n_embd": n_embd,
        "block_size": args.fsdp_block_size,
        "device": args.device,
        "precision": precision,
        "params": params,
        "params_per_process": local,
        "param_bytes_per_process": local * bytes_per_param,
        "param_bytes_full_model": params * bytes_per_param,
        "fraction_of_full_model": round(local / params, 4),
        # Rank 0's whole-process peak as the run measures it (CUDA: max_memory_allocated; CPU: peak RSS,
        # Python and libraries included), for orientation; the parameter counts are the exact figures.
        "rank0_peak_memory_mb": summary.get("peak_memory_mb"),
        "run_dir": str(run_dir),
    }


# --------------------------------------------------------------------------- output


def emit(result: dict, out: Path | None) -> None:
    line = json.dumps(result)
    print(line, flush=True)
    if out is not None:
        with out.open("a") as file:
            file.write(line + "\n")


def plot(results: list[dict], path: Path) -> None:
    """Two panels for the size part: tokens/s and peak memory against parameters (log x)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    sizes = sorted((r for r in results if r["part"] == "size"), key=lambda r: r["params"])
    if not sizes:
        return
    params = [r["params"] for r in sizes]
    labels = [f"{r['n_layer']}/{r['n_head']}/{r['n_embd']}" for r in sizes]
    first = sizes[0]
    from matplotlib.ticker import NullFormatter

    memory_name = {
        "cuda_max_memory_allocated": "torch.cuda.max_memory_allocated",
        "cpu_peak_rss_growth_fresh_process": "growth of peak RSS, one process per point",
    }.get(first["memory_measure"], first["memory_measure"])
    fig, (speed, memory) = plt.subplots(1, 2, figsize=(11, 4.5))
    for axis, key, ylabel, title in (
        (speed, "tokens_per_second", "tokens/s", "training throughput"),
        (memory, "peak_memory_mb", "MiB", f"peak memory ({memory_name})"),
    ):
        values = [r[key] for r in sizes]
        axis.plot(params, values, marker="o")
        for x, y, label in zip(params, values, labels, strict=True):
            axis.annotate(label, (x, y), textcoords="offset points", xytext=(4, 4), fontsize=8)
        axis.set_xscale("log")
        axis.set_yscale("log")
        axis.xaxis.set_minor_formatter(NullFormatter())
        axis.set_xlabel("parameters")
        axis.set_ylabel(ylabel)
        axis.set_title(title, fontsize=10)
        axis.grid(True, which="both", alpha=0.3)
    fig.suptitle(
        f"GPT training on {first['device']} ({first['dtype']}), block {first['block_size']}, "
        f"batch {first['batch_size']}, vocab {first['vocab_size']}; points labelled layers/heads/width"
    )
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    args = parse_args()
    if args.worker is not None:
        worker(args.worker)
        return
    out = Path(args.out) if args.out else None
    results = []
    for spec in training_runs(args):
        result = {**{k: v for k, v in spec.items() if k != "seed"}, **run_measurement(spec, args.timeout)}
        emit(result, out)
        results.append(result)
    if "fsdp" in args.parts:
        root = Path(args.run_root) if args.run_root else Path(tempfile.mkdtemp(prefix="bench_scaling_"))
        for processes in args.devices:
            emit(fsdp_run(args, processes, root), out)
    if args.plot and results:
        plot(results, Path(args.plot))
        print(json.dumps({"plot": args.plot}), flush=True)


if __name__ == "__main__":
    main()
