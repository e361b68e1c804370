"""Shared fixtures: the real config, composed from conf/ once per test and shrunk for speed."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from lightning_llm import config, plugins

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")

# A tiny, fast run: every test that trains starts from these and adds its own overrides.
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
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tokenizer/token cache for the whole session, as on a user's machine."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session", autouse=True)
def _plugins() -> None:
    plugins.load()
    config.store_schemas()


@pytest.fixture
def make_cfg(cache_dir: Path) -> Callable[..., DictConfig]:
    """compose(overrides) of the real conf/, with the cache in a temp folder."""

    def make(*overrides: str, tiny: bool = True) -> DictConfig:
        with initialize_config_dir(config.config_dir(), version_base="1.3"):
            base = TINY if tiny else []
            return compose("config", overrides=[*base, f"paths.cache_dir={cache_dir}", *overrides])

    return make
