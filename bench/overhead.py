"""Framework overhead: the same GPT trained through lightning_llm and by a minimal hand-written PyTorch loop.

    python bench/overhead.py [--size small|medium|both] [--steps 250] [--warmup 50] [--rounds 3]

(a) **framework**: the config composed from conf/ exactly as ``python -m lightning_llm`` composes it
(``experiment=gpt_tiny`` plus the size's shape), trained by ``lightning_llm.train.train`` with every default
callback (checkpointing, throughput, NaN guard, samples, learning-rate monitor) and the CSV logger; validation
is pushed past the end so only training steps are timed. A probe callback notes the time at the end of every
batch; a step is the interval between two ends, so it includes fetching the batch and every hook.
(b) **plain**: the loop a researcher writes by hand (nanoGPT's): random windows of a memory-resident token
array, forward, cross-entropy, backward, clip, AdamW with the same settings and implementation, cosine LR.
(c) **lightning**: that same loop as the smallest LightningModule a researcher writes (``training_step``
returning the loss, ``configure_optimizers``, ``gradient_clip_val``; no logger, checkpointing or callbacks
but the clock), fed the plain loop's random windows: what Lightning's own loop costs, with nothing of this
framework in it. framework/lightning is the framework's own share of the tax, lightning/plain Lightning's.

All three build the same ``lightning_llm.models.gpt.GPT`` with the same shape, batch and optimizer. Each
run is a fresh process (nothing shared but the disk cache); each round runs framework, lightning, plain, so
slow drift of the machine (other load, thermal) hits all alike. Per run: median step time after
``--warmup`` steps; a ratio is the median over rounds of two kinds' tokens per second in the same round.
One JSON line per size. Numbers go into bench/RESULTS.md, never into tests.

Sizes (character-level tokenizer, the embedded pydoc corpus):
    small:  4 layers, 4 heads, 128 wide, block 64, batch 12   (the CPU "baby GPT")
    medium: 6 layers, 6 heads, 384 wide, block 256, batch 16  (nanoGPT's Shakespeare-char shape)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SIZES = {
    "small": {"n_layer": 4, "n_head": 4, "n_embd": 128, "block_size": 64, "batch_size": 12},
    "medium": {"n_layer": 6, "n_head": 6, "n_embd": 384, "block_size": 256, "batch_size": 16},
}
LR, MIN_LR_RATIO, WARMUP_LR_STEPS, WEIGHT_DECAY, CLIP = 1e-3, 0.1, 100, 0.1, 1.0
KINDS = ("framework", "lightning", "plain")  # run in this order every round


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", choices=(*SIZES, "both"), default="both")
    parser.add_argument("--steps", type=int, default=250, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=50, help="first steps of a run left out of the median")
    parser.add_argument("--rounds", type=int, default=3, help="framework/plain pairs per size")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    parser.add_argument("--cache-dir", default=None, help="token/tokenizer cache (default: a temp folder)")
    parser.add_argument("--worker", choices=KINDS, help=argparse.SUPPRESS)
    return parser.parse_args()


# ---------------------------------------------------------------------------------------------- workers


def step_clock():  # a lightning.Callback: Lightning is imported in the worker processes only
    """A callback noting when each training batch ends; ``intervals()``: the step times (s) between them."""
    import lightning as L

    class StepClock(L.Callback):
        def __init__(self) -> None:
            self.ends: list[float] = []

        def on_train_batch_end(self, *args: object) -> None:
            self.ends.append(time.perf_counter())

        def intervals(self) -> list[float]:
            return [b - a for a, b in zip(self.ends, self.ends[1:], strict=False)]

    return StepClock()


def framework_run(
    shape: dict[str, int], steps: int, cache_dir: str, extra: list[str] | tuple[str, ...] = ()
) -> list[float]:
    """Step times (s) of ``steps`` optimizer steps trained by lightning_llm.train.train (``extra``: more
    overrides, e.g. bench/nanogpt.py's model options)."""

    from lightning_llm import cli, config, plugins
    from lightning_llm.train import train

    plugins.load()
    config.store_schemas()
    overrides = [
        "experiment=gpt_tiny",
        "logger=csv",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        f"trainer.max_steps={steps}",
        f"trainer.val_check_interval={steps + 1}",  # no validation inside the timed steps
        "trainer.limit_val_batches=1",
        "trainer.limit_test_batches=1",
        "callbacks.samples.max_new_tokens=8",
        f"model.n_layer={shape['n_layer']}",
        f"model.n_head={shape['n_head']}",
        f"model.n_embd={shape['n_embd']}",
        f"model.block_size={shape['block_size']}",
        f"data.block_size={shape['block_size']}",
        f"data.batch_size={shape['batch_size']}",
        f"optim.lr={LR}",
        f"paths.cache_dir={cache_dir}",
        *extra,
    ]
    cfg = cli.compose_config(overrides)

    clock = step_clock()
    with tempfile.TemporaryDirectory() as run_dir:
        train(cfg, run_dir=run_dir, callbacks=[clock])
    return clock.intervals()


def lightning_run(shape: dict[str, int], steps: int) -> list[float]:
    """Step times (s) of the plain loop written as a minimal LightningModule (see the module docstring)."""
    import lightning as L
    import torch
    import torch.nn.functional as F

    torch.manual_seed(1337)
    model, optimizer, scheduler, next_batch = _plain_parts(shape, steps)

    class Windows(torch.utils.data.IterableDataset):
        def __iter__(self):
            while True:
                yield next_batch()

    class Module(L.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
            x, y = batch
            logits = self.model(x)
            return F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))

        def configure_optimizers(self) -> dict:
            return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}

    clock = step_clock()
    trainer = L.Trainer(
        accelerator="cpu",
        devices=1,
        max_steps=steps,
        gradient_clip_val=CLIP,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        limit_val_batches=0,
        callbacks=[clock],
    )
    trainer.fit(Module(), torch.utils.data.DataLoader(Windows(), batch_size=None))
    return clock.intervals()


def corpus_ids() -> tuple[list[int], int]:
    """The embedded corpus as character ids (what a character tokenizer gives), and the vocabulary size."""
    from pydoc_data.topics import topics

    text = "\n\n".join(topics[key] for key in sorted(topics))
    vocab = {ch: i for i, ch in enumerate(sorted(set(text)))}
    return [vocab[ch] for ch in text], len(vocab)


def _plain_parts(shape: dict[str, int], steps: int) -> tuple:
    """The hand-written loop's model, optimizer, LR schedule and batch function (random windows)."""
    import torch

    from lightning_llm.models.gpt import GPT, GPTConfig
    from lightning_llm.optim import param_groups

    ids, vocab_size = corpus_ids()
    data = torch.tensor(ids, dtype=torch.long)
    block, batch = shape["block_size"], shape["batch_size"]
    model = GPT(
        GPTConfig(
            vocab_size=vocab_size,
            n_layer=shape["n_layer"],
            n_head=shape["n_head"],
            n_embd=shape["n_embd"],
            block_size=block,
        )
    )
    # AdamW as the framework's adamw plugin builds it: decay on matrices only, fused kernel.
    groups = param_groups(model)
    optimizer = torch.optim.AdamW(groups, lr=LR, betas=(0.9, 0.95), weight_decay=WEIGHT_DECAY, fused=True)

    def lr_at(step: int) -> float:
        if step < WARMUP_LR_STEPS:
            return (step + 1) / WARMUP_LR_STEPS
        progress = (step - WARMUP_LR_STEPS) / max(1, steps - WARMUP_LR_STEPS)
        return MIN_LR_RATIO + (1 - MIN_LR_RATIO) * 0.5 * (1 + math.cos(math.pi * progress))

    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_at)

    def next_batch() -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(len(data) - block - 1, (batch,))
        window = torch.stack([data[s : s + block + 1] for s in starts])
        return window[:, :-1], window[:, 1:]

    return model, optimizer, scheduler, next_batch


def plain_run(shape: dict[str, int], steps: int) -> list[float]:
    """Step times (s) of the hand-written loop."""
    import torch
    import torch.nn.functional as F

    torch.manual_seed(1337)
    model, optimizer, scheduler, next_batch = _plain_parts(shape, steps)
    model.train()
    times, last = [], time.perf_counter()
    for _ in range(steps):
        x, y = next_batch()
        logits = model(x)
        loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)), y.reshape(-1))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), CLIP)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        scheduler.step()
        now = time.perf_counter()
        times.append(now - last)
        last = now
    return times[1:]  # the first interval includes building the batch iterator; the others have no such


# ---------------------------------------------------------------------------------------------- driver


def run_worker(kind: str, size: str, steps: int, cache_dir: str, threads: int | None) -> list[float]:
    command = [sys.executable, __file__, "--worker", kind, "--size", size, "--steps", str(steps)]
    command += ["--cache-dir", cache_dir]
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"{kind} run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["step_seconds"]


def measure(size: str, args: argparse.Namespace, cache_dir: str) -> dict:
    shape = SIZES[size]
    tokens_per_step = shape["batch_size"] * shape["block_size"]
    rates: dict[str, list[float]] = {kind: [] for kind in KINDS}
    run_worker(
        "framework", size, 10, cache_dir, args.threads
    )  # build the tokenizer and token cache outside the timing
    for _ in range(args.rounds):
        for kind in KINDS:
            seconds = run_worker(kind, size, args.steps, cache_dir, args.threads)[args.warmup :]
            rates[kind].append(tokens_per_step / statistics.median(seconds))

    def ratios(a: str, b: str) -> list[float]:  # per round: the two runs of that round
        return [x / y for x, y in zip(rates[a], rates[b], strict=True)]

    return {
        "bench": "overhead",
        "size": size,
        **shape,
        "steps": args.steps,
        "warmup": args.warmup,
        "rounds": args.rounds,
        "threads": args.threads or _threads(),
        **{f"{kind}_tokens_per_sec": round(statistics.median(rates[kind]), 1) for kind in KINDS},
        "ratio": round(statistics.median(ratios("framework", "plain")), 4),
        "ratios": [round(r, 4) for r in ratios("framework", "plain")],
        "lightning_vs_plain": round(statistics.median(ratios("lightning", "plain")), 4),
        "framework_vs_lightning": round(statistics.median(ratios("framework", "lightning")), 4),
        **{f"{kind}_runs": [round(r, 1) for r in rates[kind]] for kind in KINDS},
    }


def _threads() -> int:
    import torch

    return torch.get_num_threads()


def main() -> None:
    args = parse_args()
    if args.worker:
        shape = SIZES[args.size]
        if args.worker == "framework":
            seconds = framework_run(shape, args.steps, args.cache_dir)
        elif args.worker == "lightning":
            seconds = lightning_run(shape, args.steps)
        else:
            seconds = plain_run(shape, args.steps)
        print(json.dumps({"step_seconds": seconds}))
        return
    sizes = list(SIZES) if args.size == "both" else [args.size]
    with tempfile.TemporaryDirectory() as tmp:
        cache_dir = args.cache_dir or str(Path(tmp) / "cache")
        for size in sizes:
            print(json.dumps(measure(size, args, cache_dir)), flush=True)


if __name__ == "__main__":
    main()
