"""The app works from a built wheel installed elsewhere, not only from this checkout."""

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # subprocesses or training runs: the full tier (CI)

REPO = Path(__file__).resolve().parents[1]


def test_wheel_carries_conf_and_runs_from_any_directory(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
         "--wheel-dir", str(tmp_path / "dist"), str(REPO)],
        check=True,
    )  # fmt: skip
    (wheel,) = (tmp_path / "dist").glob("lightning_llm-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "lightning_llm/conf/config.yaml" in names
    assert "lightning_llm/conf/model/gpt.yaml" in names

    site = tmp_path / "site"
    subprocess.run(
        [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(site), str(wheel)],
        check=True,
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    where = subprocess.run(
        [sys.executable, "-c", "from lightning_llm.config import config_dir; print(config_dir())"],
        capture_output=True, text=True, cwd=elsewhere, env=env, check=True,
    )  # fmt: skip
    assert where.stdout.strip() == str(site / "lightning_llm" / "conf")
    job = subprocess.run(
        [sys.executable, "-m", "lightning_llm", "model.n_layer=3", "--cfg", "job"],
        capture_output=True, text=True, cwd=elsewhere, env=env, timeout=120,
    )  # fmt: skip
    assert job.returncode == 0, job.stderr
    assert "n_layer: 3" in job.stdout
