"""A full disk or an unwritable output folder: one clear line naming the file, the older checkpoint kept, and
``ckpt_path=auto`` continues once the cause is gone.

The full disk is real from the process's point of view: the child Python (through a ``sitecustomize.py`` on
its PYTHONPATH, as in test_kill; no hook in the package) gets ``OSError(ENOSPC)`` from ``write`` on a
checkpoint's temp file once the disk "fills", after some bytes of that file are already on disk, exactly as
the kernel reports a full filesystem. This works as root too, where permission bits are ignored.
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import torch

from lightning_llm.atomic import TEMP_MARKER
from lightning_llm.checkpoint import is_complete, latest_checkpoint, stored_step
from lightning_llm.testing import TINY, cli_command, cli_env
from tests.reliability.test_bad_inputs import error_line, refused_before_hydra

pytestmark = pytest.mark.slow  # subprocesses or training runs: the full tier (CI)

TIMEOUT = 300
COMMAND = [
    *TINY,
    "trainer.max_steps=8",
    "trainer.val_check_interval=4",  # checkpoints at steps 4 and 8
    "callbacks.checkpoint.save_top_k=-1",  # best-step000004, last, then best-step000008, last
    "callbacks.samples.num_samples=0",
]

# Loaded by the child Python through PYTHONPATH. The first FULL_DISK_AFTER_FILES checkpoint temp files are
# written whole; the next one gets ENOSPC after 4 KiB, and so does every later one.
FULL_DISK = """
import builtins, errno, os

_open = builtins.open
_opened = [0]


class _FullDisk:
    def __init__(self, file):
        self._file, self._room = file, 4096

    def write(self, data):
        if len(data) > self._room:
            self._file.write(bytes(memoryview(data)[: self._room]))
            self._room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._file.name)
        self._room -= len(data)
        return self._file.write(data)

    def __getattr__(self, name):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._file.close()


def open(file, mode="r", *args, **kwargs):
    handle = _open(file, mode, *args, **kwargs)
    if ".ckpt.tmp-" in str(file) and ("w" in mode or "x" in mode):
        _opened[0] += 1
        if _opened[0] > int(os.environ["FULL_DISK_AFTER_FILES"]):
            return _FullDisk(handle)
    return handle


builtins.open = open
"""


def run(run_dir: Path, cache_dir: Path, *overrides: str, env: dict | None = None):
    command = cli_command(*COMMAND, *overrides, run_dir=run_dir, cache_dir=cache_dir)
    environment = cli_env(HYDRA_FULL_ERROR="", **(env or {}))  # messages, not tracebacks
    return subprocess.run(command, capture_output=True, text=True, env=environment, timeout=TIMEOUT)


def full_disk_env(tmp_path: Path, after_files: int) -> dict:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(FULL_DISK)
    pythonpath = os.pathsep.join(filter(None, [str(hooks), os.environ.get("PYTHONPATH")]))
    return {"PYTHONPATH": pythonpath, "FULL_DISK_AFTER_FILES": str(after_files)}


def test_disk_full_during_the_second_checkpoint_keeps_the_first_and_resumes(tmp_path: Path) -> None:
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    folder = run_dir / "checkpoints"
    failed = run(run_dir, cache, env=full_disk_env(tmp_path, after_files=2))
    line = error_line(failed)
    # the last step's last.ckpt is written first (at the step, before the validation that would also save it)
    assert line == (
        f"error: could not write checkpoint {folder / 'last.ckpt'}: No space left on device "
        f"(the previous checkpoint {folder / 'last.ckpt'} is kept); free disk space and resume with "
        "ckpt_path=auto"
    )
    assert not (run_dir / "summary.json").exists()
    assert sorted(path.name for path in folder.iterdir()) == ["best-step000004.ckpt", "last.ckpt"]  # no temp
    for path in folder.iterdir():
        assert is_complete(path) and stored_step(path) == 4
        assert torch.load(path, map_location="cpu", weights_only=True)["state_dict"]
    assert latest_checkpoint(folder) == folder / "last.ckpt"

    resumed = run(run_dir, cache, "ckpt_path=auto")  # space freed: the same command, no fault
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert f"ckpt_path=auto: resuming from {folder / 'last.ckpt'}" in resumed.stdout + resumed.stderr
    assert (run_dir / "summary.json").is_file()
    assert stored_step(folder / "last.ckpt") == 8
    assert not list(folder.glob(f"*{TEMP_MARKER}*"))


def test_disk_full_at_the_first_checkpoint_says_there_is_none_to_keep(tmp_path: Path) -> None:
    folder = tmp_path / "run" / "checkpoints"
    failed = run(tmp_path / "run", tmp_path / "cache", env=full_disk_env(tmp_path, after_files=0))
    line = error_line(failed)
    assert f"could not write checkpoint {folder / 'best-step000004.ckpt'}: No space left on device" in line
    assert "(no earlier checkpoint to keep)" in line
    assert latest_checkpoint(folder) is None and not list(folder.iterdir())


def test_checkpoints_folder_in_the_way_fails_before_any_work(tmp_path: Path) -> None:
    """``<run>/checkpoints`` is a file (this works as root too): refused at the start, not at step 4."""
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / "checkpoints").write_text("not a folder")
    line = refused_before_hydra(*TINY, f"hydra.run.dir={run_dir}", f"paths.cache_dir={tmp_path / 'cache'}")
    assert f"hydra.run.dir={run_dir} holds checkpoints, which no launch of lightning_llm wrote" in line
    (run_dir / ".lock").write_text("pid 12345 on node7 since then\n")  # an earlier launch's folder
    line = error_line(run(run_dir, tmp_path / "cache"))
    assert f"run folder {run_dir}: {run_dir / 'checkpoints'} is a file, not a folder" in line
    assert "hydra.run.dir" in line
    assert not (run_dir / "tokenizer.json").exists()  # nothing was built


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into read-only folders")
def test_read_only_checkpoints_folder_fails_before_any_work(tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    (run_dir / "checkpoints").mkdir(parents=True)
    (run_dir / "checkpoints").chmod(0o500)
    try:
        line = error_line(run(run_dir, tmp_path / "cache"))
    finally:
        (run_dir / "checkpoints").chmod(0o700)
    assert f"{run_dir / 'checkpoints'} is not writable" in line


def test_run_folder_under_a_file_is_one_line(tmp_path: Path) -> None:
    (tmp_path / "a_file").write_text("")
    line = error_line(run(tmp_path / "a_file" / "run", tmp_path / "cache"))
    assert str(tmp_path / "a_file") in line
