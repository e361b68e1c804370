"""DCP's ``.metadata`` index, read without pickle's reach.

DCP writes its ``.metadata`` index with plain pickle, and ``FileSystemReader`` reads it with plain pickle:
a crafted file runs code on load. It is read here by an unpickler that builds only the classes of DCP's own
index format (dataclasses filled by attribute, enums and a few torch value types), so a checkpoint folder
cannot run code. A torch release that adds a class to the format makes loading fail with its name (the
tests build real DCP checkpoints and catch that), never silently run anything.
"""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from lightning_llm.errors import CheckpointError, first_line

__all__ = ["DCP_METADATA", "read_dcp_metadata", "safe_reader"]

DCP_METADATA = ".metadata"  # torch.distributed.checkpoint's index, written last by the coordinator rank

_DCP_METADATA_CLASSES = {
    "torch.distributed.checkpoint.metadata": {
        "Metadata",
        "StorageMeta",
        "TensorStorageMetadata",
        "BytesStorageMetadata",
        "ChunkStorageMetadata",
        "TensorProperties",
        "MetadataIndex",
        "_MEM_FORMAT_ENCODING",
    },
    "torch.distributed.checkpoint.filesystem": {"_StorageInfo"},
    "torch.serialization": {"_get_layout"},  # a lookup of a torch.layout by its name
    "torch": {"Size"},
    "pathlib": {"Path", "PosixPath", "WindowsPath", "PurePath", "PurePosixPath", "PureWindowsPath"},
    "collections": {"OrderedDict"},
}


class _NotInFormat(pickle.UnpicklingError):
    """A global that DCP's index format does not use."""


class _DcpMetadataUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if name in _DCP_METADATA_CLASSES.get(module, ()):
            return super().find_class(module, name)
        value = getattr(torch, name, None) if module == "torch" else None
        if isinstance(value, torch.dtype | torch.layout | torch.memory_format):
            return value
        raise _NotInFormat(f"{module}.{name}")


def read_dcp_metadata(path: Path) -> Any:
    """DCP's ``.metadata`` index at ``path``, built only from the allowlisted classes; anything else in it
    (a callable, an arbitrary class) is refused with a ``CheckpointError`` naming it and the file."""
    from torch.distributed.checkpoint.metadata import Metadata

    try:
        with open(path, "rb") as file:
            metadata = _DcpMetadataUnpickler(file).load()
    except _NotInFormat as error:
        reason = f"its {path.name} holds pickled code or objects ({error}), refused"
    except Exception as error:  # a damaged pickle raises many types
        reason = f"its {path.name} is damaged: {first_line(error)}"
    else:
        if isinstance(metadata, Metadata):
            return metadata
        reason = f"its {path.name} is not DCP's index (it holds a {type(metadata).__name__})"
    raise CheckpointError(f"{path.parent} is not a readable sharded checkpoint: {reason}", reason)


def safe_reader(path: Path) -> Any:
    """DCP's ``FileSystemReader`` for ``path`` whose index is read by ``read_dcp_metadata``."""
    from torch.distributed.checkpoint import FileSystemReader
    from torch.distributed.checkpoint.metadata import StorageMeta

    class SafeFileSystemReader(FileSystemReader):
        def read_metadata(self, *args: Any, **kwargs: Any) -> Any:
            metadata = read_dcp_metadata(path / DCP_METADATA)
            if getattr(metadata, "storage_meta", None) is None:
                metadata.storage_meta = StorageMeta()
            metadata.storage_meta.load_id = self.load_id
            return metadata

    return SafeFileSystemReader(path)
