"""Sharded checkpoints are never half-picked: crashes injected at each point of a save (in one process), and a
real 2-process FSDP2 run on CPU whose checkpoints are consolidated and resumed on a different world size."""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_llm import atomic
from lightning_llm.checkpoint import find_checkpoint, is_complete, latest_checkpoint, load_checkpoint
from lightning_llm.distributed import checkpointing
from lightning_llm.distributed.checkpointing import (
    AtomicCheckpointIO,
    CheckpointWriteError,
    ShardedStrategy,
    consolidate,
)

SCRIPT = Path(__file__).parent / "scripts" / "ckpt_fsdp_run.py"
# Each run takes ~15-20 s on 2 shared CPU cores, most of it importing and starting processes.
RUN_TIMEOUT_S = 120

pytestmark = pytest.mark.filterwarnings("ignore:torch.distributed is disabled:UserWarning")


def checkpoint_at(step: int) -> dict:
    """A checkpoint as Lightning hands it to the strategy: weights, optimizer state and plain data."""
    weights = {"model.w": torch.full((5, 3), float(step)), "model.b": torch.arange(5.0) + step}
    optimizer = {
        "state": {name: {"exp_avg": value * 2} for name, value in weights.items()},
        "param_groups": [{"lr": 0.1, "params": list(weights)}],
    }
    return {
        "state_dict": weights,
        "optimizer_states": [optimizer],
        "global_step": step,
        "config": {"seed": 0},
    }


def files_of(folder: Path) -> dict[str, bytes]:
    return {path.name: path.read_bytes() for path in sorted(folder.iterdir())}


@pytest.fixture
def saved(tmp_path: Path) -> Path:
    """checkpoints/last.ckpt, a complete sharded checkpoint at step 1."""
    last = tmp_path / "checkpoints" / "last.ckpt"
    ShardedStrategy().save_checkpoint(checkpoint_at(1), last)
    return last


def test_a_sharded_save_writes_beside_then_swaps_in(saved: Path):
    ShardedStrategy().save_checkpoint(checkpoint_at(2), saved)
    assert sorted(path.name for path in saved.parent.iterdir()) == ["last.ckpt"]  # no .partial, no .old
    assert sorted(path.name for path in saved.iterdir()) == [".metadata", "__0_0.distcp", "meta.pt"]
    checkpoint = load_checkpoint(saved)
    assert checkpoint["global_step"] == 2
    assert torch.equal(checkpoint["state_dict"]["model.w"], torch.full((5, 3), 2.0))


def test_a_sharded_save_that_dies_while_writing_leaves_the_previous_one(saved: Path, monkeypatch):
    before = files_of(saved)
    real_save = checkpointing.dcp.save

    def dying_save(state: dict, checkpoint_id: Path) -> None:  # the shards get written, then the process dies
        real_save(state, checkpoint_id=checkpoint_id)
        raise RuntimeError("killed")

    monkeypatch.setattr(checkpointing.dcp, "save", dying_save)
    with pytest.raises(RuntimeError, match="killed"):
        ShardedStrategy().save_checkpoint(checkpoint_at(2), saved)
    monkeypatch.undo()
    partial = saved.with_name(f"last.ckpt.partial-{os.getpid()}")  # named with its writer's pid
    assert partial.is_dir() and not is_complete(partial)  # left behind, and ignored
    assert files_of(saved) == before
    assert latest_checkpoint(saved.parent) == saved and load_checkpoint(saved)["global_step"] == 1
    ShardedStrategy().save_checkpoint(checkpoint_at(3), saved)  # the next save clears the leftover
    assert sorted(path.name for path in saved.parent.iterdir()) == ["last.ckpt"]
    assert load_checkpoint(saved)["global_step"] == 3


def test_a_crash_between_the_two_renames_leaves_the_old_checkpoint_found(saved: Path, monkeypatch):
    real_replace = os.replace

    def dying_replace(source, target) -> None:
        if Path(source).name.startswith("last.ckpt.partial-"):  # last.ckpt is moved aside to last.ckpt.old
            raise KeyboardInterrupt
        real_replace(source, target)

    monkeypatch.setattr(os, "replace", dying_replace)
    with pytest.raises(KeyboardInterrupt):
        ShardedStrategy().save_checkpoint(checkpoint_at(2), saved)
    monkeypatch.undo()
    assert not saved.exists()
    old = saved.with_name("last.ckpt.old")
    assert latest_checkpoint(saved.parent) == old  # not the complete-looking .partial beside it
    assert find_checkpoint(saved.parent) == old and load_checkpoint(old)["global_step"] == 1
    ShardedStrategy().save_checkpoint(checkpoint_at(3), saved)
    assert sorted(path.name for path in saved.parent.iterdir()) == ["last.ckpt"]


def test_removing_a_sharded_checkpoint(saved: Path):
    other = saved.with_name("best.ckpt")
    ShardedStrategy().save_checkpoint(checkpoint_at(2), other)
    ShardedStrategy().remove_checkpoint(other)
    AtomicCheckpointIO().remove_checkpoint(saved)
    assert list(saved.parent.iterdir()) == []


def test_consolidate_refuses_a_file(tmp_path: Path):
    torch.save(checkpoint_at(1), tmp_path / "one.ckpt")
    with pytest.raises(ValueError, match=r"one\.ckpt is not a sharded checkpoint directory"):
        consolidate(tmp_path / "one.ckpt", tmp_path / "out.pt")


class _FullDisk:
    """A file whose disk is full after ``room`` bytes: ``write`` raises ENOSPC, as the kernel reports it."""

    def __init__(self, file, room: int = 64) -> None:
        self._file, self._room = file, room

    def write(self, data) -> int:
        if len(data) > self._room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), self._file.name)
        self._room -= len(data)
        return self._file.write(data)

    def __getattr__(self, name: str):
        return getattr(self._file, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._file.close()


def test_a_full_disk_raises_checkpoint_write_error_and_keeps_the_previous_file(tmp_path: Path, monkeypatch):
    last = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint(checkpoint_at(1), last)
    full_disk = lambda *args, **kwargs: _FullDisk(open(*args, **kwargs))  # noqa: E731, SIM115
    monkeypatch.setattr(atomic, "open", full_disk, raising=False)
    with pytest.raises(CheckpointWriteError) as failed:
        AtomicCheckpointIO().save_checkpoint(checkpoint_at(2), last)
    assert isinstance(failed.value, OSError) and failed.value.errno == errno.ENOSPC
    assert str(failed.value) == (
        f"could not write checkpoint {last}: No space left on device "
        f"(the previous checkpoint {last} is kept); free disk space and resume with ckpt_path=auto"
    )
    assert [path.name for path in last.parent.iterdir()] == ["last.ckpt"]  # the temp file is gone
    assert torch.load(last, weights_only=True)["global_step"] == 1


def test_an_unwritable_folder_names_the_cause_and_that_nothing_was_kept(tmp_path: Path):
    (tmp_path / "checkpoints").write_text("a file where the folder should be")
    with pytest.raises(
        CheckpointWriteError, match=r"last\.ckpt: File exists \(no earlier checkpoint to keep\)"
    ):
        AtomicCheckpointIO().save_checkpoint(checkpoint_at(1), tmp_path / "checkpoints" / "last.ckpt")


def test_an_error_that_is_not_the_disk_passes_through(tmp_path: Path):
    with pytest.raises(Exception) as failed:  # pickling a lambda; nothing to do with the disk
        AtomicCheckpointIO().save_checkpoint({"state_dict": {}, "hook": lambda: 0}, tmp_path / "last.ckpt")
    assert not isinstance(failed.value, CheckpointWriteError)
    assert list(tmp_path.iterdir()) == []


# --------------------------------------------------------------------------- a real FSDP2 run


def launch(outdir: Path, *args: str) -> dict:
    """Run the FSDP script (Lightning starts rank 1 itself); returns its final ``{"global_step": ...}``."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("LOCAL_RANK", "WORLD_SIZE", "NODE_RANK")
    }
    env["OMP_NUM_THREADS"] = "1"  # 2 processes on 2 shared cores
    command = [sys.executable, str(SCRIPT), str(outdir), *args]
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=RUN_TIMEOUT_S)
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads((outdir / f"{args[args.index('--tag') + 1]}.json").read_text())


def assert_same_weights(found: dict, expected: dict) -> None:
    assert set(found) == set(expected)
    for key, value in expected.items():
        assert torch.equal(found[key], value), key


@pytest.mark.slow
def test_fsdp_checkpoints_are_complete_consolidate_and_resume_on_one_process(tmp_path: Path):
    first = launch(tmp_path, "--devices", "2", "--max-steps", "4", "--tag", "two")
    folder = tmp_path / "checkpoints"
    assert first == {"global_step": 4}
    # Saved at steps 2 and 4: last.ckpt swapped over once, the step-2 checkpoint directory removed.
    assert sorted(path.name for path in folder.iterdir()) == ["epoch=0-step=4.ckpt", "last.ckpt"]
    last = folder / "last.ckpt"
    assert is_complete(last) and latest_checkpoint(folder) == last
    assert sorted(path.name for path in last.glob("*.distcp")) == ["__0_0.distcp", "__1_0.distcp"]

    trained = torch.load(tmp_path / "two-end.pt", weights_only=True)
    initial = torch.load(tmp_path / "two-start.pt", weights_only=True)
    assert any(not torch.equal(trained[key], initial[key]) for key in trained)  # it did train
    out = consolidate(last, tmp_path / "last.consolidated.pt")
    consolidated = torch.load(out, weights_only=True)
    assert_same_weights(consolidated["state_dict"], trained)
    assert consolidated["global_step"] == 4 and consolidated["tokenizer_fingerprint"] == "f" * 64
    assert consolidated["config"] == {"model": {"name": "tiny-test", "hidden": 16}}

    # Resume in place with one process: the 2-rank shards are resharded onto 1, then training goes on.
    resumed = launch(tmp_path, "--devices", "1", "--max-steps", "6", "--resume", str(last), "--tag", "one")
    assert resumed == {"global_step": 6}
    assert_same_weights(torch.load(tmp_path / "one-start.pt", weights_only=True), trained)
    assert sorted(path.name for path in folder.iterdir()) == ["epoch=0-step=6.ckpt", "last.ckpt"]
    final = load_checkpoint(last)
    assert final["global_step"] == 6
    assert_same_weights(final["state_dict"], torch.load(tmp_path / "one-end.pt", weights_only=True))


def test_removal_deletes_only_entries_of_a_checkpoints_folder(tmp_path: Path, caplog):
    """What Lightning asks to remove comes from a callback's record, which a crafted checkpoint restores:
    ``checkpoints/../<anything>`` and files elsewhere are left alone."""
    run = tmp_path / "run"
    (run / "checkpoints").mkdir(parents=True)
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    project = tmp_path / "project"
    project.mkdir()
    for path in (
        run / "checkpoints" / ".." / ".." / "notes.txt",
        notes,
        run / "checkpoints" / ".." / ".." / "project",
    ):
        AtomicCheckpointIO().remove_checkpoint(path)
        ShardedStrategy().remove_checkpoint(path)
    assert notes.read_text() == "mine" and project.is_dir()
    assert caplog.text.count("not deleting") == 6
    own = run / "checkpoints" / "best-step000002.ckpt"
    own.write_bytes(b"x")
    AtomicCheckpointIO().remove_checkpoint(own)
    assert not own.exists()
