"""Checkpoints that are never half-written under a name a reader picks, and their consolidation.

A process can die at any instant (kill -9, OOM, preemption); the checkpoint it was writing must then not be
what the next run resumes from, and the previous one must survive. So a checkpoint appears under its final
name only once it is whole:

- one file (single device, DDP): ``AtomicCheckpointIO`` writes ``<name>.tmp-<pid>-<random>``, fsyncs it and
  renames it onto ``<name>``; a POSIX rename is atomic, so ``<name>`` is always the old or the new checkpoint.
- a sharded directory (FSDP2): ``ShardedStrategy`` has every rank write into ``<name>.partial-<pid>/``, then
  rank 0 moves the previous ``<name>`` aside to ``<name>.old``, renames ``.partial`` to ``<name>`` and deletes
  ``.old``. Two renames of a directory cannot be one atomic step, so a crash between them leaves only
  ``<name>.old``, which is complete and which ``latest_checkpoint`` falls back to.

The reading side of this contract (``is_complete``, ``latest_checkpoint``) and what needs no Lightning
(``atomic_save``, ``consolidate``) are in ``lightning_llm.checkpoint``, which must stay importable without it;
they are re-exported here. That module never imports this one.
"""

from __future__ import annotations

import errno
import logging
import os
import shutil
from pathlib import Path
from typing import Any

import torch.distributed.checkpoint as dcp
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO
from lightning.pytorch.strategies import ModelParallelStrategy
from typing_extensions import override

from lightning_llm.atomic import fsync_dir
from lightning_llm.checkpoint import (
    CHECKPOINT_DIR,
    DCP_METADATA,
    DELETING_MARKER,
    META_FILE,
    OLD_SUFFIX,
    PARTIAL_SUFFIX,
    atomic_save,
    consolidate,
    is_complete,
    latest_checkpoint,
    read_dcp_metadata,
)

__all__ = [
    "AtomicCheckpointIO",
    "CheckpointWriteError",
    "ShardedStrategy",
    "atomic_save",
    "consolidate",
    "is_complete",
    "latest_checkpoint",
]

# --------------------------------------------------------------------------- single files

# What the user can do about a failed write, by its cause; anything else: "fix the cause".
_REMEDIES = {
    errno.ENOSPC: "free disk space",
    errno.EDQUOT: "free space under your disk quota",
    errno.EACCES: "make the folder writable",
    errno.EPERM: "make the folder writable",
    errno.EROFS: "write to a writable filesystem (another hydra.run.dir)",
}


class CheckpointWriteError(OSError):
    """A checkpoint could not be written (disk full, folder unwritable, I/O error). Nothing is lost: the temp
    file is removed and the checkpoints already under final names are untouched, so the message names the one
    ``ckpt_path=auto`` would resume from. ``errno`` is the cause's."""

    def __init__(self, path: str | Path, cause: OSError) -> None:
        self.path, self.cause = Path(path), cause
        kept = latest_checkpoint(self.path.parent) if self.path.parent.is_dir() else None
        previous = f"the previous checkpoint {kept} is kept" if kept else "no earlier checkpoint to keep"
        remedy = _REMEDIES.get(cause.errno, "fix the cause")
        self.message = (
            f"could not write checkpoint {self.path}: {cause.strerror or cause} ({previous}); "
            f"{remedy} and resume with ckpt_path=auto"
        )
        super().__init__(cause.errno, self.message)

    def __str__(self) -> str:
        return self.message


def _remove(path: Path) -> None:
    """Delete a checkpoint file or directory. A directory is first renamed to a ``.deleting-`` name, so a
    crash halfway through the deletion cannot leave a gutted directory under a name readers accept."""
    if path.is_dir() and not path.is_symlink():  # a link (ModelCheckpoint's save_last="link") is unlinked
        doomed = path.with_name(f"{path.name}{DELETING_MARKER}{os.getpid()}")
        os.replace(path, doomed)
        shutil.rmtree(doomed)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _remove_recorded(path: Path) -> None:
    """Remove a checkpoint a callback recorded and Lightning now drops (an older top-k or last one): only an
    entry directly in a ``checkpoints/`` folder, as named and with the folder's links resolved; anything else
    (a crafted checkpoint's record) is left where it is, with a warning."""
    named = Path(os.path.normpath(os.path.abspath(path)))
    if named.parent.name != CHECKPOINT_DIR or path.parent.resolve().name != CHECKPOINT_DIR:
        logging.getLogger("lightning_llm").warning(
            "not deleting %s: a checkpoint to remove must be in a %s/ folder", path, CHECKPOINT_DIR
        )
        return
    _remove(path)


def _os_error(error: BaseException) -> OSError | None:
    """The OSError behind ``error``, if any. ``torch.save`` into a file object reports a failed ``write``
    (ENOSPC...) as a RuntimeError ("unexpected pos"), with the OSError only as its ``__context__``."""
    seen: set[int] = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, OSError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


class AtomicCheckpointIO(TorchCheckpointIO):
    """Lightning's ``TorchCheckpointIO`` with crash-safe local writes (see ``atomic_save``); a failed write
    raises ``CheckpointWriteError``. Removal also handles sharded directories. Remote paths (``s3://``...)
    keep Lightning's behaviour."""

    @override
    def save_checkpoint(
        self, checkpoint: dict[str, Any], path: str | Path, storage_options: Any | None = None
    ) -> None:
        if storage_options is not None or not _is_local(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        try:
            atomic_save(checkpoint, path)
        except Exception as error:
            cause = _os_error(error)
            if cause is None:
                raise
            raise CheckpointWriteError(path, cause) from error

    @override
    def remove_checkpoint(self, path: str | Path) -> None:
        if not _is_local(path):
            return super().remove_checkpoint(path)
        _remove_recorded(Path(path))


# --------------------------------------------------------------------------- sharded directories


class ShardedStrategy(ModelParallelStrategy):
    """Lightning's ``ModelParallelStrategy`` (FSDP2 / tensor parallel, ``fully_shard`` applied in
    ``LightningModule.configure_model``) whose sharded checkpoints are never half-picked: all ranks write
    ``<path>.partial-<pid>/``, then rank 0 swaps it in (module docstring). Also:

    - pass ``data_parallel_size`` as the number of processes tensor parallelism leaves (world size /
      ``tensor_parallel_size``): Lightning's ``"auto"`` makes one group per node, which with
      ``tensor_parallel_size=1`` does not cover a single node's processes (``strategy.resolve`` does this).
    - single-file checkpoints (``save_distributed_checkpoint=False``) go through ``AtomicCheckpointIO``.
    - a sharded checkpoint's DCP index is checked before DCP unpickles it (``load_checkpoint``).

    Same constructor as ``ModelParallelStrategy``.
    """

    def __init__(self, *args: Any, save_distributed_checkpoint: bool = True, **kwargs: Any) -> None:
        super().__init__(*args, save_distributed_checkpoint=save_distributed_checkpoint, **kwargs)
        self.sharded_checkpoints = save_distributed_checkpoint
        self.checkpoint_io = AtomicCheckpointIO()  # used for full-state files and for removal

    @override
    def save_checkpoint(
        self, checkpoint: dict[str, Any], filepath: str | Path, storage_options: Any | None = None
    ) -> None:
        """Collective: every rank must call it (``Trainer.save_checkpoint`` does)."""
        if not self.sharded_checkpoints or storage_options is not None:
            return super().save_checkpoint(checkpoint, filepath, storage_options)
        # Rank 0's path: one checkpoint, whatever each rank computed.
        path = Path(self.broadcast(str(filepath)))
        # Named with rank 0's pid, which the run folder's launch ledger records (run_folder.lock): what a
        # crash leaves is then provably this run's to clean up.
        partial = Path(self.broadcast(str(path.with_name(f"{path.name}{PARTIAL_SUFFIX}-{os.getpid()}"))))
        if self.is_global_zero:
            _remove(partial)  # left by a crash of a process with the same pid
            partial.mkdir(parents=True)
        self.barrier()
        self._write_shards(checkpoint, partial)
        self.barrier()  # every rank's shards are on disk before the checkpoint may appear
        if self.is_global_zero:
            _swap_in(partial, path)
        self.barrier()  # no rank goes on (e.g. to delete an older checkpoint) before the swap is done

    def _write_shards(self, checkpoint: dict[str, Any], folder: Path) -> None:
        """Each rank's weights and optimizer shards (DCP), then rank 0's ``meta.pt`` with everything else,
        in the layout Lightning's ``ModelParallelStrategy.load_checkpoint`` reads."""
        state = {"state_dict": checkpoint.pop("state_dict")}
        state.update({f"optimizer_{i}": s for i, s in enumerate(checkpoint.pop("optimizer_states", []))})
        dcp.save(state, checkpoint_id=folder)  # returns once DCP's .metadata is written (collective)
        if self.is_global_zero:
            atomic_save(checkpoint, folder / META_FILE)
            fsync_dir(folder)

    @override
    def load_checkpoint(
        self, checkpoint_path: str | Path, weights_only: bool | None = None
    ) -> dict[str, Any]:
        """Lightning's sharded load, once DCP's index has passed ``read_dcp_metadata``: DCP itself reads it
        with plain pickle, which would run code planted in a crafted checkpoint folder."""
        path = Path(checkpoint_path)
        if path.is_dir():
            read_dcp_metadata(path / DCP_METADATA)
        return super().load_checkpoint(checkpoint_path, weights_only)

    @override
    def remove_checkpoint(self, filepath: str | Path) -> None:
        """Rank 0 deletes ``filepath`` by the crash-safe protocol, whatever ``checkpoint_io`` a user set."""
        if not _is_local(filepath):
            return super().remove_checkpoint(filepath)
        if self.is_global_zero:
            _remove_recorded(Path(filepath))


def _swap_in(partial: Path, path: Path) -> None:
    """Rename the finished ``partial`` onto ``path``; at every instant ``path`` or ``<path>.old`` is a
    complete checkpoint. A stale ``.old`` is deleted only while ``path`` is complete, and ``path`` is moved
    aside (not deleted) before ``partial`` takes its name."""
    old = path.with_name(path.name + OLD_SUFFIX)
    if path.exists():
        _remove(old)
        os.replace(path, old)
    os.replace(partial, path)
    fsync_dir(path.parent)
    _remove(old)


def _is_local(path: str | Path) -> bool:
    """Whether ``path`` is on the local filesystem (no ``s3://``-style protocol), where renames are atomic."""
    text = str(path)
    return "://" not in text or text.startswith("file://")
