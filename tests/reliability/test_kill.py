"""A training run killed with SIGKILL, for real, resumes with ``ckpt_path=auto`` exactly as if it had never
stopped, and a kill in the middle of a checkpoint write never costs the previous checkpoint.

Each test starts ``python -m lightning_llm`` in a subprocess, kills it, checks what is left in its
checkpoints folder, reruns the same command with ``ckpt_path=auto`` and compares its per-step training
losses (read from CSV) with those of an uninterrupted run. Dropout is on, so an exact match also needs the
RNG state and the data position to come back.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

from lightning_llm.atomic import TEMP_MARKER
from lightning_llm.checkpoint import is_complete, latest_checkpoint, stored_step
from lightning_llm.testing import cli_command, cli_env
from tests.conftest import TINY
from tests.distributed.test_equivalence import train_losses

pytestmark = pytest.mark.slow  # subprocesses or training runs: the full tier (CI)

STEPS = 24
EVERY = 4  # validation, and so a checkpoint, every EVERY steps
RTOL = 1e-6
TIMEOUT = 300
COMMAND = [
    *TINY,
    f"trainer.max_steps={STEPS}",
    f"trainer.val_check_interval={EVERY}",
    "trainer.log_every_n_steps=1",
    "model.dropout=0.1",
    "callbacks.checkpoint.save_top_k=-1",  # keep every step's checkpoint: the test picks a moment by name
    "callbacks.samples.num_samples=0",
]

# Loaded by the child Python through PYTHONPATH (tests only, no hook in the package): fsync of a
# checkpoint's temp file (atomic_save's last step before the rename) sleeps, which holds the write window
# open long enough to kill the process inside it.
SLOW_FSYNC = """
import os, time

_fsync = os.fsync


def fsync(fd):
    try:
        name = os.readlink(f"/proc/self/fd/{fd}")
    except OSError:
        name = ""
    if ".ckpt.tmp-" in name:
        time.sleep(float(os.environ["SLOW_CHECKPOINT_FSYNC"]))
    return _fsync(fd)


os.fsync = fsync
"""


def command(run_dir: Path, cache_dir: Path, *overrides: str) -> list[str]:
    return cli_command(*COMMAND, *overrides, run_dir=run_dir, cache_dir=cache_dir)


def run(run_dir: Path, cache_dir: Path, *overrides: str) -> None:
    result = subprocess.run(
        command(run_dir, cache_dir, *overrides),
        env=cli_env(),
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert result.returncode == 0, result.stderr[-3000:]


def run_and_kill(
    run_dir: Path, cache_dir: Path, moment: Callable[[Path], bool], env: dict[str, str] | None = None
) -> None:
    """Start the CLI and SIGKILL it as soon as ``moment(checkpoints folder)`` is true (polled every ms)."""
    folder = run_dir / "checkpoints"
    with subprocess.Popen(
        command(run_dir, cache_dir),
        env=env or cli_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    ) as process:
        deadline = time.monotonic() + TIMEOUT
        while not (folder.is_dir() and moment(folder)):
            if process.poll() is not None:
                output = process.stderr.read()
                pytest.fail(f"the run ended (rc {process.returncode}) before the kill:\n{output[-3000:]}")
            assert time.monotonic() < deadline, "the moment to kill never came"
            time.sleep(0.001)
        process.send_signal(signal.SIGKILL)
        assert process.wait(timeout=30) == -signal.SIGKILL


def checkpoint_name(step: int) -> str:
    return f"best-step{step:06d}.ckpt"


def assert_resumable(folder: Path) -> int:
    """Every checkpoint under a final name is whole and loads; ``latest_checkpoint`` picks one of them, never
    a temp file. Returns the step it holds: where ``ckpt_path=auto`` resumes."""
    finals = [path for path in folder.iterdir() if path.name.endswith(".ckpt")]
    assert finals
    for path in finals:
        assert is_complete(path), path
        assert torch.load(path, map_location="cpu", weights_only=True)["state_dict"], path
    latest = latest_checkpoint(folder)
    assert latest in finals
    assert TEMP_MARKER not in latest.name
    return stored_step(latest)


def assert_resumed_like_reference(run_dir: Path, cache_dir: Path, resume_step: int, reference: dict) -> None:
    versions_before = len(list((run_dir / "csv").glob("version_*")))
    run(run_dir, cache_dir, "ckpt_path=auto")
    assert len(list((run_dir / "csv").glob("version_*"))) == versions_before + 1
    resumed = train_losses(run_dir)  # the resumed run's version is the newest, so its losses win
    steps = range(resume_step + 1, STEPS + 1)
    assert [resumed[step] for step in steps] == pytest.approx([reference[step] for step in steps], rel=RTOL)
    assert (run_dir / "summary.json").is_file()
    assert not list((run_dir / "checkpoints").glob(f"*{TEMP_MARKER}*"))  # what killed writes left is cleared


@pytest.fixture(scope="module")
def reference(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The uninterrupted run's losses, step -> loss, and the cache the other runs share."""
    root = tmp_path_factory.mktemp("kill")
    run(root / "reference", root / "cache")
    losses = train_losses(root / "reference")
    assert sorted(losses) == list(range(1, STEPS + 1))
    return {"root": root, "cache": root / "cache", "losses": losses}


@pytest.mark.parametrize("seed", [0, 1])
def test_sigkill_at_a_random_moment_resumes_exactly(reference: dict, seed: int) -> None:
    """Killed a seeded random time after the k-th checkpoint (k seeded too) appeared."""
    rng = random.Random(seed)
    after_step = EVERY * rng.randint(1, STEPS // EVERY - 2)  # leaves at least 2 intervals to be killed in
    delay = rng.uniform(0.0, 0.05)
    run_dir = reference["root"] / f"random-{seed}"
    first_seen: list[float] = []

    def moment(folder: Path) -> bool:
        if not first_seen and (folder / checkpoint_name(after_step)).exists():
            first_seen.append(time.monotonic())
        return bool(first_seen) and time.monotonic() - first_seen[0] >= delay

    run_and_kill(run_dir, reference["cache"], moment)
    assert not (run_dir / "summary.json").exists()
    resume_step = assert_resumable(run_dir / "checkpoints")
    # A kill between ModelCheckpoint's two saves (best-step<k>, then last.ckpt) resumes from last.ckpt, one
    # interval back: latest_checkpoint prefers a complete last.ckpt.
    assert after_step - EVERY <= resume_step < STEPS
    assert_resumed_like_reference(run_dir, reference["cache"], resume_step, reference["losses"])


def test_sigkill_during_a_checkpoint_write_keeps_the_previous_one(reference: dict, tmp_path: Path) -> None:
    """Killed while the second checkpoint's temp file exists: inside ``atomic_save``, before its rename."""
    (tmp_path / "sitecustomize.py").write_text(SLOW_FSYNC)
    pythonpath = os.pathsep.join(filter(None, [str(tmp_path), os.environ.get("PYTHONPATH")]))
    env = cli_env(PYTHONPATH=pythonpath, SLOW_CHECKPOINT_FSYNC="2")
    run_dir = reference["root"] / "during-write"
    target = checkpoint_name(2 * EVERY)

    def moment(folder: Path) -> bool:
        return any(path.name.startswith(target + TEMP_MARKER) for path in folder.iterdir())

    run_and_kill(run_dir, reference["cache"], moment, env)
    folder = run_dir / "checkpoints"
    leftovers = [path for path in folder.iterdir() if TEMP_MARKER in path.name]
    assert [path.name.split(TEMP_MARKER)[0] for path in leftovers] == [target]  # the kill hit the write
    assert not (folder / target).exists()
    assert not is_complete(leftovers[0])
    assert stored_step(folder / checkpoint_name(EVERY)) == EVERY  # the previous checkpoint is intact
    assert assert_resumable(folder) == EVERY
    assert_resumed_like_reference(run_dir, reference["cache"], EVERY, reference["losses"])
