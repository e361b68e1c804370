"""A corpus as a list of units read as streams: what lets a corpus larger than memory be prepared in parallel.

A ``Corpus`` names its files (``kind``: text, jsonl, parquet, a ``datasets`` folder, or the built-in pydoc
text) and cuts them into ``Unit``s: a whole file, a byte range of a large text or JSON Lines file (cut at a
blank line or a line end, so no paragraph or record is split), a range of a Parquet file's row groups, or a
range of a saved dataset's rows. Planning the units reads only file sizes and metadata, and
``Corpus.fingerprint`` hashes what planning saw (paths, sizes, modification times, the reader's settings):
so a run whose tokens are cached never reads the corpus text. ``documents(unit)`` streams a unit's documents
(a text file is one document, a record or a row is one), and ``paragraphs(unit)`` their blank-line-separated
paragraphs, holding one paragraph (or one record) in memory at a time.

Errors name the file and the spot (line, byte offset, row), as ``lightning_llm.data.sources`` does.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from lightning_llm.data.corpus import split_paragraphs
from lightning_llm.data.sources import SourceError, expand_paths, jsonl_text, pydoc_topics

__all__ = ["KINDS", "UNIT_BYTES", "Corpus", "Unit", "documents", "paragraphs"]

KINDS = ("text", "jsonl", "parquet", "dataset", "pydoc")
UNIT_BYTES = 64 * 1024 * 1024  # a text or JSON Lines file larger than this is read as several units
UNIT_ROWS = 100_000  # rows of a saved dataset per unit
_LINE_BYTES = 1 << 20  # how far past a cut point a blank line (or line end) is looked for at a time
_BLOCK_BYTES = 1 << 20  # text read and decoded at a time
_LEADING_BLANK_LINES = re.compile(r"\A(?:[^\S\n]*\n)+")
_LAST_BLANK_LINE = re.compile(r"[\s\S]*(\n[^\S\n]*\n)")  # greedy: the last blank line of a text
_FINGERPRINT_VERSION = 1


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


@dataclass(frozen=True)
class Corpus:
    """The files of a corpus and how to read them: ``field`` is the JSON key, Parquet column or dataset column
    holding the text; ``paths`` are files or globs (a ``datasets`` folder for ``dataset``)."""

    kind: str
    paths: tuple[str, ...] = ()
    field: str = "text"
    unit_bytes: int = UNIT_BYTES

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"unknown corpus kind '{self.kind}'; valid kinds: {', '.join(KINDS)}")

    def units(self) -> list[Unit]:
        """The units in corpus order, planned from metadata only (plus a short scan at each cut of a file)."""
        if self.kind == "pydoc":
            return [Unit("pydoc", "", 0, 1, sum(len(doc) for doc in pydoc_topics()))]
        if self.kind == "dataset":
            return _dataset_units(self.paths, self.field)
        files = expand_paths(list(self.paths))
        if self.kind == "parquet":
            return [unit for path in files for unit in _parquet_units(path, self.field)]
        return [unit for path in files for unit in _byte_units(path, self.kind, self.field, self.unit_bytes)]

    def fingerprint(self, units: list[Unit] | None = None) -> str:
        """A hash of what identifies the corpus without reading it: each file's resolved path, size and
        modification time (nanoseconds; every file of a ``datasets`` folder), the units (``units``, when
        already planned), the reader and its field. Editing a file changes it; a file rewritten with the same
        size and an old modification time would not (copying preserves both only when asked to, as
        ``cp -p`` does). The built-in corpus is hashed by its text, which is small."""
        described = []
        for unit in self.units() if units is None else units:
            if unit.kind == "pydoc":
                text = "\0".join(pydoc_topics()).encode()
                described.append(["pydoc", hashlib.sha256(text).hexdigest()])
                continue
            described.append([*_file_identity(unit.path), unit.start, unit.end])
        payload = {
            "version": _FINGERPRINT_VERSION,
            "kind": self.kind,
            "field": self.field,
            "units": described,
        }
        return hashlib.sha256(json.dumps(payload).encode()).hexdigest()


def _file_identity(path: str) -> list:
    """Resolved path, size and modification time; for a ``datasets`` folder, those of every file in it
    (a folder's own time changes only when entries come and go)."""
    where = Path(path).resolve()
    if where.is_dir():
        return [str(where), *(_file_identity(str(f)) for f in sorted(where.iterdir()) if f.is_file())]
    stat = where.stat()
    return [str(where), stat.st_size, stat.st_mtime_ns]


# --------------------------------------------------------------------------- planning


def _byte_units(path: Path, kind: str, field: str, unit_bytes: int) -> list[Unit]:
    size = path.stat().st_size
    if size == 0:
        raise SourceError(f"{path}: file is empty")
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
    line, so a paragraph is never cut), or the file size if there is none."""
    with open(path, "rb") as file:
        file.seek(offset)
        _rest_of_line(file)
        while blank_line:
            line = file.readline(_LINE_BYTES)
            if not line:
                break
            if line.endswith(b"\n") and not line.strip():
                break
            if not line.endswith(b"\n"):
                _rest_of_line(file)
        return file.tell()


def _rest_of_line(file) -> None:  # noqa: ANN001 - a binary file
    """Read past the end of the current line, a bounded block at a time."""
    while (block := file.readline(_LINE_BYTES)) and not block.endswith(b"\n"):
        pass


def _parquet_units(path: Path, column: str) -> list[Unit]:
    pq = _pyarrow_parquet()
    import pyarrow as pa

    try:
        metadata = pq.ParquetFile(path).metadata
        names = pq.read_schema(path).names
    except pa.ArrowException as err:
        raise SourceError(f"{path}: not a readable Parquet file ({err})") from None
    if column not in names:
        raise SourceError(f"{path}: no column '{column}'; columns present: {', '.join(names)}")
    size = path.stat().st_size
    groups = max(metadata.num_row_groups, 1)
    return [
        Unit("parquet", str(path), group, group + 1, max(size // groups, 1), column)
        for group in range(metadata.num_row_groups)
    ]


def _dataset_units(paths: tuple[str, ...], column: str) -> list[Unit]:
    units = []
    for pattern in paths:
        folder = Path(pattern).expanduser()
        dataset = _load_dataset(folder)
        if column not in dataset.column_names:
            raise SourceError(
                f"{folder}: no column '{column}'; columns present: {', '.join(dataset.column_names)}"
            )
        rows = dataset.num_rows
        size = sum(f.stat().st_size for f in folder.glob("*.arrow")) or rows
        for start in range(0, rows, UNIT_ROWS):
            end = min(start + UNIT_ROWS, rows)
            units.append(
                Unit("dataset", str(folder), start, end, max(size * (end - start) // rows, 1), column)
            )
    return units


def _load_dataset(folder: Path):  # noqa: ANN202 - datasets.Dataset, an optional dependency
    try:
        import datasets
    except ImportError:
        raise ImportError("data=dataset reads a `datasets` folder: pip install datasets") from None
    if not (folder / "dataset_info.json").is_file() and not (folder / "state.json").is_file():
        raise FileNotFoundError(
            f"{folder}: not a folder written by datasets' save_to_disk (no state.json); "
            "for a DatasetDict pass its split's folder, e.g. data.paths=[corpus/train]"
        )
    dataset = datasets.load_from_disk(str(folder))
    if isinstance(dataset, datasets.DatasetDict):
        raise SourceError(f"{folder}: a DatasetDict; pass one split's folder: {', '.join(dataset)}")
    return dataset


def _pyarrow_parquet():  # noqa: ANN202 - the pyarrow.parquet module
    try:
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("reading .parquet files needs pyarrow: pip install pyarrow") from None
    return pq


# --------------------------------------------------------------------------- reading


def documents(unit: Unit) -> Iterator[str]:
    """The documents of ``unit`` in order. A text unit is one document, streamed by ``paragraphs``."""
    if unit.kind == "pydoc":
        yield from pydoc_topics()
    elif unit.kind == "jsonl":
        found = False
        for where, line in _lines(unit):
            if line.strip():
                found = True
                yield jsonl_text(line, unit.field, where)
        if not found and unit.whole_file:
            raise SourceError(f"{unit.path}: file is empty")
    elif unit.kind == "parquet":
        file = _pyarrow_parquet().ParquetFile(unit.path)
        row = sum(file.metadata.row_group(group).num_rows for group in range(unit.start))
        for batch in file.iter_batches(
            batch_size=1024, row_groups=range(unit.start, unit.end), columns=[unit.field]
        ):
            for value in batch.column(0).to_pylist():
                yield _string(value, lambda row=row: f"{unit.path} row {row}")
                row += 1
    elif unit.kind == "dataset":
        dataset = _load_dataset(Path(unit.path)).select_columns([unit.field])
        for begin in range(unit.start, unit.end, 1000):
            values = dataset[begin : min(begin + 1000, unit.end)][unit.field]
            for offset, value in enumerate(values):
                yield _string(value, lambda row=begin + offset: f"{unit.path} row {row}")
    else:
        raise ValueError(f"documents() of a {unit.kind} unit: read it with paragraphs()")


def paragraphs(unit: Unit) -> Iterator[tuple[int, str]]:
    """``(document number, paragraph)`` for every non-blank paragraph of ``unit``, in order (see
    ``lightning_llm.data.corpus.split_paragraphs``): a text file's are read a block at a time, cut after
    its last blank line, so memory holds a block and one paragraph however large the file."""
    if unit.kind != "text":
        for number, document in enumerate(documents(unit)):
            for paragraph in split_paragraphs(document):
                yield number, paragraph
        return
    found = False
    rest = ""
    after_blank_line = unit.start > 0  # a later unit of a file starts just after a blank line
    for _, block in _blocks(unit):
        if after_blank_line:  # whitespace-only lines next to a blank line belong to that separator
            block = _LEADING_BLANK_LINES.sub("", block, count=1)
            after_blank_line = not block
        text = rest + block
        cut = _last_blank_line(text, max(0, len(rest) - 1))  # a blank line may start at rest's last "\n"
        for paragraph in split_paragraphs(text[:cut]):
            found = True
            yield 0, paragraph
        if cut:
            rest = _LEADING_BLANK_LINES.sub("", text[cut:], count=1)
            after_blank_line = not rest
        else:
            rest = text
    for paragraph in split_paragraphs(rest):
        found = True
        yield 0, paragraph
    if not found and unit.whole_file:
        raise SourceError(f"{unit.path}: file is empty")


def _last_blank_line(text: str, start: int) -> int:
    """Where the text after the last blank line (found from ``start`` on) starts, else 0: a paragraph
    boundary. Searching only the new text keeps a huge paragraph with no blank line linear."""
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
    """``(byte offset, text)`` of the unit in blocks of whole lines (about ``_BLOCK_BYTES``), decoded and
    checked, newlines normalised (``\r\n`` and a lone ``\r`` too)."""
    path = unit.path
    with open(path, "rb") as file:
        file.seek(unit.start)
        offset = unit.start
        while offset < unit.end:
            raw = file.read(min(_BLOCK_BYTES, unit.end - offset))
            if not raw:
                break
            if not raw.endswith(b"\n") and offset + len(raw) < unit.end:
                raw += file.readline()  # whole lines: a block never splits a character or a CRLF
            if (
                nul := raw.find(b"\0")
            ) >= 0:  # valid UTF-8 never holds NUL bytes; binary files almost always do
                raise SourceError(
                    f"{path}: looks binary (NUL byte at offset {offset + nul}); expected UTF-8 text"
                )
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as err:
                raise SourceError(
                    f"{path}: not UTF-8 text (byte 0x{raw[err.start]:02x} at offset {offset + err.start}); "
                    "convert it, e.g. with iconv -t UTF-8"
                ) from None
            yield offset, _normalise(text)
            offset += len(raw)


def _normalise(line: str) -> str:
    return line.replace("\r\n", "\n").replace("\r", "\n") if "\r" in line else line


def _line_number(path: str, offset: int) -> int:
    """The 1-based number of the line starting at byte ``offset``: counted only for an error message."""
    count = 1
    with open(path, "rb") as file:
        while offset > 0:
            block = file.read(min(offset, _LINE_BYTES))
            count += block.count(b"\n")
            offset -= len(block)
    return count


def _string(value: object, where: Callable[[], str]) -> str:
    if not isinstance(value, str):
        raise SourceError(f"{where()}: expected a string, got {type(value).__name__}")
    return value
