"""The framework against nanoGPT's own, unmodified ``train.py``: the same GPT shape on the same characters.

    python bench/nanogpt.py --nanogpt <a checkout of github.com/karpathy/nanoGPT> [--rounds 15] [--steps 200]

nanoGPT runs from a scratch folder holding copies of its ``train.py``, ``model.py`` and ``configurator.py``
(not a line changed) and its data layout, ``data/<name>/{train,val}.bin`` (uint16 ids) and ``meta.pkl``
(the vocabulary size), written here from the embedded corpus as characters: what its shakespeare_char
``prepare.py`` writes for Shakespeare. Its flags give the ``small`` shape of ``bench/overhead.py`` (4 layers,
4 heads, 128 wide, block 64, batch 12), fp32 on the CPU, no compile, no dropout, one evaluation batch (its
eval at iteration 0 is inside the warm-up). Its step time is what it prints for every iteration
(``time ...ms``: from one iteration's end to the next, the next batch included).

The framework runs as ``bench/overhead.py``'s framework worker does (the config composed from conf/,
``experiment=gpt_tiny``, every default callback, a CSV logger), with nanoGPT's model options: exact (erf) GELU
and no vocabulary padding, so both train the same architecture. Runs alternate framework, nanoGPT; the ratio
is the median over rounds of framework / nanoGPT tokens per second. One JSON line; numbers go into
bench/RESULTS.md, never into tests.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import overhead  # noqa: E402 - the sibling bench: its shapes, corpus and framework worker

SIZE = "small"
NANOGPT_FILES = ("train.py", "model.py", "configurator.py")
# nanoGPT's architecture in the gpt plugin's terms (its other choices are the plugin's defaults already:
# learned positions, LayerNorm, no biases, tied embeddings)
SAME_MODEL = ["model.mlp=gelu_erf", "model.pad_vocab_to=1", "model.dropout=0.0"]
ITERATION = re.compile(r"^iter (\d+): loss [\d.]+, time ([\d.]+)ms", re.MULTILINE)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--nanogpt", type=Path, help="a checkout of karpathy/nanoGPT (its train.py is run)")
    parser.add_argument("--steps", type=int, default=200, help="optimizer steps per run")
    parser.add_argument("--warmup", type=int, default=40, help="first steps of a run left out of the median")
    parser.add_argument("--rounds", type=int, default=15, help="framework/nanoGPT pairs")
    parser.add_argument("--threads", type=int, default=None, help="torch threads per run (default: torch's)")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--cache-dir", default=None, help=argparse.SUPPRESS)
    return parser.parse_args()


def prepare_nanogpt(checkout: Path, folder: Path) -> str:
    """nanoGPT's files and the corpus in its data layout under ``folder``; returns the dataset's name."""
    for name in NANOGPT_FILES:
        if not (checkout / name).is_file():
            raise SystemExit(f"--nanogpt {checkout}: no {name}; pass a checkout of karpathy/nanoGPT")
        shutil.copy(checkout / name, folder / name)
    import numpy as np

    ids, vocab_size = overhead.corpus_ids()
    data = folder / "data" / "pydoc_char"
    data.mkdir(parents=True)
    cut = int(0.9 * len(ids))  # as nanoGPT's shakespeare_char prepare.py splits
    np.array(ids[:cut], dtype=np.uint16).tofile(data / "train.bin")
    np.array(ids[cut:], dtype=np.uint16).tofile(data / "val.bin")
    with open(data / "meta.pkl", "wb") as file:  # nanoGPT's own format, read by its train.py
        pickle.dump({"vocab_size": vocab_size}, file)
    return data.name


def nanogpt_run(folder: Path, dataset: str, steps: int, env: dict[str, str]) -> list[float]:
    """Step times (s) nanoGPT's train.py prints for ``steps`` iterations."""
    shape = overhead.SIZES[SIZE]
    flags = {
        "dataset": dataset,
        "device": "cpu",
        "dtype": "float32",
        "compile": False,
        "out_dir": "out",
        "eval_interval": steps + 1,
        "eval_iters": 1,
        "log_interval": 1,
        "always_save_checkpoint": False,
        "gradient_accumulation_steps": 1,
        "batch_size": shape["batch_size"],
        "block_size": shape["block_size"],
        "n_layer": shape["n_layer"],
        "n_head": shape["n_head"],
        "n_embd": shape["n_embd"],
        "dropout": 0.0,
        "learning_rate": overhead.LR,
        "max_iters": steps,
        "lr_decay_iters": steps,
        "min_lr": overhead.LR * overhead.MIN_LR_RATIO,
        "warmup_iters": overhead.WARMUP_LR_STEPS,
    }
    command = [sys.executable, "train.py", *(f"--{key}={value}" for key, value in flags.items())]
    result = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"nanoGPT's train.py failed:\n{result.stderr[-3000:]}")
    return [float(ms) / 1000 for _, ms in ITERATION.findall(result.stdout)]


def framework_worker(steps: int, cache_dir: str) -> list[float]:
    return overhead.framework_run(overhead.SIZES[SIZE], steps, cache_dir, extra=SAME_MODEL)


def run_framework(steps: int, cache_dir: str, env: dict[str, str]) -> list[float]:
    command = [sys.executable, __file__, "--worker", "--steps", str(steps), "--cache-dir", cache_dir]
    result = subprocess.run(command, capture_output=True, text=True, env=env)
    if result.returncode != 0:
        raise SystemExit(f"framework run failed:\n{result.stderr[-3000:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])["step_seconds"]


def main() -> None:
    args = parse_args()
    if args.worker:
        print(json.dumps({"step_seconds": framework_worker(args.steps, args.cache_dir)}))
        return
    if args.nanogpt is None:
        raise SystemExit("pass --nanogpt <a checkout of karpathy/nanoGPT>: its train.py is what is timed")
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONWARNINGS": "ignore"}
    if args.threads:
        env["OMP_NUM_THREADS"] = str(args.threads)
    shape = overhead.SIZES[SIZE]
    tokens_per_step = shape["batch_size"] * shape["block_size"]
    rates: dict[str, list[float]] = {"framework": [], "nanogpt": []}
    with tempfile.TemporaryDirectory() as tmp:
        folder, cache_dir = Path(tmp) / "nanogpt", str(Path(tmp) / "cache")
        folder.mkdir()
        dataset = prepare_nanogpt(args.nanogpt.expanduser(), folder)
        run_framework(10, cache_dir, env)  # the tokenizer and token cache, outside the timing
        for _ in range(args.rounds):
            for kind in ("framework", "nanogpt"):
                if kind == "framework":
                    seconds = run_framework(args.steps, cache_dir, env)
                else:
                    seconds = nanogpt_run(folder, dataset, args.steps, env)
                rates[kind].append(tokens_per_step / statistics.median(seconds[args.warmup :]))
    ratios = [f / n for f, n in zip(rates["framework"], rates["nanogpt"], strict=True)]
    print(
        json.dumps(
            {
                "bench": "nanogpt",
                "size": SIZE,
                **shape,
                "steps": args.steps,
                "warmup": args.warmup,
                "rounds": args.rounds,
                "framework_tokens_per_sec": round(statistics.median(rates["framework"]), 1),
                "nanogpt_tokens_per_sec": round(statistics.median(rates["nanogpt"]), 1),
                "ratio": round(statistics.median(ratios), 4),
                "ratios": [round(r, 4) for r in ratios],
            }
        )
    )


if __name__ == "__main__":
    main()
