"""DCP's ``.metadata`` index, read without pickle's reach.

DCP writes its ``.metadata`` index with plain pickle, and ``FileSystemReader`` reads it with plain pickle:
a crafted file runs code on load. It is read here by an unpickler that builds only the classes of DCP's own
index format (dataclasses filled by attribute, enums and a few torch value types), so a checkpoint folder
cannot run code. A torch release that adds a class to the format makes loading fail with its name (the
tests build real DCP checkpoints and catch that), never silently run anything.

The index is also checked against the shards beside it before anything is allocated from it (DCP allocates,
and ``load_sharded`` builds, each tensor at the size the index declares): every entry's data must lie in a
shard file, in bytes of its own, as an archive ``torch.save`` wrote (uncompressed: a compressed one could
unpack into any amount of memory); each tensor's declared size and dtype must need exactly the bytes its
chunks hold, and its chunks must tile it; each non-tensor entry (an optimizer's ``param_groups``, which DCP
reads back with ``weights_only=False``) must load with ``weights_only=True``. So what a checkpoint folder
makes a reader allocate is bounded by what its files hold, and its shards cannot run code either.
"""

from __future__ import annotations

import io
import math
import os
import pickle
import re
import stat
import zipfile
from pathlib import Path
from typing import Any, NamedTuple

import torch

from lightning_llm.errors import CheckpointError, first_line
from lightning_llm.untrusted import MAX_PICKLE_BYTES, pickle_problem

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


class _Unusable(Exception):
    """An index file that is not read at all (its reason is the message)."""


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
    (a callable, an arbitrary class) is refused with a ``CheckpointError`` naming it and the file, as is an
    index that does not describe the shards beside it (module docstring), naming the entry."""
    from torch.distributed.checkpoint.metadata import Metadata

    try:
        if not path.is_file() or path.stat().st_size > MAX_PICKLE_BYTES:  # a FIFO would block the read
            raise _Unusable(f"its {path.name} is not a regular file of at most {MAX_PICKLE_BYTES:,} bytes")
        data = path.read_bytes()
        if problem := pickle_problem(data):  # before the unpickler hashes or builds it
            raise _Unusable(f"its {path.name} {problem}, refused (damaged or crafted)")
        metadata = _DcpMetadataUnpickler(io.BytesIO(data)).load()
    except _Unusable as error:
        reason = str(error)
    except _NotInFormat as error:
        reason = f"its {path.name} holds pickled code or objects ({error}), refused"
    except Exception as error:  # a damaged pickle raises many types
        reason = f"its {path.name} is damaged: {first_line(error)}"
    else:
        if not isinstance(metadata, Metadata):
            reason = f"its {path.name} is not DCP's index (it holds a {type(metadata).__name__})"
        elif (reason := _index_problem(path.parent, metadata)) is None:
            return metadata
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


# --------------------------------------------------------------------------- the index against its shards

_DATA_RECORD = re.compile(r"[^/]+/data/[^/]+")  # a storage's bytes in torch.save's archive (not .data/...)
_OVERLAP_CHECKS = 2**22  # pairs of chunks compared, all tensors together: far beyond any real layout's
_MAX_CHUNKS = 2**20  # chunks of all tensors together (a tensor has one per rank that holds a part of it)


class _Refused(Exception):
    """Why DCP's index does not describe the shards beside it."""


class _Span(NamedTuple):
    """An entry's data where the index places it: ``length`` bytes at ``start`` of the shard ``file``."""

    file: str
    start: int
    length: int
    key: str
    tensor: bool  # a tensor's chunk (else a non-tensor entry, torch.save'd)


class _Chunk(NamedTuple):
    offsets: tuple[int, ...]
    sizes: tuple[int, ...]
    span: int  # its data: an index into the spans


def _index_problem(folder: Path, metadata: Any) -> str | None:
    """Why ``metadata`` (DCP's index, unpickled) does not describe the shards in ``folder``, or None."""
    try:
        _check_index(folder, metadata)
    except _Refused as refused:
        return f"{refused}; refused (damaged or crafted)"
    except (AttributeError, TypeError, ValueError, KeyError, OverflowError) as error:  # fields of odd types
        return f"its {DCP_METADATA} is damaged: {first_line(error)}"
    return None


def _check_index(folder: Path, metadata: Any) -> None:
    from torch.distributed.checkpoint.metadata import (
        BytesStorageMetadata,
        MetadataIndex,
        TensorStorageMetadata,
    )

    entries, storage = metadata.state_dict_metadata, metadata.storage_data
    if not isinstance(entries, dict) or not isinstance(storage, dict):
        raise _Refused(f"its {DCP_METADATA} does not index its entries' data")
    # Counted before anything is built per chunk: a pickle can share one long list of chunks among every key.
    chunks = sum(len(getattr(entry, "chunks", None) or ()) for entry in entries.values())
    if chunks > _MAX_CHUNKS or len(storage) > _MAX_CHUNKS:
        raise _Refused(f"its {DCP_METADATA} lists {max(chunks, len(storage)):,} chunks, over {_MAX_CHUNKS:,}")
    spans: list[_Span] = []
    tensors: list[tuple[str, torch.dtype, tuple[int, ...], list[_Chunk]]] = []
    for key, entry in entries.items():
        if not isinstance(key, str):
            raise _Refused(f"its {DCP_METADATA} names an entry {key!r}, not a string")
        if isinstance(entry, TensorStorageMetadata):
            dtype, size, boxes = _declared(key, entry)
            chunks, placed = [], {}  # chunks at the same offsets share their data (empty shards of ranks)
            for offsets, sizes in boxes:
                if offsets not in placed:
                    placed[offsets] = len(spans)
                    spans.append(_span(storage.get(MetadataIndex(key, offsets)), key, tensor=True))
                chunks.append(_Chunk(offsets, sizes, placed[offsets]))
            tensors.append((key, dtype, size, chunks))
        elif isinstance(entry, BytesStorageMetadata):
            spans.append(_span(storage.get(MetadataIndex(key)), key, tensor=False))
        else:
            raise _Refused(
                f"its {DCP_METADATA} gives {key} a {type(entry).__name__}, not one of DCP's entries"
            )
    held = _held_bytes(folder, spans)
    budget = _OVERLAP_CHECKS
    for key, dtype, size, chunks in tensors:
        declared, stored = math.prod(size) * dtype.itemsize, sum(held[chunk.span] for chunk in chunks)
        if stored != declared:
            raise _Refused(
                f"its {DCP_METADATA} declares {key} as {_shape(size)} {_name(dtype)} ({declared:,} bytes), "
                f"its shards hold {stored:,} bytes of it"
            )
        for chunk in chunks:
            needed = math.prod(chunk.sizes) * dtype.itemsize
            if held[chunk.span] != needed:
                raise _Refused(
                    f"its {DCP_METADATA} declares a {_shape(chunk.sizes)} chunk of {key} ({needed:,} bytes "
                    f"of {_name(dtype)}), its shard {spans[chunk.span].file} holds {held[chunk.span]:,} bytes"
                )
        budget = _check_tiling(key, size, chunks, budget)


def _declared(
    key: str, entry: Any
) -> tuple[torch.dtype, tuple[int, ...], list[tuple[tuple[int, ...], tuple[int, ...]]]]:
    """A tensor entry's dtype, size and chunks (offsets, sizes), each chunk inside the size."""
    dtype, size = entry.properties.dtype, tuple(entry.size)
    if not isinstance(dtype, torch.dtype) or not all(_is_count(n) for n in size):
        raise _Refused(f"its {DCP_METADATA} declares {key} with no valid dtype and size")
    if not isinstance(entry.chunks, list):
        raise _Refused(f"its {DCP_METADATA} lists no chunks of {key}")
    boxes = []
    for chunk in entry.chunks:
        offsets, sizes = tuple(chunk.offsets), tuple(chunk.sizes)
        if not (
            len(offsets) == len(sizes) == len(size)
            and all(_is_count(n) for n in (*offsets, *sizes))
            and all(o + s <= n for o, s, n in zip(offsets, sizes, size, strict=True))
        ):
            raise _Refused(f"its {DCP_METADATA} places a chunk of {key} outside its size {_shape(size)}")
        boxes.append((offsets, sizes))
    return dtype, size, boxes


def _span(where: Any, key: str, tensor: bool) -> _Span:
    """Where the index (its ``storage_data``) places the data of an entry: in a shard file of the folder,
    as written (DCP's transforms, such as compression, are not taken)."""
    if where is None:
        raise _Refused(f"its {DCP_METADATA} places no data for {key}")
    name, start, length = where.relative_path, where.offset, where.length
    if not (isinstance(name, str) and name not in ("", ".", "..") and Path(name).name == name):
        raise _Refused(f"its {DCP_METADATA} places {key} in {name!r}, not a file of the checkpoint folder")
    if not (_is_count(start) and _is_count(length)):
        raise _Refused(f"its {DCP_METADATA} places {key} at no valid bytes of {name}")
    if getattr(where, "transform_descriptors", None):
        raise _Refused(
            f"its {DCP_METADATA} stores {key} transformed ({where.transform_descriptors}), not taken"
        )
    return _Span(name, start, length, key, tensor)


def _held_bytes(folder: Path, spans: list[_Span]) -> list[int]:
    """For each span, the bytes of the storage its archive holds (a non-tensor entry's: 0, once it loaded
    with ``weights_only=True``). The spans must lie in the shard files, each in bytes of its own."""
    sizes = {name: _shard_size(folder / name) for name in sorted({span.file for span in spans})}
    end, last = 0, None
    for span in sorted(spans, key=lambda span: (span.file, span.start)):
        if last is not None and last.file == span.file and span.start < end:
            raise _Refused(
                f"its {DCP_METADATA} places {span.key} and {last.key} in the same bytes of its shard "
                f"{span.file}"
            )
        if span.start + span.length > sizes[span.file]:
            raise _Refused(
                f"its {DCP_METADATA} places {span.key} at bytes {span.start:,} to "
                f"{span.start + span.length:,} of its shard {span.file}, which holds {sizes[span.file]:,}"
            )
        if last is None or last.file != span.file or span.start + span.length > end:
            end, last = span.start + span.length, span
    held, in_file = [0] * len(spans), {name: [] for name in sizes}
    for index, span in enumerate(spans):
        in_file[span.file].append(index)
    for name, indices in in_file.items():
        try:
            with open(folder / name, "rb") as file:
                for index in indices:
                    span = spans[index]
                    held[index] = _archive_bytes(_FileView(file, span.start, span.length), span)
        except OSError as error:
            raise _Refused(
                f"its shard {name} cannot be read ({error.strerror or first_line(error)})"
            ) from None
    return held


def _shard_size(path: Path) -> int:
    try:
        status = path.stat()
    except OSError as error:
        raise _Refused(
            f"its shard {path.name} cannot be read ({error.strerror or first_line(error)})"
        ) from None
    if not stat.S_ISREG(status.st_mode):  # a FIFO would block, a device would never end
        raise _Refused(f"its shard {path.name} is not a regular file")
    return status.st_size


def _archive_bytes(view: _FileView, span: _Span) -> int:
    """The bytes of the storage in the archive ``torch.save`` wrote for ``span``'s entry (DCP stores each
    chunk so). Its entries must be uncompressed and inside the span: torch allocates an entry at the size
    the archive declares, and a compressed one unpacks into any amount of memory."""
    where = f"its shard {span.file} (bytes {span.start:,} to {span.start + span.length:,}, {span.key})"
    try:
        with zipfile.ZipFile(view) as archive:
            entries = archive.infolist()
    except OSError:
        raise
    except Exception:  # zipfile raises many types for damage
        raise _Refused(f"{where} is not an archive torch.save wrote") from None
    for entry in entries:
        if entry.compress_type != zipfile.ZIP_STORED or entry.file_size != entry.compress_size:
            raise _Refused(
                f"{where} is compressed (its entry {entry.filename}; torch stores them uncompressed)"
            )
        if entry.header_offset + entry.compress_size > span.length:
            raise _Refused(f"{where} declares an entry larger than the span ({entry.filename})")
    if span.tensor:
        return sum(entry.file_size for entry in entries if _DATA_RECORD.fullmatch(entry.filename))
    # DCP reads a non-tensor entry back with torch.load(weights_only=False): it must be plain data
    view.seek(0)
    try:
        torch.load(view, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        if str(error).startswith("Weights only load failed"):
            raise _Refused(f"{where} holds pickled code or objects (DCP would run them)") from None
        raise _Refused(f"{where} is damaged ({first_line(error)})") from None
    except Exception as error:  # whatever torch's reader raises for a damaged archive
        raise _Refused(f"{where} is damaged ({first_line(error)})") from None
    return 0


def _check_tiling(key: str, size: tuple[int, ...], chunks: list[_Chunk], budget: int) -> int:
    """Refuse chunks of a tensor that overlap (their bytes add up to its own, so overlapping chunks would
    leave some of it unread); returns what is left of ``budget``, the pairs of chunks to compare at most.
    A sweep along the dimension the chunks split most, as DCP's own check when it saves."""
    boxes = [chunk for chunk in chunks if all(chunk.sizes)]
    if len(boxes) < 2 or not size:
        return budget
    dim = max(range(len(size)), key=lambda d: len({box.offsets[d] for box in boxes}))
    active: list[_Chunk] = []
    for box in sorted(boxes, key=lambda box: box.offsets[dim]):
        budget -= len(active)
        if budget < 0:
            raise _Refused(f"its {DCP_METADATA} splits {key} into more overlapping chunks than are checked")
        active = [other for other in active if other.offsets[dim] + other.sizes[dim] > box.offsets[dim]]
        for other in active:
            if all(
                a < b + m and b < a + n
                for a, n, b, m in zip(box.offsets, box.sizes, other.offsets, other.sizes, strict=True)
            ):
                raise _Refused(f"its {DCP_METADATA} places chunks of {key} over each other")
        active.append(box)
    return budget


class _FileView(io.RawIOBase):
    """``length`` bytes at ``start`` of an open file, read as a file of their own (by zipfile, torch.load)."""

    def __init__(self, file: Any, start: int, length: int) -> None:
        super().__init__()
        self._file, self._start, self._length, self._at = file, start, length, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        return self._at

    def seek(self, offset: int, whence: int = os.SEEK_SET) -> int:
        at = offset + (0, self._at, self._length)[whence]
        if at < 0:
            raise OSError(22, "negative seek position")
        self._at = at
        return at

    def readinto(self, buffer: Any) -> int:
        count = max(0, min(len(buffer), self._length - self._at))
        self._file.seek(self._start + self._at)
        data = self._file.read(count)
        buffer[: len(data)] = data
        self._at += len(data)
        return len(data)


def _is_count(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def _shape(size: tuple[int, ...]) -> str:
    return "x".join(map(str, size)) or "scalar"


def _name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")
