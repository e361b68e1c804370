"""Where text comes from: each reader returns a list of documents (one string per file, record or topic).

Readers validate as they go, so a bad input fails at once with the file (and line or byte offset) to fix,
instead of surfacing later as an odd tokenizer or training error. Paths may be globs, may start with ``~``
and are relative to the current directory.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from lightning_llm.errors import first_line

__all__ = [
    "MAX_RECORD_BYTES",
    "SourceError",
    "as_paths",
    "check_split_files",
    "expand_paths",
    "jsonl_text",
    "not_a_file",
    "number_too_long",
    "pydoc_topics",
    "read_jsonl_files",
    "read_parquet_files",
    "read_text_file",
    "read_text_files",
    "delimited_rows",
    "record_too_large",
    "size_words",
]

_GLOB_CHARS = frozenset("*?[")
# The most one JSON Lines record (a line) or one Parquet cell may hold: a larger one is refused, naming it,
# before it is parsed or tokenized (a record is parsed, and its text tokenized, whole).
MAX_RECORD_BYTES = 64 << 20


class SourceError(ValueError):
    """An input file that exists but cannot be used as text; the message names the file and the spot."""


def delimited_rows(path: Path, text: str) -> tuple[list[str], Iterator[tuple[str, dict]]]:
    """The header of a ``.csv`` or ``.tsv`` file's ``text`` and its rows as ``(where, row)``, ``where``
    being ``path:line`` (``path:first-last`` for a quoted value spanning lines). TSV follows the IANA rule
    (no quoting: quotes in a text are text). CSV is read strictly: a quote opened and not closed, which a
    lenient reader lets swallow the rows up to the next quote (or the end) into one text, is an error naming
    the lines. A field may be a whole document, up to ``MAX_RECORD_BYTES`` (csv stops at 128 KiB).

    A header naming a column twice (which would silently give the last copy's values) and a row with more
    cells than the header (an unquoted delimiter inside a text, which would cut it short) are errors; empty
    cells past the header's columns (a spreadsheet's trailing commas) are dropped. A short row's missing
    cells are None."""
    tsv = path.suffix.lower() == ".tsv"
    options = {"delimiter": "\t", "quoting": csv.QUOTE_NONE} if tsv else {"delimiter": ","}
    csv.field_size_limit(max(csv.field_size_limit(), MAX_RECORD_BYTES))
    reader = csv.DictReader(io.StringIO(text, newline=""), strict=True, **options)
    try:
        header = list(reader.fieldnames or [])
    except csv.Error as err:
        raise _not_delimited(f"{path}:1", tsv, err) from None
    named = [name for name in header if name.strip()]
    if twice := sorted({name for name in named if named.count(name) > 1}):
        raise SourceError(
            f"{path}:1: the header names the column{'s' * (len(twice) > 1)} {', '.join(map(repr, twice))} "
            "more than once, so which values are meant is unclear; rename the copies"
        )
    return header, _delimited_rows(path, reader, tsv, len(header))


def _delimited_rows(
    path: Path, reader: csv.DictReader, tsv: bool, columns: int
) -> Iterator[tuple[str, dict]]:
    start = reader.line_num + 1
    try:
        for row in reader:  # DictReader skips blank lines; line_num is the line the row ends on
            first = min(start, reader.line_num)
            where = f"{path}:{first}" + (f"-{reader.line_num}" if first < reader.line_num else "")
            extra = row.pop(None, None)  # DictReader files the cells beyond the header's under None
            if extra and any(cell.strip() for cell in extra):
                raise SourceError(
                    f"{where}: more fields than the {columns} columns of the header; a text holding the "
                    + ("delimiter must be quoted" if not tsv else "tab must be removed (TSV has no quoting)")
                )
            yield where, row
            start = reader.line_num + 1
    except csv.Error as err:
        end = reader.reader.line_num  # the line the reader stopped on
        raise _not_delimited(f"{path}:{start}" + (f"-{end}" if start < end else ""), tsv, err) from None


def _not_delimited(where: str, tsv: bool, err: csv.Error) -> SourceError:
    return SourceError(
        f"{where}: not valid {'TSV' if tsv else 'CSV'} ({first_line(err)}): a quote opened and not closed? "
        'A quote inside a quoted text is written twice ("")'
    )


def pydoc_topics() -> list[str]:
    """The built-in corpus: the ~465k characters of English help text that every Python install carries.

    One document per topic, in sorted topic order so the corpus is identical on every machine.
    """
    from pydoc_data.topics import topics

    return [topics[name] for name in sorted(topics)]


def as_paths(key: str, paths: list[str] | str) -> list[str]:
    """``paths`` as a plain list (Hydra passes a ListConfig; a lone string is one path)."""
    paths = [paths] if isinstance(paths, str) else list(paths)
    if not paths:
        raise ValueError(f"data.{key} must name at least one file or glob, e.g. data.{key}=[train.jsonl]")
    return paths


def check_split_files(paths: list[str] | None, held_out: dict[str, list[str] | None]) -> None:
    """Refuse a file that ``paths`` (the train files) and a key of ``held_out`` (``val_paths``,
    ``test_paths``: their patterns, or None) both name, compared by resolved path, so a glob, a symlink or
    another spelling of it counts: its examples would be trained on and then scored, measuring memory. One
    file for val and test is allowed (a dev set used for both leaks nothing into training)."""
    held_out = {key: patterns for key, patterns in held_out.items() if patterns}
    if not paths or not held_out:
        return
    train = {path.resolve() for path in expand_paths(as_paths("paths", paths))}
    for key, patterns in held_out.items():
        for path in expand_paths(as_paths(key, patterns)):
            if (real := path.resolve()) in train:
                name = path if path.absolute() == real else f"{path} (the file {real})"
                raise SourceError(
                    f"{name}: named by both data.paths and data.{key}; a training file cannot be "
                    f"held out for evaluation"
                )


def expand_paths(patterns: list[str], suffixes: tuple[str, ...] = ()) -> list[Path]:
    """The files named by ``patterns`` (paths or globs), in the given order, each glob's matches sorted. With
    ``suffixes`` (a reader's formats, e.g. ``(".parquet",)``), a folder means every file with one of them
    under it, at any depth (a Hub snapshot keeps its files under ``data/``), skipping hidden files and folders
    (names starting with a dot: ``.git``, ``.venv``, ``.ipynb_checkpoints``) and not entering symlinked
    folders, as a ``**`` glob does; without, a folder is refused."""
    if not patterns:
        raise FileNotFoundError("no input paths given; pass at least one file or glob")
    files: dict[Path, Path] = {}  # real path -> the path as named: a file named twice is read once
    for pattern in patterns:
        for path in _expand_one(pattern, suffixes):
            files.setdefault(path.resolve(), path)
    return list(files.values())


def _expand_one(pattern: str, suffixes: tuple[str, ...]) -> list[Path]:
    if not str(pattern).strip():  # Path('') is the current folder: an unset shell variable would read it all
        raise FileNotFoundError(f"an empty path in the data paths ({pattern!r}); name a file, folder or glob")
    try:
        expanded = str(Path(pattern).expanduser())
    except RuntimeError:  # ~user of no user here, or ~ with neither HOME nor a passwd entry
        raise FileNotFoundError(f"'{pattern}': its ~ names no home folder on this machine") from None
    try:
        if _GLOB_CHARS.isdisjoint(expanded):
            return _one_path(Path(expanded), pattern, suffixes)
        matches = sorted(p for p in _glob(expanded) if p.is_file())
    except OSError as error:  # a name too long, a folder on the way that cannot be entered
        raise FileNotFoundError(f"'{pattern}': cannot be read ({error.strerror or error})") from None
    if os.path.lexists(expanded):  # a real name holding [, * or ?, e.g. "reviews[1].jsonl"
        if matches:  # that glob matches other files too: neither reading is safe to guess
            raise FileNotFoundError(
                f"'{pattern}' names a file, and read as a glob it matches {matches[0]}"
                f"{' and others' if len(matches) > 1 else ''}; write [[] for a literal '[', [*] for '*' and "
                f"[?] for '?' ({glob.escape(pattern)!r}) to mean the file, or rename it"
            )
        return _one_path(Path(expanded), pattern, suffixes)
    if not matches:
        raise FileNotFoundError(f"no files match '{pattern}' (looked in {Path.cwd()})")
    return matches


def _one_path(path: Path, pattern: str, suffixes: tuple[str, ...]) -> list[Path]:
    """The file ``path`` (named ``pattern``), or with ``suffixes`` the files of those formats in a folder."""
    if path.is_dir() and suffixes:
        found = sorted(p for p in _walk(path) if p.suffix.lower() in suffixes and p.is_file())
        if not found:
            raise FileNotFoundError(
                f"no {' or '.join(suffixes)} files under the folder '{pattern}' (looked in {Path.cwd()})"
            )
        return found
    if path.is_dir():
        raise FileNotFoundError(f"'{pattern}' is a folder; this data reads files: name them, or a glob")
    if not path.is_file():
        raise FileNotFoundError(f"'{pattern}': {not_a_file(path)} (looked in {Path.cwd()})")
    return [path]


def _walk(folder: Path) -> list[Path]:
    """The files under ``folder`` but hidden ones (a name starting with a dot) and those under hidden
    folders, not entering symlinked folders: what ``folder/**/*`` matches (``_glob``), skipped unwalked."""
    found = []
    for root, folders, files in os.walk(folder):
        folders[:] = [name for name in folders if not name.startswith(".")]
        found.extend(Path(root, name) for name in files if not name.startswith("."))
    return found


def not_a_file(path: Path) -> str:
    """What ``path`` is, when it is not a readable file: nothing, a link that leads nowhere, or something
    else (a FIFO or a device, which would block or never end)."""
    try:
        path.stat()
    except FileNotFoundError:
        return "a link to a missing file" if path.is_symlink() else "no such file"
    except OSError as error:  # ELOOP: a link loop; EACCES
        return f"cannot be read ({error.strerror or error})"
    return "not a regular file (a FIFO, socket or device); name a file"


def _glob(pattern: str) -> list[Path]:
    """``pattern``'s matches, ``**`` included, as glob.glob(recursive=True) gives them (names starting with a
    dot only where the pattern spells the dot), except that ``**`` does not descend into symlinked folders:
    pathlib's walk, so a link loop neither repeats files nor runs forever."""
    path = Path(pattern)
    root = Path(path.anchor) if path.is_absolute() else Path()
    relative = str(path.relative_to(path.anchor)) if path.is_absolute() else pattern
    hidden_allowed = "/." in f"/{relative}"
    return [  # root.glob gives each match joined to root: absolute for an absolute pattern
        match
        for match in root.glob(relative)
        if hidden_allowed or not any(part.startswith(".") for part in match.relative_to(root).parts)
    ]


def read_text_file(path: Path) -> str:
    """The UTF-8 text of ``path`` with newlines normalised; unreadable, empty (or only whitespace), binary
    or non-UTF-8 files raise."""
    try:
        data = path.read_bytes()
    except OSError as error:  # no permission, a device that fails to read (/proc/self/mem), gone since
        raise SourceError(f"{path}: cannot be read ({error.strerror or error})") from None
    if not data:
        raise SourceError(f"{path}: file is empty")
    nul = data.find(b"\0")
    if nul >= 0:  # valid UTF-8 text never holds NUL bytes; binary files almost always do
        raise SourceError(f"{path}: looks binary (NUL byte at offset {nul}); expected UTF-8 text")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as err:
        raise SourceError(
            f"{path}: not UTF-8 text (byte 0x{data[err.start]:02x} at offset {err.start}); "
            "convert it, e.g. with iconv -t UTF-8"
        ) from None
    text = text.removeprefix("\ufeff")  # a byte-order mark (Windows editors write one) is not text
    if not text or text.isspace():
        raise SourceError(f"{path}: {'file is empty' if not text else 'holds only whitespace'}")
    return text.replace("\r\n", "\n").replace("\r", "\n")


def read_text_files(patterns: list[str]) -> list[str]:
    """One document per ``.txt`` file (any UTF-8 text file works; a folder means its ``.txt`` files)."""
    return [read_text_file(path) for path in expand_paths(patterns, (".txt",))]


def read_jsonl_files(patterns: list[str], field: str = "text") -> list[str]:
    """One document per line of JSON Lines files, taken from each record's ``field``."""
    return [doc for path in expand_paths(patterns) for doc in _read_jsonl(path, field)]


def _read_jsonl(path: Path, field: str) -> list[str]:
    documents = []
    # split on "\n" only: str.splitlines would also break on U+2028 and friends inside JSON strings
    for lineno, line in enumerate(read_text_file(path).split("\n"), start=1):
        if line.strip():
            documents.append(jsonl_text(line, field, f"{path}:{lineno}"))
    return documents


def json_object(line: str, where: str, wanted: str = "") -> dict:
    """One JSON Lines record, which must be an object; ``where`` (file:line) and ``wanted`` (e.g. "with a
    'text' field") go into the message when it is not. A record over ``MAX_RECORD_BYTES`` is refused."""
    if len(line) > MAX_RECORD_BYTES // 4 and len(line.encode("utf-8", "surrogatepass")) > MAX_RECORD_BYTES:
        raise SourceError(record_too_large(where, MAX_RECORD_BYTES))
    try:
        record = json.loads(line)
    except json.JSONDecodeError as err:
        raise SourceError(f"{where}: not valid JSON ({err.msg} at column {err.colno})") from None
    except RecursionError:  # Python's parser recurses once per level of nesting
        raise SourceError(f"{where}: JSON nested too deeply to read") from None
    except ValueError as err:  # an integer of more digits than Python converts (sys.get_int_max_str_digits)
        raise SourceError(number_too_long(where, err)) from None
    if not isinstance(record, dict):
        wanted = f" {wanted}" if wanted else ""
        raise SourceError(f"{where}: expected a JSON object{wanted}, got {type(record).__name__}")
    return record


def record_too_large(where: str, limit: int, remedy: str = "split it into smaller records") -> str:
    """The message for a record over ``limit`` bytes (``MAX_RECORD_BYTES``): ``where`` is its file:line."""
    return f"{where}: a record over {size_words(limit)}, the most one record may hold; {remedy}"


def size_words(size: int) -> str:
    """``size`` bytes in words: "64 MiB", "300.5 MiB", "1000 bytes"."""
    return f"{size / 2**20:.4g} MiB" if size >= 2**20 else f"{size} bytes"


def number_too_long(where: str, error: ValueError) -> str:
    """The message for a ValueError out of ``json.loads`` other than a syntax error (a number too long)."""
    if "digits" not in str(error):  # no other ValueError is known to come out of json.loads
        return f"{where}: not valid JSON ({first_line(error)})"
    return (
        f"{where}: not readable JSON: a number of more than {sys.get_int_max_str_digits()} digits (the most "
        "Python reads); write it as a string or drop the field"
    )


def jsonl_text(line: str, field: str, where: str | Callable[[], str]) -> str:
    """The string ``field`` of one JSON Lines record; ``where`` (file:line, or a function giving it, called
    only for a message) names the record when it is not valid JSON, not an object, or lacks the field."""
    if callable(where):
        try:  # the common case, without working out where the line is
            record = json.loads(line)
        except (ValueError, RecursionError):  # json_object below names the problem
            record = None
        if isinstance(record, dict) and isinstance(record.get(field), str):
            if "\\u" not in line:  # only an escape can make a lone surrogate
                return record[field]
            return _unicode(record[field], field, where())
        where = where()
    record = json_object(line, where, f"with a '{field}' field")
    if field not in record:
        fields = ", ".join(record) or "(none)"
        raise SourceError(f"{where}: no field '{field}'; fields present: {fields} (set data.field)")
    text = record[field]
    if not isinstance(text, str):
        raise SourceError(f"{where}: field '{field}' holds {type(text).__name__}, expected a string")
    return _unicode(text, field, where) if "\\u" in line else text


def _unicode(text: str, field: str, where: str) -> str:
    """``text``, refused when a JSON escape left half of a surrogate pair in it (not Unicode text)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as error:
        raise SourceError(
            f"{where}: field '{field}' holds a lone surrogate (\\u{ord(text[error.start]):04x} at character "
            f"{error.start}), which is not Unicode text; fix or drop the record"
        ) from None
    return text


def read_parquet_files(patterns: list[str], column: str = "text") -> list[str]:
    """One document per row of Parquet files, taken from the string ``column`` (needs ``pyarrow``)."""
    try:
        import pyarrow as pa
        import pyarrow.parquet as pq
    except ImportError:
        raise ImportError("reading .parquet files needs pyarrow: pip install pyarrow") from None
    documents: list[str] = []
    for path in expand_paths(patterns):
        try:
            columns = pq.read_schema(path).names
        except pa.ArrowException as err:
            raise SourceError(f"{path}: not a readable Parquet file ({err})") from None
        if column not in columns:
            raise SourceError(f"{path}: no column '{column}'; columns present: {', '.join(columns)}")
        values = pq.read_table(path, columns=[column]).column(column).to_pylist()
        documents.extend(_parquet_text(value, f"{path} row {row}") for row, value in enumerate(values))
    return documents


def _parquet_text(value: object, where: str) -> str:
    if not isinstance(value, str):
        raise SourceError(f"{where}: expected a string, got {type(value).__name__}")
    return value
