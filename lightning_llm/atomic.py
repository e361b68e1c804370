"""Write a file so that its name always holds either the old file or the whole new one, also across a crash.

The one writer every file the framework publishes goes through (checkpoints, token and tokenizer caches,
summary.json, the W&B run id, a search's best.yaml): write a private temporary sibling, fsync it, rename it
onto the name (atomic within a filesystem), then fsync the folder so the rename itself survives a power
loss. The temporary name is ``<name>.tmp-<pid>-<random>``: unique across processes and hosts sharing a
filesystem, and recognisable, so that cleanup can delete exactly what a killed writer left
(``lightning_llm.checkpoint.is_unfinished``).
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

__all__ = ["TEMP_MARKER", "atomic_write", "blocked_parent", "fsync_dir", "temporary_name", "write_text"]

TEMP_MARKER = ".tmp-"


def temporary_name(path: Path) -> Path:
    """The private temporary sibling of ``path`` that a writer fills before renaming it onto ``path``."""
    return path.with_name(f"{path.name}{TEMP_MARKER}{os.getpid()}-{secrets.token_hex(4)}")


@contextmanager
def atomic_write(path: str | Path, mode: str = "wb", **open_args: Any) -> Iterator[IO]:
    """``open(path, mode)`` for writing, published only when the block ends without an error. On any error
    (KeyboardInterrupt too) the temporary file is removed, ``path`` is untouched, and the error goes on."""
    path = Path(path)
    temporary = temporary_name(path)
    try:
        with open(temporary, mode.replace("w", "x"), **open_args) as file:
            yield file
            file.flush()
            os.fsync(file.fileno())  # the data is on disk before the name says the file is complete
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)
    fsync_dir(path.parent)


def write_text(path: str | Path, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically; returns ``path``."""
    with atomic_write(path, "w", encoding="utf-8") as file:
        file.write(text)
    return Path(path)


def fsync_dir(folder: Path) -> None:
    """Make renames and new entries in ``folder`` durable (a no-op where directories cannot be opened)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass  # some filesystems refuse fsync on a directory; the rename is still atomic there
    finally:
        os.close(descriptor)


def blocked_parent(path: str | Path) -> str | None:
    """Why the folders above an output ``path`` cannot be made, naming the first existing one on the way up
    that is not a folder (making them fails there with only "File exists" or "Not a directory"); None when
    nothing is in the way."""
    for parent in Path(path).expanduser().parents:
        if parent.is_dir():
            return None
        if parent.is_symlink() or parent.exists():
            return f"{parent} is {'a file' if parent.exists() else 'a link to nothing'}, not a folder"
    return None
