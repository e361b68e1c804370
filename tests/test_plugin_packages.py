"""The example plugin packages in plugins/, installed by pip as a user installs them, discovered through
their entry points, and each package's own tests run against the installed copy (how CI runs them)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.test_plugins import run

pytestmark = pytest.mark.slow  # subprocesses or training runs: the full tier (CI)

PLUGINS = Path(__file__).resolve().parents[1] / "plugins"
PACKAGES = {  # distribution (folder under plugins/) -> the plugin it registers
    "llm-lion": ("optim", "lion"),
    "llm-parallel-gpt": ("model", "parallel_gpt"),
    "llm-token-entropy": ("metric", "token_entropy"),
}


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory, cache_dir: Path) -> dict[str, str]:
    """An environment whose path holds the three packages, installed by pip (entry points and all) into a
    folder of their own; their CLI runs share the session's tokenizer and token cache."""
    target = tmp_path_factory.mktemp("plugin-packages")
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
         "--target", str(target), *(str(PLUGINS / package) for package in PACKAGES)],
        check=True,
    )  # fmt: skip
    return {
        **os.environ,
        "PYTHONPATH": str(target),
        "LIGHTNING_LLM_CACHE": str(cache_dir),
        "WANDB_MODE": "offline",
        "HYDRA_FULL_ERROR": "",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "1"),  # tiny models: threads only contend
    }


def test_listing_names_each_plugin_under_its_kind_with_its_package(installed):
    result = run(installed, module="lightning_llm.plugins")
    assert result.returncode == 0, result.stderr
    assert "failed to load" not in result.stdout + result.stderr, result.stderr
    listed, kind = set(), None
    for line in result.stdout.splitlines():
        if not line.startswith(" "):
            kind = line.split(":", 1)[0]  # a kind's header: "optim: a torch.optim.Optimizer ..."
        else:
            name, source = line.split()[:2]
            listed.add((kind, name, source))
    for package, (kind, name) in PACKAGES.items():
        assert (kind, name, f"[{package}]") in listed, result.stdout


@pytest.mark.parametrize("package", list(PACKAGES))
def test_package_tests_pass_against_the_installed_package(installed, package):
    # From the package's folder: its own pytest settings apply, and its code (under src/) is importable only
    # from the installed copy.
    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tests"],
        cwd=PLUGINS / package,
        env=installed,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
