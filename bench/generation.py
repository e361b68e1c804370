"""KV-cache benchmark: GPT generation speed with and without the cache, at several generation lengths.

    python bench/generation.py [--lengths 64 128 256 512] [--n-layer 4] [--n-embd 256] [--device cuda]

Without a cache every new token re-runs the model over the whole context (quadratic in the length); with
one it runs over the new token only and attends to the cached keys and values (linear). For each length
the script prints one JSON line: tokens/s both ways (median of ``--repeats`` timed runs after a warm-up),
the speed-up, and whether greedy decoding produced the same tokens both ways. The weights are random:
generation speed does not depend on them. Numbers belong in notes, not in tests.
"""

from __future__ import annotations

import argparse
import inspect
import json
import statistics
import time

import torch

from lightning_llm.models.gpt import GPT, GPTConfig
from lightning_llm.models.sampling import generate


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[64, 128, 256, 512], help="new tokens")
    parser.add_argument("--n-layer", type=int, default=4)
    parser.add_argument("--n-head", type=int, default=4)
    parser.add_argument("--n-embd", type=int, default=256)
    parser.add_argument("--vocab-size", type=int, default=8192)
    parser.add_argument("--batch-size", type=int, default=1, help="sequences generated at once")
    parser.add_argument("--prompt-len", type=int, default=16, help="tokens of the random prompt")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per length and mode (median)")
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default="cuda" if torch.cuda.is_available() else "cpu"
    )
    parser.add_argument("--dtype", choices=("float32", "bfloat16"), default="float32")
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args()


def cache_supported() -> bool:
    return "use_cache" in inspect.signature(generate).parameters


def build_model(args: argparse.Namespace) -> GPT:
    torch.manual_seed(args.seed)
    config = GPTConfig(
        vocab_size=args.vocab_size,
        n_layer=args.n_layer,
        n_head=args.n_head,
        n_embd=args.n_embd,
        block_size=args.prompt_len + max(args.lengths),  # every run fits without cropping the context
    )
    return GPT(config).to(device=args.device, dtype=getattr(torch, args.dtype)).eval()


def timed_generate(
    model: GPT, prompt: torch.Tensor, new_tokens: int, use_cache: bool
) -> tuple[float, torch.Tensor]:
    """Seconds for one greedy generation of ``new_tokens`` tokens, and the tokens."""
    if prompt.is_cuda:
        torch.cuda.synchronize()
    start = time.perf_counter()
    out = generate(model, prompt, new_tokens, temperature=0.0, use_cache=use_cache)
    if prompt.is_cuda:
        torch.cuda.synchronize()
    return time.perf_counter() - start, out


def measure(model: GPT, prompt: torch.Tensor, new_tokens: int, use_cache: bool, repeats: int):
    """Median tokens/s over ``repeats`` runs after one warm-up run, and the tokens of the last run."""
    timed_generate(model, prompt, new_tokens, use_cache)  # warm-up: kernels, allocator, caches
    runs = [timed_generate(model, prompt, new_tokens, use_cache) for _ in range(repeats)]
    seconds = statistics.median(seconds for seconds, _ in runs)
    return prompt.size(0) * new_tokens / seconds, runs[-1][1]


def main() -> None:
    args = parse_args()
    if not cache_supported():
        reason = "lightning_llm.models.sampling.generate has no use_cache parameter yet (no KV cache to time)"
        print(json.dumps({"skipped": reason}))
        return
    model = build_model(args)
    generator = torch.Generator().manual_seed(args.seed)
    prompt = torch.randint(0, args.vocab_size, (args.batch_size, args.prompt_len), generator=generator)
    prompt = prompt.to(args.device)
    for length in args.lengths:
        with_cache, cached_tokens = measure(model, prompt, length, True, args.repeats)
        without_cache, plain_tokens = measure(model, prompt, length, False, args.repeats)
        result = {
            "new_tokens": length,
            "prompt_len": args.prompt_len,
            "batch_size": args.batch_size,
            "n_layer": args.n_layer,
            "n_embd": args.n_embd,
            "device": args.device,
            "dtype": args.dtype,
            "tokens_per_second_cache": round(with_cache, 1),
            "tokens_per_second_no_cache": round(without_cache, 1),
            "speedup": round(with_cache / without_cache, 2),
            "same_tokens": bool(torch.equal(cached_tokens, plain_tokens)),
        }
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
