"""A corpus as a list of units read as streams: what lets a corpus larger than memory be prepared in parallel.

A ``Corpus`` names its files (``kind``: text, jsonl, parquet, a ``datasets`` folder, or the built-in pydoc
text; a folder in ``paths`` means every file of that format under it) and cuts them into ``Unit``s: a whole
file, a byte range of a large text or JSON Lines file (cut at a blank line or a line end, so no paragraph or
record is split), a row group of a Parquet file, or a range of a saved dataset's rows. ``Corpus.fingerprint``
hashes the file list only (paths, sizes, modification times, the reader's settings), so a run whose tokens are
cached neither reads the corpus text nor plans its units. ``documents(unit)`` streams a unit's documents (a
text file is one document, a record or a row is one), and ``parts(unit)`` their blank-line-separated
paragraphs, holding one paragraph (or one record) in memory at a time: a paragraph longer than
``PART_CHARS`` (a text file with no blank line, one huge line) comes in parts of bounded size, and a run of
whitespace blocks is not held (it is read again from the file if text follows it), so memory and the work per
block stay bounded whatever the file holds. A JSON Lines record (a line: ``\n``, ``\r\n`` or a lone
``\r`` ends one) over ``MAX_RECORD_BYTES`` (64 MiB) is refused, naming it, before it is held whole, and so is
a Parquet cell over it before it becomes a string; a Parquet row group is read in batches of about
``_BATCH_BYTES`` of text.

Errors name the file and the spot (line, byte offset, row, row group), as ``lightning_llm.data.sources``
does; an error of a reading library (pyarrow, datasets), or an OSError reading a corpus file (no permission,
gone), becomes such a one-line ``SourceError`` too (a ValueError, so never taken for a cache folder's error).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

from lightning_llm.data.corpus import SPLIT_KEY_CHARS, split_paragraphs
from lightning_llm.data.sources import (
    MAX_RECORD_BYTES,
    SourceError,
    expand_paths,
    jsonl_text,
    pydoc_topics,
    record_too_large,
    size_words,
)
from lightning_llm.errors import first_line

__all__ = [
    "KINDS",
    "MAX_RECORD_BYTES",
    "SUFFIXES",
    "UNIT_BYTES",
    "Corpus",
    "Part",
    "Unit",
    "documents",
    "parts",
]

KINDS = ("text", "jsonl", "parquet", "dataset", "pydoc")
SUFFIXES = {"text": (".txt",), "jsonl": (".jsonl",), "parquet": (".parquet",)}  # what a folder in paths means
UNIT_BYTES = 64 * 1024 * 1024  # a text or JSON Lines file larger than this is read as several units
UNIT_ROWS = 100_000  # rows of a saved dataset per unit
PART_CHARS = 2 * SPLIT_KEY_CHARS  # a paragraph longer than this is streamed in parts (the first: its key)
_LINE_BYTES = 1 << 20  # how far past a cut point a blank line (or line end) is looked for at a time
_BLOCK_BYTES = 1 << 20  # text read and decoded at a time
_BATCH_BYTES = 16 << 20  # about how much text of a Parquet column is decoded at a time
_BATCH_ROWS = 1024  # the most rows of a Parquet column decoded at a time
_LEADING_BLANK_LINES = re.compile(r"\A(?:[^\S\n]*\n)+")
_LAST_BLANK_LINE = re.compile(r"[\s\S]*(\n[^\S\n]*\n)")  # greedy: the last blank line of a text
_BLANK_LINE = re.compile(r"\n\s*\n")
_FINGERPRINT_VERSION = 2


@dataclass(frozen=True)
class Unit:
    """One independently readable part of a corpus: ``[start, end)`` of ``path`` in bytes (text, jsonl), row
    groups (parquet) or rows (dataset); ``size`` is its share of the corpus in bytes, for sampling."""

    kind: str
    path: str
    start: int
    end: int
    size: int
    field: str = ""

    @property
    def whole_file(self) -> bool:
        return self.start == 0 and self.kind in ("text", "jsonl") and self.end == os.path.getsize(self.path)


class Part(NamedTuple):
    """A paragraph of a unit, or a part of a long one. ``document``: its document's number in the unit;
    ``key``: the text its split is chosen by (``SplitRule.split_of``): the paragraph itself (text, pydoc: the
    first part of a long one, at least ``SPLIT_KEY_CHARS`` long, is the key of every part), or its whole
    document (records, which go whole to one split); ``continued``: it goes on the previous part, with no
    blank line between them."""

    document: int
    text: str
    key: str
    continued: bool = False


@dataclass(frozen=True)
class Corpus:
    """The files of a corpus and how to read them: ``field`` is the JSON key, Parquet column or dataset column
    holding the text; ``paths`` are files, globs or folders (``datasets`` folders for ``dataset``)."""

    kind: str
    paths: tuple[str, ...] = ()
    field: str = "text"
    unit_bytes: int = UNIT_BYTES

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown corpus kind '{self.kind}'; valid kinds: {', '.join(KINDS)}")

    @property
    def by(self) -> str:
        """What goes whole to one split (``lightning_llm.data.corpus``): a record (jsonl, parquet and dataset
        rows are documents), or a paragraph (a text file or pydoc topic is often one long document)."""
        return "paragraph" if self.kind in ("text", "pydoc") else "document"

    def files(self) -> list[Path]:
        """The corpus's files in order (``datasets`` folders for ``dataset``), from names and metadata."""
        if self.kind == "pydoc":
            return []
        if self.kind == "dataset":  # a folder named twice (``ds``, ``ds/``, ``../x/ds``) is read once
            folders: dict[Path, Path] = {}
            for pattern in self.paths:
                folder = _dataset_folder(pattern)
                folders.setdefault(folder.resolve(), folder)
            return list(folders.values())
        return expand_paths(list(self.paths), suffixes=SUFFIXES[self.kind])

    def units(self) -> list[Unit]:
        """The units in corpus order, planned from metadata (plus a short scan at each cut of a large file,
        and a datasets folder's schema): done only when the corpus is prepared, never on a cache hit."""
        if self.kind == "pydoc":
            return [Unit("pydoc", "", 0, 1, sum(len(doc) for doc in pydoc_topics()))]
        files = self.files()
        if self.kind == "dataset":
            return [unit for folder in files for unit in _dataset_units(folder, self.field)]
        if self.kind == "parquet":
            return [unit for path in files for unit in _parquet_units(path, self.field)]
        return [unit for path in files for unit in _byte_units(path, self.kind, self.field, self.unit_bytes)]

    def fingerprint(self) -> str:
        """A hash of what identifies the corpus without reading or planning it: each file's resolved path,
        size and modification time (nanoseconds; every file of a ``datasets`` folder), the reader, its field
        and how units are cut. Editing a file changes it; a file rewritten with the same size and an old
        modification time would not (copying preserves both only when asked to, as ``cp -p`` does). The
        built-in corpus is hashed by its text, which is small."""
        if self.kind == "pydoc":
            files: list = [["pydoc", hashlib.sha256("\0".join(pydoc_topics()).encode()).hexdigest()]]
        else:
            files = [_file_identity(path) for path in self.files()]
        payload = {
            "version": _FINGERPRINT_VERSION,
            "kind": self.kind,
            "field": self.field,
            "unit_bytes": self.unit_bytes if self.kind in ("text", "jsonl") else None,
            "unit_rows": UNIT_ROWS if self.kind == "dataset" else None,
            "files": files,
        }
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def _file_identity(path: Path) -> list:
    """Resolved path, size and modification time; for a ``datasets`` folder, those of every file in it
    (a folder's own time changes only when entries come and go)."""
    where = Path(path).resolve()
    if where.is_dir():
        return [str(where), *(_file_identity(f) for f in sorted(where.iterdir()) if f.is_file())]
    stat = where.stat()
    return [str(where), stat.st_size, stat.st_mtime_ns]


# --------------------------------------------------------------------------- planning


def _byte_units(path: Path, kind: str, field: str, unit_bytes: int) -> list[Unit]:
    with _reading(path):
        size = path.stat().st_size
    if size == 0:
        raise SourceError(f"{path}: file is empty")
    if size > unit_bytes:  # the start is checked before a scan for cut points (a huge binary file has none)
        with _reading(path), open(path, "rb") as file:
            _check_binary(path, file.read(_BLOCK_BYTES), 0)
    cuts = [0]
    while size - cuts[-1] > unit_bytes:
        cut = _boundary_after(path, cuts[-1] + unit_bytes, blank_line=kind == "text")
        if cut >= size:
            break
        cuts.append(cut)
    cuts.append(size)
    return [Unit(kind, str(path), a, b, b - a, field) for a, b in zip(cuts, cuts[1:], strict=False)]


def _boundary_after(path: Path, offset: int, *, blank_line: bool) -> int:
    """The byte offset just after the first line end at or after ``offset`` (text: after the first blank
    line, so a paragraph is never cut), or the file size if there is none. A NUL byte on the way stops it:
    the file is binary."""
    with _reading(path), open(path, "rb") as file:
        file.seek(offset)
        _rest_of_line(path, file)
        while blank_line:
            line = _read_line(path, file)
            if not line:
                break
            if line.endswith(b"\n") and not line.strip():
                break
            if not line.endswith(b"\n"):
                _rest_of_line(path, file)
        return file.tell()


def _rest_of_line(path: Path, file) -> None:  # noqa: ANN001 - a binary file
    """Read past the end of the current line, a bounded block at a time."""
    while (block := _read_line(path, file)) and not block.endswith(b"\n"):
        pass


def _read_line(path: Path, file) -> bytes:  # noqa: ANN001 - a binary file
    """The rest of the line, at most ``_LINE_BYTES`` of it, refused if it holds a NUL byte."""
    at = file.tell()
    line = file.readline(_LINE_BYTES)
    _check_binary(path, line, at)
    return line


def _check_binary(path: Path | str, raw: bytes, offset: int) -> None:
    """Refuse ``raw``, read at byte ``offset``, if it holds a NUL byte (valid UTF-8 text never does; binary
    files almost always do)."""
    if (nul := raw.find(b"\0")) >= 0:
        raise SourceError(f"{path}: looks binary (NUL byte at offset {offset + nul}); expected UTF-8 text")


@contextmanager
def _reading(path: Path | str) -> Iterator[None]:
    """An OSError reading corpus file ``path`` (no permission, gone, a device that refuses reads) as a
    one-line ``SourceError`` naming the file: a ValueError, so never reported as the cache folder's."""
    try:
        yield
    except OSError as error:
        raise SourceError(
            f"{path}: cannot be read ({error.strerror or first_line(error)}); make it readable "
            "(e.g. chmod a+r) or leave it out of data.paths"
        ) from None


def _parquet_units(path: Path, column: str) -> list[Unit]:
    pq = _pyarrow_parquet()
    import pyarrow as pa

    try:
        metadata = pq.ParquetFile(path).metadata
        names = pq.read_schema(path).names
    except (pa.ArrowException, OSError) as err:
        raise SourceError(f"{path}: not a readable Parquet file ({first_line(err)})") from None
    if column not in names:
        raise SourceError(f"{path}: no column '{column}'; columns present: {', '.join(names)}")
    size = path.stat().st_size
    groups = max(metadata.num_row_groups, 1)
    return [
        Unit("parquet", str(path), group, group + 1, max(size // groups, 1), column)
        for group in range(metadata.num_row_groups)
    ]


def _dataset_folder(pattern: str) -> Path:
    """The folder ``pattern`` names, if it is one ``save_to_disk`` wrote (checked from its entries only)."""
    try:
        return _saved_folder(pattern, Path(pattern).expanduser())
    except RuntimeError:  # ~user of no user here, or ~ with neither HOME nor a passwd entry
        raise FileNotFoundError(f"'{pattern}': its ~ names no home folder on this machine") from None
    except OSError as error:  # a name too long, a folder on the way that cannot be entered
        if isinstance(error, FileNotFoundError) and not error.errno:  # one of ours, already worded
            raise
        raise FileNotFoundError(f"'{pattern}': cannot be read ({error.strerror or error})") from None


def _saved_folder(pattern: str, folder: Path) -> Path:
    if not folder.is_dir():
        what = "not a folder" if folder.exists() else "no such folder"
        raise FileNotFoundError(
            f"{what}: '{pattern}' (looked in {Path.cwd()}); data=dataset reads a folder written by "
            "datasets' save_to_disk"
        )
    if next(folder.iterdir(), None) is None:
        raise SourceError(f"{folder}: an empty folder; data=dataset reads a folder written by save_to_disk")
    if (folder / "state.json").is_file():
        _check_state(folder / "state.json")
        return folder
    if (folder / "dataset_dict.json").is_file():
        splits = sorted(p.name for p in folder.iterdir() if (p / "state.json").is_file())
        raise SourceError(f"{folder}: a DatasetDict; pass one split's folder: {', '.join(splits)}")
    for kind in ("parquet", "jsonl"):
        (suffix,) = SUFFIXES[kind]
        if next(folder.rglob(f"*{suffix}"), None) is not None:
            raise SourceError(
                f"{folder}: no state.json, so not a save_to_disk folder; it holds {suffix} files (a data "
                f"files folder, such as a Hub snapshot): read them with data={kind} 'data.paths=[{pattern}]'"
            )
    raise SourceError(
        f"{folder}: not a folder written by datasets' save_to_disk (no state.json); "
        "for a DatasetDict pass its split's folder, e.g. data.paths=[corpus/train]"
    )


def _check_state(path: Path) -> None:
    """Refuse a ``state.json`` that ``datasets`` would fail on obscurely or read outside its folder with: it
    must be an object whose ``_data_files`` lists the folder's own Arrow files by plain name (an absolute
    path or ``../x`` would be read from elsewhere, and the token cache's key, which hashes the folder's
    files, would miss its changes) and whose ``_format_type`` is null or a name."""
    try:
        state = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, RecursionError) as err:
        raise SourceError(f"{path}: not valid JSON ({first_line(err)}); re-save the dataset") from None
    if not isinstance(state, dict):
        raise SourceError(f"{path}: expected a JSON object, got {type(state).__name__}; re-save the dataset")
    files = state.get("_data_files")
    if not isinstance(files, list) or not files:
        raise SourceError(
            f"{path}: '_data_files' must list the folder's Arrow files ([{{\"filename\": "
            f'"data-00000-of-00001.arrow"}}, ...]), got {json.dumps(files)[:60]}; re-save the dataset'
        )
    for entry in files:
        name = entry.get("filename") if isinstance(entry, dict) else None
        if not isinstance(name, str) or name in ("", ".", "..") or "/" in name or "\\" in name:
            raise SourceError(
                f"{path}: '_data_files' entry {json.dumps(entry)[:200]} is not a plain file name inside the "
                "folder (a dataset folder reads only its own files); re-save the dataset"
            )
        if not (path.parent / name).is_file():
            raise SourceError(f"{path}: '_data_files' names '{name}', which is not a file in the folder")
    if not isinstance(state.get("_format_type"), str | None):
        raise SourceError(
            f"{path}: '_format_type' must be null or a format name, got {json.dumps(state['_format_type'])}"
        )


def _dataset_units(folder: Path, column: str) -> list[Unit]:
    dataset = _load_dataset(folder)
    if column not in dataset.column_names:
        raise SourceError(
            f"{folder}: no column '{column}'; columns present: {', '.join(dataset.column_names)}"
        )
    rows = dataset.num_rows
    size = sum(f.stat().st_size for f in folder.glob("*.arrow")) or rows
    return [
        Unit("dataset", str(folder), start, end, max(size * (end - start) // rows, 1), column)
        for start, end in ((start, min(start + UNIT_ROWS, rows)) for start in range(0, rows, UNIT_ROWS))
    ]


def _load_dataset(folder: Path):  # noqa: ANN202 - datasets.Dataset, an optional dependency
    try:
        import datasets
    except ImportError:
        raise ImportError("data=dataset reads a `datasets` folder: pip install datasets") from None
    _dataset_folder(str(folder))
    try:
        dataset = datasets.load_from_disk(str(folder))
    except Exception as err:  # noqa: BLE001 - any library error becomes one line naming the file
        raise _dataset_error(folder, err, "cannot be loaded") from None
    if isinstance(dataset, datasets.DatasetDict):
        raise SourceError(f"{folder}: a DatasetDict; pass one split's folder: {', '.join(dataset)}")
    return dataset


def _dataset_error(folder: Path, error: BaseException, doing: str) -> SourceError:
    """The one-line error for a datasets folder that fails to load or read: naming the damaged file where
    one can be found (a JSON file that does not parse, an Arrow file that does not read whole)."""
    for path in sorted(folder.glob("*.json")):
        try:
            json.loads(path.read_text())
        except (OSError, ValueError, RecursionError) as err:
            return SourceError(f"{path}: not valid JSON ({first_line(err)}); re-save the dataset")
    try:
        import pyarrow as pa

        for path in sorted(folder.glob("*.arrow")):
            try:
                with pa.memory_map(str(path)) as source:
                    pa.ipc.open_stream(source).read_all().validate(full=True)  # offsets, UTF-8 too
            except Exception as err:  # noqa: BLE001 - truncated or garbled: name it
                return SourceError(
                    f"{path}: not a readable Arrow file ({first_line(err)}); re-save the dataset"
                )
    except ImportError:
        pass
    return SourceError(f"{folder}: {doing} ({type(error).__name__}: {first_line(error)})")


def _pyarrow_parquet():  # noqa: ANN202 - the pyarrow.parquet module
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("reading .parquet files needs pyarrow: pip install pyarrow") from None
    return pq


# --------------------------------------------------------------------------- reading


def documents(unit: Unit) -> Iterator[str]:
    """The documents of ``unit`` in order. A text unit is one document, streamed by ``parts``."""
    if unit.kind == "pydoc":
        yield from pydoc_topics()
    elif unit.kind == "jsonl":
        found = False
        for where, line in _lines(unit):
            if line.strip():
                found = True
                yield jsonl_text(line, unit.field, where)
        if not found and unit.whole_file:  # a file of no bytes is refused when planned
            raise SourceError(f"{unit.path}: holds only whitespace")
    elif unit.kind == "parquet":
        yield from _parquet_documents(unit)
    elif unit.kind == "dataset":
        yield from _dataset_documents(unit)
    else:
        raise ValueError(f"documents() of a {unit.kind} unit: read it with parts()")


def _parquet_documents(unit: Unit) -> Iterator[str]:
    """A row group's strings, a batch at a time: batches of about ``_BATCH_BYTES`` by the row group's own
    size (``_batch_rows``), each turned into strings ``_BATCH_BYTES`` at a time; a cell over
    ``MAX_RECORD_BYTES`` is refused before it becomes a string, and a page that does not decode names the
    file and row group."""
    import pyarrow as pa

    try:
        file = _pyarrow_parquet().ParquetFile(unit.path)
        row = sum(file.metadata.row_group(group).num_rows for group in range(unit.start))
    except (pa.ArrowException, OSError) as err:
        raise SourceError(f"{unit.path}: not a readable Parquet file ({first_line(err)})") from None
    for group in range(unit.start, unit.end):
        where = f"{unit.path} row group {group}"
        try:
            batch_rows = _batch_rows(file.metadata.row_group(group), unit.field)
            batches = file.iter_batches(batch_size=batch_rows, row_groups=[group], columns=[unit.field])
        except (pa.ArrowException, OSError) as err:
            raise SourceError(f"{where}: cannot be read ({first_line(err)})") from None
        while True:
            try:
                batch = next(batches, None)
                pieces = None if batch is None else _slices(batch.column(0))
            except (pa.ArrowException, OSError) as err:
                raise SourceError(f"{where}: cannot be read ({first_line(err)})") from None
            if pieces is None:
                break
            for first, length, size in pieces:
                if size is not None:
                    raise SourceError(
                        record_too_large(
                            f"{unit.path} row {row}",
                            MAX_RECORD_BYTES,
                            f"this one holds {size_words(size)}; split it into smaller rows",
                        )
                    )
                try:
                    values = batch.column(0).slice(first, length).to_pylist()
                except (pa.ArrowException, OSError) as err:
                    raise SourceError(f"{where}: cannot be read ({first_line(err)})") from None
                for value in values:
                    yield _string(value, lambda row=row: f"{unit.path} row {row}")
                    row += 1


def _batch_rows(group, column: str) -> int:  # noqa: ANN001 - pyarrow's RowGroupMetaData
    """Rows per batch so that a decoded batch holds about ``_BATCH_BYTES`` of the column, by the row group's
    uncompressed size. A dictionary-encoded column's size understates its rows (a value may repeat in every
    row): any row may then be as large as the whole column chunk, so it is assumed to be."""
    chunks = [
        group.column(index)
        for index in range(group.num_columns)
        if group.column(index).path_in_schema.split(".")[0] == column
    ]
    size = sum(chunk.total_uncompressed_size for chunk in chunks)
    if group.num_rows <= 0 or size <= 0:
        return _BATCH_ROWS
    rows = group.num_rows * _BATCH_BYTES // size
    if any(chunk.has_dictionary_page for chunk in chunks):
        rows = min(rows, _BATCH_BYTES // size)
    return max(1, min(_BATCH_ROWS, rows))


def _slices(column) -> list[tuple[int, int, int | None]]:  # noqa: ANN001 - a pyarrow Array
    """``(first row, rows, None)`` for consecutive slices of ``column`` holding about ``_BATCH_BYTES`` of text
    each, taken from its string lengths without making any string; ``(row, 1, bytes)`` for a cell over
    ``MAX_RECORD_BYTES``, where it is. A column that is not of strings is one slice (its first value is then
    refused as not a string)."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    values = column.dictionary if isinstance(column, pa.DictionaryArray) else column
    kind = values.type
    if not (pa.types.is_string(kind) or pa.types.is_large_string(kind) or pa.types.is_binary(kind)):
        return [(0, len(column), None)]
    lengths = pc.binary_length(values)
    if isinstance(column, pa.DictionaryArray):
        lengths = pc.take(lengths, column.indices)
    sizes = lengths.fill_null(0).to_numpy(zero_copy_only=False).astype(np.int64)
    if sizes.size and int(sizes.max()) > MAX_RECORD_BYTES:
        at = int(np.argmax(sizes > MAX_RECORD_BYTES))
        return [*_slices(column.slice(0, at)), (at, 1, int(sizes[at]))]
    ends = np.cumsum(sizes)
    pieces, first = [], 0
    while first < len(sizes):
        before = int(ends[first - 1]) if first else 0
        last = int(np.searchsorted(ends, before + _BATCH_BYTES, side="right"))
        last = max(last, first + 1)
        pieces.append((first, last - first, None))
        first = last
    return pieces


def _dataset_documents(unit: Unit) -> Iterator[str]:
    folder = Path(unit.path)
    try:
        dataset = _load_dataset(folder).select_columns([unit.field]).with_format(None)  # python values
    except SourceError:
        raise
    except Exception as err:  # noqa: BLE001 - any library error becomes one line naming the file
        raise _dataset_error(folder, err, "cannot be loaded") from None
    for begin in range(unit.start, unit.end, 1000):
        try:
            values = dataset[begin : min(begin + 1000, unit.end)][unit.field]
        except Exception as err:  # noqa: BLE001 - any library error becomes one line naming the file
            raise _dataset_error(folder, err, f"rows {begin}.. cannot be read") from None
        for offset, value in enumerate(values):
            yield _string(value, lambda row=begin + offset: f"{unit.path} row {row}")


def parts(unit: Unit) -> Iterator[Part]:
    """Every non-blank paragraph of ``unit`` in order (see ``lightning_llm.data.corpus.split_paragraphs``),
    a long one in parts (``Part``): a text file is read a block at a time, so memory holds a block and at
    most ``PART_CHARS`` of a paragraph however large the file or its lines."""
    if unit.kind == "text":
        yield from _text_parts(unit)
        return
    for number, document in enumerate(documents(unit)):
        for paragraph in split_paragraphs(document):
            yield Part(number, paragraph, document if unit.kind != "pydoc" else paragraph)


def _text_parts(unit: Unit) -> Iterator[Part]:
    found = False
    rest = ""  # what follows the last blank line read: the current paragraph, or what is left of it
    key: str | None = None  # the current paragraph's key, once a first part of it has been yielded
    after_blank_line = unit.start > 0  # a later unit of a file starts just after a blank line
    # Whitespace-only blocks read after rest, not held: [byte offset of the first, characters, line ends]. No
    # blank line is in them (with rest's trailing whitespace); what follows decides whether they end the
    # paragraph (a blank line or the end: dropped) or go on it (text: read again and yielded), so a run of
    # whitespace costs bounded memory and work per block however long it is.
    held: list[int] | None = None
    for offset, block in _blocks(unit):
        lead = len(block) - len(block.lstrip())
        newlines = block.count("\n", 0, lead)
        blank = lead == len(block)  # whitespace only
        if after_blank_line:  # rest and held: whitespace with no line end, after a blank line
            if blank and not newlines:
                held = _hold(held, offset, block, newlines)
                continue
            if newlines:
                held = None  # on whitespace-only lines, which the blank line takes (below)
        elif held is not None or blank:
            trailing = rest[len(rest.rstrip()) :]
            if trailing.count("\n") + (held[2] if held else 0) + newlines >= 2:  # a blank line
                if held is not None:  # it ends the paragraph as a blank line there would
                    held, rest = None, rest + "\n\n"
            elif blank:
                held = _hold(held, offset, block, newlines)
                continue
        if held is not None:  # text follows the held whitespace on its paragraph: the whitespace is text
            after_blank_line = False
            for chunk in _reread(unit, held[0], held[1]):
                rest += chunk
                if len(rest) > PART_CHARS:
                    part, rest, key = _long_part(rest, key, keep_back=False)
                    if part is not None:
                        found = True
                        yield part
            held = None
        # A blank line not yet seen ends in the block: it starts in rest's trailing whitespace, or later.
        search_from = 0 if after_blank_line else len(rest.rstrip())
        text = rest + block
        if after_blank_line:  # whitespace-only lines next to a blank line belong to that separator
            text = _LEADING_BLANK_LINES.sub("", text, count=1)
            after_blank_line = not text.strip()  # whitespace so far: it may still end in a newline
            if after_blank_line:
                rest = text
                continue
        cut = _last_blank_line(text, search_from)
        if cut:
            for part in _finished(text[:cut], key):
                found = True
                yield part
            key = None
            rest = _LEADING_BLANK_LINES.sub("", text[cut:], count=1)
            after_blank_line = not rest.strip()
        else:
            rest = text
        if len(rest) > PART_CHARS:  # a paragraph too long to hold: yield what it holds so far
            part, rest, key = _long_part(rest, key)
            if part is not None:
                found = True
                yield part
    if key is not None:
        if tail := rest.rstrip():
            yield Part(0, tail, key, True)
    else:
        for paragraph in split_paragraphs(rest):
            found = True
            yield Part(0, paragraph, paragraph)
    if not found and unit.whole_file:  # a file of no bytes is refused when planned
        raise SourceError(f"{unit.path}: holds only whitespace")


def _hold(held: list[int] | None, offset: int, block: str, newlines: int) -> list[int]:
    if held is None:
        return [offset, len(block), newlines]
    return [held[0], held[1] + len(block), held[2] + newlines]


def _reread(unit: Unit, offset: int, chars: int) -> Iterator[str]:
    """The first ``chars`` characters of ``unit``'s text from the block at byte ``offset`` on, a block at a
    time (blocks read from a block's start are those read before)."""
    blocks = _blocks(dataclasses.replace(unit, start=offset))
    try:
        for _, text in blocks:
            if chars <= 0:
                break
            yield text[:chars]
            chars -= len(text)
    finally:
        blocks.close()


def _long_part(rest: str, key: str | None, *, keep_back: bool = True) -> tuple[Part | None, str, str | None]:
    """The part to yield of a paragraph's ``rest`` too long to hold, what is left, and the paragraph's key
    (its first part, at least ``SPLIT_KEY_CHARS`` long). ``keep_back``: trailing whitespace stays in rest,
    since it may end the paragraph."""
    end = len(rest.rstrip()) if keep_back else len(rest)
    start = 1 if key is None and rest.startswith("\n") else 0  # as split_paragraphs strips it
    if key is None and end - start >= SPLIT_KEY_CHARS:
        key = rest[start:end]
        return Part(0, key, key), rest[end:], key
    if key is not None and end:
        return Part(0, rest[:end], key, True), rest[end:], key
    return None, rest, key


def _finished(text: str, key: str | None) -> Iterator[Part]:
    """The paragraphs of ``text``, which ends with a blank line; with ``key``, its start (up to its first
    blank line) ends a paragraph whose first parts were yielded already."""
    if key is not None:
        match = _BLANK_LINE.search(text)
        assert match is not None  # text ends with a blank line
        if tail := text[: match.start()].rstrip():
            yield Part(0, tail, key, True)
        text = text[match.start() :]
    for paragraph in split_paragraphs(text):
        yield Part(0, paragraph, paragraph)


def _last_blank_line(text: str, start: int) -> int:
    """Where the text after the last blank line (found from ``start`` on) starts, else 0: a paragraph
    boundary. Searching only the new text keeps a long paragraph with no blank line linear."""
    match = _LAST_BLANK_LINE.match(text, start)
    return match.end(1) if match else 0


def _lines(unit: Unit) -> Iterator[tuple[Callable[[], str], str]]:
    """``(where, line)`` for each line of the byte range; ``where()`` gives ``path:line`` for a message
    (counting the lines before it only then)."""
    for start, block in _blocks(unit):
        lines = block.split("\n")  # "\n" only: str.splitlines would also break inside JSON strings
        if lines[-1] == "":
            lines.pop()
        for index, line in enumerate(lines):
            yield (
                (lambda start=start, index=index: f"{unit.path}:{_line_number(unit.path, start) + index}"),
                line,
            )


def _blocks(unit: Unit) -> Iterator[tuple[int, str]]:
    """``(byte offset, text)`` of the unit in blocks of about ``_BLOCK_BYTES``, decoded and checked, newlines
    normalised (``\r\n`` and a lone ``\r`` too). A JSON Lines block ends at a line end (a record is read
    whole, up to ``MAX_RECORD_BYTES``); a text block anywhere but inside a character or a ``\r\n``, so a
    line with no end is read a bounded block at a time."""
    path = unit.path
    with _reading(path), open(path, "rb") as file:
        file.seek(unit.start)
        offset = unit.start
        while offset < unit.end:
            raw = file.read(min(_BLOCK_BYTES, unit.end - offset))
            if not raw:
                break
            if offset + len(raw) < unit.end:
                if unit.kind == "jsonl":
                    raw = _whole_lines(path, file, raw, offset, unit.end)
                elif unit.kind == "text":
                    raw = _whole_characters(file, raw, unit.end - offset)
            _check_binary(path, raw, offset)
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                at = offset + err.start
                raise SourceError(
                    f"{path}:{_line_number(path, at)}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset "
                    f"{at}); convert it, e.g. with iconv -t UTF-8"
                ) from None
            if offset == 0:
                text = text.removeprefix("\ufeff")  # a byte-order mark is not text (read_text_file)
            yield offset, _normalise(text)
            offset += len(raw)


def _whole_lines(path: str, file, raw: bytes, offset: int, end: int) -> bytes:  # noqa: ANN001 - a binary file
    """``raw`` (read at byte ``offset``, a line's start) up to its last line end (``\n``, ``\r\n`` or a lone
    ``\r``), the file put back to just after it; if it holds none, the line read on to its end, refused once
    it is over ``MAX_RECORD_BYTES`` (or holds a NUL byte, which the caller refuses), a bounded read at a
    time."""
    last = max(raw.rfind(b"\n"), raw.rfind(b"\r"))
    if last >= 0:
        if last == len(raw) - 1:
            return raw + _lf_after_cr(file, raw)
        file.seek(last + 1 - len(raw), os.SEEK_CUR)
        return raw[: last + 1]
    pieces, size = [raw], len(raw)
    while offset + size < end and b"\0" not in pieces[-1]:
        chunk = file.read(min(_BLOCK_BYTES, end - offset - size))
        if not chunk:
            break
        stops = [at for at in (chunk.find(b"\n"), chunk.find(b"\r")) if at >= 0]
        if stops:
            stop = min(stops)
            file.seek(stop + 1 - len(chunk), os.SEEK_CUR)
            chunk = chunk[: stop + 1]
            chunk += _lf_after_cr(file, chunk)
        if size + len(chunk.rstrip(b"\r\n")) > MAX_RECORD_BYTES:
            where = f"{path}:{_line_number(path, offset)}"
            remedy = "split it into smaller records (or read plain text with data=text)"
            raise SourceError(record_too_large(where, MAX_RECORD_BYTES, remedy))
        pieces.append(chunk)
        size += len(chunk)
        if stops:
            break
    return b"".join(pieces)


def _lf_after_cr(file, raw: bytes) -> bytes:  # noqa: ANN001 - a binary file
    """The ``\n`` of a ``\r\n`` that ``raw`` ends halfway through, read from the file; else nothing."""
    if not raw.endswith(b"\r"):
        return b""
    after = file.read(1)
    if after == b"\n":
        return after
    if after:
        file.seek(-1, os.SEEK_CUR)
    return b""


def _whole_characters(file, raw: bytes, left: int) -> bytes:  # noqa: ANN001 - a binary file
    """``raw`` up to its last whole UTF-8 character, short of a final ``\r`` (its ``\n`` may follow); the
    file is put back to just after it. A block too short to hold one is read on a byte at a time."""
    while (end := _decodable(raw)) == 0 and len(raw) < left:
        raw += file.read(1)
    if 0 < end < len(raw):
        file.seek(end - len(raw), os.SEEK_CUR)
        raw = raw[:end]
    return raw


def _decodable(raw: bytes) -> int:
    """The length of ``raw`` without a trailing partial UTF-8 sequence or ``\r``."""
    end = len(raw)
    lead = end
    while lead > 0 and end - lead < 3 and raw[lead - 1] & 0xC0 == 0x80:  # continuation bytes
        lead -= 1
    if lead > 0:
        byte = raw[lead - 1]
        need = 2 if byte >> 5 == 0b110 else 3 if byte >> 4 == 0b1110 else 4 if byte >> 3 == 0b11110 else 1
        if end - (lead - 1) < need:
            end = lead - 1
    return end - 1 if end and raw[end - 1] == 0x0D else end


def _normalise(line: str) -> str:
    return line.replace("\r\n", "\n").replace("\r", "\n") if "\r" in line else line


def _line_number(path: str, offset: int) -> int:
    """The 1-based number of the line starting at byte ``offset`` (``\n``, ``\r\n`` and a lone ``\r`` end a
    line, as read): counted only for an error message."""
    count, previous = 1, b""
    with _reading(path), open(path, "rb") as file:
        while offset > 0:
            block = file.read(min(offset, _LINE_BYTES))
            if not block:
                break
            count += block.count(b"\n") + block.count(b"\r") - block.count(b"\r\n")
            count -= previous == b"\r" and block.startswith(b"\n")  # a \r\n across two reads
            previous = block[-1:]
            offset -= len(block)
    return count


def _string(value: object, where: Callable[[], str]) -> str:
    if not isinstance(value, str):
        raise SourceError(f"{where()}: expected a string, got {type(value).__name__}")
    return value
