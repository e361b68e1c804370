"""Data at scale: preparing corpora of growing size, and starting a run on a prepared one.

    python bench/data_scale.py [--sizes 50,400] [--work /tmp/data_scale] [--vocab 1024] [--num-proc 0]

For each size (MB) it builds a corpus of real text, the Python sources on this machine concatenated into
8 MB ``.txt`` files (read in a fixed order, so the corpus is the same on every run), then measures, each in a
fresh process whose whole process tree's resident memory is sampled every 50 ms:

- ``prepare``: ``python -m lightning_llm.prepare data=text ... tokenizer=byte_bpe``: tokenizer training on
  its sample (``tokenizer.train_max_chars``) and the sharded token cache. Peak RSS and wall time.
- ``tokenize``: the same once the tokenizer is cached and the tokens deleted: preparing alone.
- ``cached_run``: a 2-layer 64-wide GPT for 3 steps on the prepared corpus, with validation and the final
  evaluation limited to one batch, against the same run on the embedded pydoc corpus (``pydoc_run``): the
  wall time and peak RSS a prepared corpus adds to a run's start.

and once, on the smallest corpus, in this process (``throughput``): the texts of the corpus tokenized by
``lightning_llm.data.shards.prepare`` (read, split, encode, write) against ``tokenizers``' own
``encode_batch_fast`` on the same texts, already in memory, with the same threads, side by side.
Prints one JSON line per measurement.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

SOURCES = [Path(sys.prefix) / "lib", Path(sys.base_prefix) / "lib"]
FILE_BYTES = 8 * 1024 * 1024


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="50,400", help="corpus sizes in MB, comma-separated")
    parser.add_argument("--work", default=str(Path(tempfile.gettempdir()) / "data_scale"))
    parser.add_argument("--vocab", type=int, default=1024)
    parser.add_argument("--num-proc", type=int, default=0, help="data.num_proc (0: one per core)")
    return parser.parse_args()


def build_corpus(folder: Path, megabytes: int) -> Path:
    """``megabytes`` of Python source text in 8 MB files (reused when already built)."""
    done = folder / "DONE"
    if done.exists():
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True)
    target, written, index = megabytes * 1024 * 1024, 0, 0
    out = open(folder / f"{index:04d}.txt", "wb")  # noqa: SIM115 - rotated below
    for root in SOURCES:
        for path in sorted(root.rglob("*.py")):
            try:
                data = path.read_bytes()
                data.decode("utf-8")
            except (OSError, UnicodeDecodeError):
                continue
            if b"\0" in data:
                continue
            out.write(data + b"\n\n")
            written += len(data) + 2
            if out.tell() >= FILE_BYTES:
                out.close()
                index += 1
                out = open(folder / f"{index:04d}.txt", "wb")  # noqa: SIM115
            if written >= target:
                break
        if written >= target:
            break
    out.close()
    done.write_text(str(written))
    return folder


def tree_rss_mb(pid: int) -> float:
    """Resident memory of ``pid`` and all its descendants, in MB."""
    children: dict[int, list[int]] = {}
    rss: dict[int, int] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as file:
                fields = file.read().rsplit(")", 1)[1].split()
            children.setdefault(int(fields[1]), []).append(int(entry))
            rss[int(entry)] = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, IndexError, ValueError):
            continue
    total, todo = 0, [pid]
    while todo:
        current = todo.pop()
        total += rss.get(current, 0)
        todo.extend(children.get(current, []))
    return total / 2**20


def measure(command: list[str]) -> dict:
    """Wall time, peak RSS of the process tree, and the output, of ``command``."""
    start = time.perf_counter()
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = [0.0]

    def sample() -> None:
        while process.poll() is None:
            peak[0] = max(peak[0], tree_rss_mb(process.pid))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    out, err = process.communicate()
    sampler.join()
    if process.returncode != 0:
        raise RuntimeError(f"{' '.join(command)} failed:\n{err[-3000:]}")
    return {"seconds": round(time.perf_counter() - start, 2), "peak_rss_mb": round(peak[0], 1), "stdout": out}


def throughput(corpus_dir: Path, vocab: int, num_proc: int) -> dict:
    """prepare() against tokenizers' encode_batch_fast on the same texts, in this process."""
    from lightning_llm.data.shards import SplitRule, prepare, split_texts
    from lightning_llm.data.streams import Corpus
    from lightning_llm.tokenizers import ByteBPETokenizer
    from lightning_llm.tokenizers.pieces import piece_batches

    corpus = Corpus("text", (str(corpus_dir / "*.txt"),))
    rule = SplitRule(0.05, 0.05, 1234)
    tokenizer = ByteBPETokenizer(vocab_size=vocab)
    tokenizer.train(t[:20_000_000] for t in split_texts(corpus, rule, "train"))  # a quick, fixed tokenizer
    texts = [text for split in ("train", "val", "test") for text in split_texts(corpus, rule, split)]
    chars = sum(len(text) for text in texts)
    backend = tokenizer.backend
    start = time.perf_counter()
    tokens = 0
    for batch in piece_batches(texts):
        for encoding in backend.encode_batch_fast([piece.text for piece in batch], add_special_tokens=False):
            tokens += len(encoding.ids)
    raw = time.perf_counter() - start
    with tempfile.TemporaryDirectory() as cache:
        start = time.perf_counter()
        _, manifest = prepare(corpus, tokenizer, rule, cache, num_proc=num_proc or None)
        ours = time.perf_counter() - start
    prepared = sum(manifest["tokens"].values())  # eos after each text included
    return {
        "measure": "throughput",
        "chars": chars,
        "tokens": tokens,
        "prepared_tokens_with_eos": prepared,
        "encode_batch_seconds": round(raw, 2),
        "prepare_seconds": round(ours, 2),
        "encode_batch_mb_per_s": round(chars / raw / 1e6, 2),
        "prepare_mb_per_s": round(chars / ours / 1e6, 2),
        "ratio": round(raw / ours, 3),
        "threads": os.cpu_count(),
    }


def main() -> None:
    args = parse_args()
    work = Path(args.work)
    sizes = [int(size) for size in args.sizes.split(",")]
    python = sys.executable
    small = [
        "model.n_layer=2",
        "model.n_embd=64",
        "model.n_head=2",
        "data.block_size=64",
        "model.block_size=64",
    ]
    run = [
        *small,
        "trainer.max_steps=3",
        "trainer.limit_val_batches=1",
        "eval.max_batches=1",
        "logger=none",
        "callbacks.samples.num_samples=0",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.accelerator=cpu",
    ]
    tokenizer = ["tokenizer=byte_bpe", f"tokenizer.vocab_size={args.vocab}", f"data.num_proc={args.num_proc}"]
    cache = work / "cache"
    shutil.rmtree(work / "runs", ignore_errors=True)
    pydoc = measure(
        [
            python,
            "-m",
            "lightning_llm",
            *run,
            *tokenizer,
            f"paths.cache_dir={cache}",
            f"hydra.run.dir={work}/runs/pydoc-warm",
        ]
    )  # warms the pydoc token cache
    pydoc = measure(
        [
            python,
            "-m",
            "lightning_llm",
            *run,
            *tokenizer,
            f"paths.cache_dir={cache}",
            f"hydra.run.dir={work}/runs/pydoc",
        ]
    )
    print(
        json.dumps({"measure": "pydoc_run", **{k: v for k, v in pydoc.items() if k != "stdout"}}), flush=True
    )
    for size in sizes:
        corpus = build_corpus(work / f"corpus{size}", size)
        data = ["data=text", f"data.paths=[{corpus}/*.txt]"]
        shutil.rmtree(work / f"cache{size}", ignore_errors=True)
        overrides = [*data, *tokenizer, f"paths.cache_dir={work}/cache{size}"]
        prepared = measure([python, "-m", "lightning_llm.prepare", *overrides])
        result = json.loads(prepared.pop("stdout"))
        print(
            json.dumps({"measure": "prepare", "mb": size, **prepared, "tokens": result["tokens"]}), flush=True
        )
        shutil.rmtree(work / f"cache{size}" / "tokens")  # again, the tokenizer now cached: tokenizing alone
        tokenized = measure([python, "-m", "lightning_llm.prepare", *overrides])
        tokenized.pop("stdout")
        print(json.dumps({"measure": "tokenize", "mb": size, **tokenized}), flush=True)
        cached = measure(
            [python, "-m", "lightning_llm", *run, *overrides, f"hydra.run.dir={work}/runs/{size}"]
        )
        cached.pop("stdout")
        delta = {"start_seconds_over_pydoc": round(cached["seconds"] - pydoc["seconds"], 2)}
        delta["rss_mb_over_pydoc"] = round(cached["peak_rss_mb"] - pydoc["peak_rss_mb"], 1)
        print(json.dumps({"measure": "cached_run", "mb": size, **cached, **delta}), flush=True)
    print(
        json.dumps(throughput(build_corpus(work / f"corpus{sizes[0]}", sizes[0]), args.vocab, args.num_proc))
    )


if __name__ == "__main__":
    main()
