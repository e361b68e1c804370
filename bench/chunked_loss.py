"""Peak memory and step time of the causal-LM loss with whole logits vs computed in chunks
(``lightning_llm/models/chunked_head.py``), at a GPT-2 sized vocabulary.

Each mode runs in a fresh process (peak RSS is a per-process high-water mark): a gpt of the given shape, the
framework's own ``CausalLM`` objective, AdamW, ``--steps`` training steps after ``--warmup``; prints one JSON
line per mode with the median step time and the peak RSS, and the loss of the first step (the two must agree).

    python bench/chunked_loss.py --vocab 50304 --layers 2 --width 256 --batch 8 --block 512
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time


def run_mode(args: argparse.Namespace) -> dict:
    import torch

    from lightning_llm.models.gpt import GPT, GPTConfig
    from lightning_llm.objectives.causal_lm import CausalLM

    torch.manual_seed(0)
    config = GPTConfig(
        vocab_size=args.vocab,
        n_layer=args.layers,
        n_head=4,
        n_embd=args.width,
        block_size=args.block,
        dropout=0.0,
    )
    model = GPT(config)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    objective = CausalLM(logits_chunk=0 if args.mode == "logits" else args.chunk)  # None: the automatic chunk
    g = torch.Generator().manual_seed(1)
    batch = {
        "input_ids": torch.randint(0, args.vocab, (args.batch, args.block), generator=g),
        "labels": torch.randint(0, args.vocab, (args.batch, args.block), generator=g),
    }
    times, first_loss = [], None
    for step in range(args.warmup + args.steps):
        start = time.perf_counter()
        loss, n_tokens, _ = objective.loss(model, batch)
        (loss / n_tokens).backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        if first_loss is None:
            first_loss = float(loss.detach() / n_tokens)
        if step >= args.warmup:
            times.append(time.perf_counter() - start)
    return {
        "mode": args.mode,
        "chunk": args.chunk,
        "vocab": args.vocab,
        "tokens_per_step": args.batch * args.block,
        "step_ms_median": round(1000 * statistics.median(times), 1),
        "step_ms_all": [round(1000 * t, 1) for t in times],
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "first_loss": round(first_loss, 6),
        "params_m": round(sum(p.numel() for p in model.parameters()) / 1e6, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--mode", choices=["logits", "chunked"], help="(internal) run one mode in this process"
    )
    parser.add_argument("--vocab", type=int, default=50304)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--block", type=int, default=512)
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--chunk", type=int, default=None, help="tokens per chunk (default: automatic)")
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(run_mode(args)))
        return
    shared = [f"--{k}={v}" for k, v in vars(args).items() if k != "mode" and v is not None]
    for mode in ("logits", "chunked"):
        result = subprocess.run(
            [sys.executable, __file__, f"--mode={mode}", *shared], capture_output=True, text=True, check=True
        )
        print(result.stdout.strip(), flush=True)


if __name__ == "__main__":
    main()
