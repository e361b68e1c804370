"""Runs of the lightning_llm CLI with the installed plugin, sized to finish in seconds on a CPU."""

import os
from pathlib import Path

import pytest

from lightning_llm import plugins
from lightning_llm.testing import run_cli

# Load entry points before any test module imports the package itself, so its plugins are attributed to
# the installed distribution (as in a CLI run) rather than to the bare module name.
plugins.load()


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
        return run_dir, run_cli(*overrides, run_dir=run_dir, cache_dir=cache_dir)

    return train
