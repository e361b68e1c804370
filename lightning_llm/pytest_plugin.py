"""Fixtures for a plugin package's tests: ``pytest_plugins = ["lightning_llm.pytest_plugin"]`` in its
``conftest.py`` (see plugins/README.md, "Testing a plugin").

Importing this module loads the installed plugins before any test module imports the package under test,
so its plugins are attributed to its distribution, as in a real run.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from lightning_llm import plugins
from lightning_llm.testing import run_cli

plugins.load()


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> str:
    """Tokenizer and token caches: $LIGHTNING_LLM_CACHE when set (CI shares one across packages)."""
    return os.environ.get("LIGHTNING_LLM_CACHE") or str(tmp_path_factory.mktemp("cache"))


@pytest.fixture
def train_cli(cache_dir: str, tmp_path: Path) -> Callable[..., tuple[Path, dict]]:
    """``train_cli(*overrides)`` runs ``python -m lightning_llm`` with ``testing.TINY`` and the overrides in a
    fresh run folder and returns (the run folder, its summary.json as a dict)."""

    def train(*overrides: str) -> tuple[Path, dict]:
        run_dir = tmp_path / "run"
        return run_dir, run_cli(*overrides, run_dir=run_dir, cache_dir=cache_dir)

    return train
