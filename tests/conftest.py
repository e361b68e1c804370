"""Shared fixtures: the real config, composed from conf/ once per test and shrunk for speed."""

from __future__ import annotations

import collections
import os
import signal
from collections.abc import Callable
from pathlib import Path

import pytest
from hydra import compose, initialize_config_dir
from omegaconf import DictConfig

from lightning_llm import config, plugins
from lightning_llm.testing import TINY  # the tiny, fast run every training test starts from

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
if os.environ.get("PYTEST_XDIST_WORKER"):
    # One thread per worker (and per process a test starts): the workers already fill the cores, and OpenMP
    # threads beyond them spin against each other, slowing the tiny models of the tests several times over.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))

# The Ctrl-C tests send SIGINT to the commands they start. A pytest started with SIGINT ignored (a background
# job of a non-interactive shell: `bash .ci/run &`) would pass that on to every child, which then rightly
# ignores Ctrl-C; start them as a terminal would instead (a Python handler is reset to the default at exec).
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The modules with the most slow tests first (each keeps its order): xdist's ``loadscope`` hands out
    whole modules in this order, and a long one handed out last leaves the other workers idle at the end."""
    slow = collections.Counter(item.module.__name__ for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.module.__name__])


@pytest.fixture(scope="session")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One tokenizer/token cache for the whole session, as on a user's machine."""
    return tmp_path_factory.mktemp("cache")


@pytest.fixture(scope="session", autouse=True)
def _plugins() -> None:
    plugins.load()
    config.store_schemas()


@pytest.fixture
def own_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """The installed plugins in a copy that a test may register more into (a third party's, say)."""
    from lightning_llm import registry

    monkeypatch.setattr(
        registry, "_PLUGINS", {kind: dict(found) for kind, found in registry._PLUGINS.items()}
    )


@pytest.fixture
def make_cfg(cache_dir: Path) -> Callable[..., DictConfig]:
    """compose(overrides) of the real conf/, with the cache in a temp folder."""

    def make(*overrides: str, tiny: bool = True) -> DictConfig:
        with initialize_config_dir(config.config_dir(), version_base="1.3"):
            base = TINY if tiny else []
            return compose("config", overrides=[*base, f"paths.cache_dir={cache_dir}", *overrides])

    return make


def read_only_folder(path: Path) -> Path:
    """A folder this process cannot write into; skips the test for a user who ignores permissions (root)."""
    path.mkdir(mode=0o555)
    probe = path / "probe"
    try:
        probe.touch()
    except PermissionError:
        return path
    probe.unlink()
    path.chmod(0o755)
    pytest.skip("this user writes into read-only folders (root)")
