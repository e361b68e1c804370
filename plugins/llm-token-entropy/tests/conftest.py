"""Runs of the lightning_llm CLI with the installed plugin, sized to finish in seconds on a CPU."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_llm import plugins

# Load entry points before any test module imports the package itself, so its plugins are attributed to
# the installed distribution (as in a CLI run) rather than to the bare module name.
plugins.load()

# lightning_llm's own tiny test settings (its tests/conftest.py TINY): a char tokenizer, a 32-wide model,
# 8 optimizer steps.
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


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Tokenizer and token caches: $LIGHTNING_LLM_CACHE when set (CI shares one across packages)."""
    return os.environ.get("LIGHTNING_LLM_CACHE") or str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def train_cli(cache_dir: str, tmp_path: Path):
    """``train_cli(*overrides)`` runs ``python -m lightning_llm`` with TINY plus the overrides in a fresh run
    folder and returns (the run folder, its summary.json as a dict)."""

    def train(*overrides: str) -> tuple[Path, dict]:
        run_dir = tmp_path / "run"
        env = {**os.environ, "WANDB_MODE": "offline", "HYDRA_FULL_ERROR": "1"}
        # One thread: a 32-wide model gains nothing from more, and on shared cores threads that spin-wait
        # for each other make a run several times slower.
        env.setdefault("OMP_NUM_THREADS", "1")
        result = subprocess.run(
            [sys.executable, "-m", "lightning_llm", *TINY, *overrides,
             f"paths.cache_dir={cache_dir}", f"hydra.run.dir={run_dir}"],
            capture_output=True, text=True, env=env, timeout=300,
        )  # fmt: skip
        assert result.returncode == 0, result.stderr[-3000:]
        return run_dir, json.loads((run_dir / "summary.json").read_text())

    return train
