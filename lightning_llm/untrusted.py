"""Reading a file anyone may hand over (a checkpoint, a Hugging Face folder): what is checked before torch
reads it or a model is built from its config, so that no file can take unbounded memory or time.

``torch_file_is_zip`` refuses a file torch did not write, or an archive whose entries are compressed, before
the unpickler meets it; ``check_stored_config`` builds the model a stored config describes on the meta device
under a budget the stored weights set, before any memory is taken.
"""

from __future__ import annotations

import os
import pickletools
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

import torch
from torch import nn

from lightning_llm.errors import CheckpointError, first_line

__all__ = [
    "MODULES_PER_TENSOR",
    "SPARE_ELEMENTS",
    "SPARE_MODULES",
    "check_pickle_expansion",
    "check_plain_structure",
    "pickle_problem",
    "check_stored_config",
    "stored_elements",
    "torch_file_is_zip",
]


_VERIFIED: set[tuple[int, int, int, int]] = set()  # (device, inode, size, mtime) of files whose CRCs matched


def torch_file_is_zip(path: Path, verify: bool = False) -> bool:
    """Whether ``path`` is in torch's zip format (else its pre-1.6 pickle stream), refusing before torch's
    unpickler reads it: a file ``torch.save`` did not write (a text file, an image; torch's own message
    would be about its internals), and an archive with compressed entries (torch stores them uncompressed;
    a compressed one could inflate a small file into any amount of memory). With ``verify``, for a caller
    about to read every byte anyway, each entry's bytes must match the CRC-32 the archive stores for them:
    torch does not check them, so damage inside a tensor (a bad disk, a copy cut and patched) loads as
    weights, silently."""
    if not path.is_file():  # a FIFO would block the read below
        raise CheckpointError(
            f"{path} is not a checkpoint: {'not a regular file' if path.exists() else 'no such file'}"
        )
    try:  # one open file throughout: a run replacing it meanwhile (an atomic rename) changes nothing here
        with open(path, "rb") as file:
            head = file.read(4)
            if head[:2] == b"\x80\x02":  # the legacy format: a pickle stream, protocol 2
                _check_legacy_structure(path)
                return False
            if head != b"PK\x03\x04":  # a zip archive's first entry
                raise CheckpointError(
                    f"{path} is not a checkpoint: torch.save did not write it (empty, or not its format)"
                )
            with zipfile.ZipFile(file) as archive:
                stat = os.fstat(file.fileno())
                structure = _check_entries(path, archive.infolist(), stat.st_size)
                if structure is not None:
                    check_pickle_expansion(archive.read(structure), path)
                # Once per file version and process: a resume checks its checkpoint before Hydra starts the
                # run and again as the run starts, and a pass reads every byte.
                version = (stat.st_dev, stat.st_ino, stat.st_size, stat.st_mtime_ns)
                if verify and version not in _VERIFIED:
                    if (damaged := archive.testzip()) is not None:
                        raise CheckpointError(
                            f"{path} is damaged: its entry {damaged} does not match the checksum stored "
                            "with it (CRC-32); refused"
                        )
                    _VERIFIED.add(version)
    except OSError as error:
        raise CheckpointError(f"{path} cannot be read: {error.strerror or error}") from None
    except zipfile.BadZipFile:
        reason = "corrupt or truncated? (its zip directory or an entry cannot be read)"
        raise CheckpointError(f"{path} is not a readable checkpoint: {reason}", reason) from None
    return True


def _check_entries(path: Path, entries: list[zipfile.ZipInfo], size: int) -> zipfile.ZipInfo | None:
    """The entry of the pickled structure (``data.pkl``) of a zip archive ``torch.save`` wrote, refusing one
    it did not: compressed entries (a small file could inflate into any amount of memory), an entry claiming
    more bytes than the file's ``size``, a name given twice, a pickled structure over ``MAX_PICKLE_BYTES``."""
    if packed := next((e.filename for e in entries if e.compress_type != zipfile.ZIP_STORED), None):
        raise CheckpointError(
            f"{path} is not a checkpoint torch.save wrote: its entry {packed} is compressed (torch stores "
            "every entry uncompressed); refused"
        )
    if big := next((e for e in entries if e.file_size != e.compress_size or e.file_size > size), None):
        raise CheckpointError(
            f"{path} is not a checkpoint torch.save wrote: its entry {big.filename} claims {big.file_size:,} "
            f"bytes, the file has {size:,}; refused"
        )
    names = [entry.filename for entry in entries]
    if len(set(names)) != len(names):  # which of two same-named entries a reader takes is its own choice
        twice = next(name for name in names if names.count(name) > 1)
        raise CheckpointError(f"{path} is not a checkpoint torch.save wrote: it holds {twice} twice; refused")
    structure = next((e for e in entries if e.filename.endswith("/data.pkl")), None)
    if structure is not None and structure.file_size > MAX_PICKLE_BYTES:
        raise CheckpointError(
            f"{path}: its pickled structure is {structure.file_size:,} bytes, over {MAX_PICKLE_BYTES:,} "
            "(a checkpoint's is kilobytes to megabytes); refused"
        )
    return structure


MAX_PICKLE_BYTES = 64 << 20
MAX_EXPANDED = 10_000_000  # objects a pickle's structure expands to, shared references counted each time
_MARK = object()


def check_pickle_expansion(data: bytes | BinaryIO, source: object) -> None:
    """Refuse a pickle built to be slow to load (``pickle_problem``) before an unpickler builds it. A stream
    that is not a pickle is left to the unpickler, which says what is wrong with it."""
    if problem := pickle_problem(data):
        raise CheckpointError(f"{source}: its pickled data {problem} (damaged or crafted); refused")


def _check_legacy_structure(path: Path) -> None:
    """``check_pickle_expansion`` for torch's pre-zip format: a run of pickles (the magic number, the protocol
    version, the system's description, the object, its storages' keys), each read without building it."""
    with open(path, "rb") as file:
        for _ in range(5):
            if file.read(1) == b"":
                return
            file.seek(-1, 1)
            check_pickle_expansion(file, path)


MAX_SAME_HASH = 64  # distinct numbers of one hash value: none in real data (2^61-1 apart)


def pickle_problem(data: bytes | BinaryIO, limit: int = MAX_EXPANDED) -> str | None:
    """Why the pickle ``data`` would be slow to load, or None, read with ``pickletools`` (no object is built):
    its objects, each shared reference expanded, exceed ``limit`` (references cost nothing to store, so 1 KB
    can describe a tuple of 8 copies of a tuple of 8 copies ... that hashing, as a dict key, takes hours
    over); or more than ``MAX_SAME_HASH`` distinct numbers share one hash (a number's hash is not random:
    dict keys k * (2^61 - 1) all collide, and inserting N of them takes N^2 steps)."""
    stack: list = []  # the expanded size of each object on the unpickler's stack, or _MARK
    memo: dict = {}
    by_hash: dict[int, set] = {}
    try:
        for opcode, arg, _ in pickletools.genops(data):
            name = opcode.name
            if isinstance(arg, int | float) and not isinstance(arg, bool) and name not in _MEMO_OPS:
                same = by_hash.setdefault(hash(arg), set())
                same.add(arg)
                if len(same) > MAX_SAME_HASH:
                    return f"holds over {MAX_SAME_HASH} distinct numbers of one hash value"
            if name in ("PUT", "BINPUT", "LONG_BINPUT", "MEMOIZE"):
                memo[len(memo) if name == "MEMOIZE" else arg] = stack[-1]
                continue
            if name in ("GET", "BINGET", "LONG_BINGET"):
                stack.append(memo[arg])
                continue
            before, consumed = opcode.stack_before, 0
            below = len(before)
            if pickletools.markobject in before:  # the items above the topmost mark, then those below it
                while stack[-1] is not _MARK:
                    consumed += stack.pop()
                stack.pop()
                below = before.index(pickletools.markobject)
            for _ in range(below):
                consumed += stack.pop()
            if consumed > limit:
                return f"expands to over {limit:,} objects through shared references"
            stack.extend(
                _MARK if item is pickletools.markobject else consumed + 1 for item in opcode.stack_after
            )
    except (ValueError, IndexError, KeyError, TypeError):  # not a pickle: the unpickler says what it is
        return None
    return None


_MEMO_OPS = frozenset(("PUT", "BINPUT", "LONG_BINPUT", "GET", "BINGET", "LONG_BINGET", "FRAME", "PROTO"))


# What a model built from a stored config may have beyond its stored weights: modules per stored tensor
# (dropouts, activations, containers hold none) and elements (a new task head; a rotary table).
MODULES_PER_TENSOR, SPARE_MODULES, SPARE_ELEMENTS = 32, 1024, 2**26


def stored_elements(state: dict[str, Any]) -> int:
    """The elements ``state``'s tensors hold in storage: a tensor expanded from one element (stride 0) counts
    as what it stores, not as the ``numel`` it claims, and views of one storage count it once (a crafted file
    can hold a thousand views of one tensor). Tensors on the meta device (sizes read from an index) count
    each as its size."""
    storages: dict[int, int] = {}  # a loaded storage's address -> the elements it holds
    total = 0
    for tensor in state.values():
        if not isinstance(tensor, torch.Tensor):
            continue
        held = min(tensor.numel(), tensor.untyped_storage().nbytes() // max(1, tensor.element_size()))
        if tensor.device.type == "meta":
            total += held
        else:
            address = tensor.untyped_storage().data_ptr()
            storages[address] = max(storages.get(address, 0), held)
    return total + sum(storages.values())


MAX_NODES = 1_000_000  # a checkpoint's plain data (its config, optimizer state, callbacks): ~10^4 nodes
MAX_DEPTH = 100


def check_plain_structure(value: Any, source: object) -> None:
    """Refuse a loaded checkpoint whose plain data (dicts, lists, strings; tensors are leaves) nests deeper
    than ``MAX_DEPTH`` or, walked as a reader walks it, visits more than ``MAX_NODES`` entries: the
    unpickler keeps shared references, so a 2 MB file can hold a list of ten copies of a list of ten copies
    ... that any walk over it (the check for code in a config, OmegaConf) would never finish."""
    stack: list[tuple[Any, int]] = [(value, 0)]
    visited = 0
    while stack:
        node, depth = stack.pop()
        visited += 1
        if visited > MAX_NODES or depth > MAX_DEPTH:
            what = (
                f"nests deeper than {MAX_DEPTH}" if depth > MAX_DEPTH else f"holds over {MAX_NODES:,} entries"
            )
            raise CheckpointError(f"{source}: its data {what} (damaged or crafted); refused")
        if isinstance(node, dict):
            stack.extend((item, depth + 1) for pair in node.items() for item in pair)
        elif isinstance(node, list | tuple):
            stack.extend((item, depth + 1) for item in node)


def check_stored_config(
    build: Callable[[], nn.Module],
    state: dict[str, Any],
    what: str = "the checkpoint's model config",
) -> None:
    """Refuse a stored model config (a checkpoint's, read from a file anyone may hand over) that describes a
    model far larger than the weights stored with it, before it takes any memory: ``build`` runs on the meta
    device, stopped once it makes more modules or tensor elements than the weights could belong to, and its
    elements must fit them (``state``: the whole model's weights; an adapters-only checkpoint's with its
    base's). ``what`` names the config in messages ("its model": a Hugging Face config.json)."""
    limit = MODULES_PER_TENSOR * len(state) + SPARE_MODULES
    stored = stored_elements(state)
    # while building, tensors registered (a tied one counts each time it is assigned, so a looser bound)
    registered_limit = 4 * stored + 2 * SPARE_ELEMENTS
    made = registered = 0

    def count_module(module: nn.Module, name: str, submodule: nn.Module | None) -> None:
        nonlocal made
        made += 1
        if made > limit:
            raise CheckpointError(
                f"{what} builds more than {limit} modules for its {len(state)} stored tensors: a config "
                "that does not describe its weights (damaged or crafted); refused"
            )

    def count_elements(module: nn.Module, name: str, tensor: torch.Tensor | None) -> None:
        nonlocal registered
        registered += tensor.numel() if tensor is not None else 0
        if registered > registered_limit:
            raise CheckpointError(
                f"{what} describes more than {registered_limit:,} weights, its stored tensors hold "
                f"{stored:,}: a config that does not describe its weights (damaged or crafted); refused"
            )

    hooks = torch.nn.modules.module
    handles = [
        hooks.register_module_module_registration_hook(count_module),
        hooks.register_module_parameter_registration_hook(count_elements),
        hooks.register_module_buffer_registration_hook(count_elements),
    ]
    try:
        with torch.device("meta"):
            model = build()
    except CheckpointError:
        raise
    except Exception as error:  # every model builds on the meta device (FSDP's ranks but 0 build it there)
        reason = first_line(error)
        raise CheckpointError(f"{what} cannot be built ({reason}); refused") from None
    finally:
        for handle in handles:
            handle.remove()
    elements = sum(t.numel() for t in (*model.parameters(), *model.buffers()))
    if elements > 2 * stored + SPARE_ELEMENTS:
        raise CheckpointError(
            f"{what} describes {elements:,} weights, its stored tensors hold {stored:,}: a config that "
            "does not describe its weights (damaged or crafted); refused"
        )
