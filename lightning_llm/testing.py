"""Helpers for testing plugins and the framework: runs of the real CLI sized to finish in seconds on a CPU.

Plugin packages use these in their own tests (see plugins/README.md), so a plugin is tested exactly the way a
user runs it: ``python -m lightning_llm`` with the plugin's names on the command line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

# A char tokenizer, a 2-layer 32-wide model, 8 optimizer steps, no logger: seconds on a laptop CPU.
TINY = [
    "debug=fast",
    "logger=none",
    "trainer.accelerator=cpu",
    "trainer.enable_progress_bar=false",
    "trainer.enable_model_summary=false",
    "tokenizer=char",
    "data.block_size=32",
    "model.block_size=32",
    "model.n_embd=32",
    "trainer.max_steps=8",
    "trainer.val_check_interval=4",
    "trainer.limit_val_batches=2",
    "trainer.limit_test_batches=2",
    "callbacks.samples.num_samples=1",
    "callbacks.samples.max_new_tokens=8",
    "callbacks.throughput.warmup_steps=1",
]


def cli_command(*overrides: str, run_dir: str | Path, cache_dir: str | Path) -> list[str]:
    """``python -m lightning_llm <overrides>`` writing into ``run_dir``, with its caches in ``cache_dir``."""
    command = [sys.executable, "-m", "lightning_llm", *overrides]
    return [*command, f"paths.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}"]


def cli_env(**extra: str) -> dict[str, str]:
    """The environment of a CLI run under test, with ``extra`` on top: W&B offline, and one thread (a small
    model gains nothing from more, and on shared cores spin-waiting threads make a run several times
    slower)."""
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1", **extra}
    env.pop("LOCAL_RANK", None)  # a run launched from inside a distributed job must start its own ranks
    return env


def run_cli(*overrides: str, run_dir: str | Path, cache_dir: str | Path, timeout: int = 300) -> dict:
    """Run ``python -m lightning_llm`` with TINY plus ``overrides`` into ``run_dir``; returns summary.json.
    Fails with the end of the run's stderr if the run does not succeed."""
    command = cli_command(*TINY, *overrides, run_dir=run_dir, cache_dir=cache_dir)
    env = cli_env(HYDRA_FULL_ERROR="1")
    result = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    if result.returncode != 0:
        raise AssertionError(f"exit {result.returncode}:\n{result.stderr[-3000:]}")
    return json.loads((Path(run_dir) / "summary.json").read_text())
