"""Prepare a corpus once into sharded token files: streamed, in parallel, resumable, read by every rank.

Layout under ``cache_dir``::

    tokens/<key>/units/<n>.<split>.bin       the ids of unit n's texts of that split, eos after each text
    tokens/<key>/units/<n>.json              unit n's sidecar (token and paragraph counts, largest id):
                                             written LAST
    tokens/<key>/units/.prepare.lock         held by the prepare writing the folder (not by shard jobs)
    tokens/<key>/manifest.json               every unit's counts: written last of all, it marks the cache
                                             complete

``key`` hashes the corpus fingerprint (``Corpus.fingerprint``: file paths, sizes and modification times, not
their text), the split rule and the tokenizer, so a cached run finds its tokens without reading (or even
planning) the corpus, and a changed file, split or tokenizer gets a new folder. Opening a cache checks the
manifest's structure and each shard file's size against it (a stat per file, no token read), and the largest
id of each split (recorded as it was written) against the tokenizer; a damaged cache is prepared again where
it is damaged. Each unit (``lightning_llm.data.streams``) is read as a stream, its paragraphs (or records)
assigned to a split by ``lightning_llm.data.corpus.assign_split`` (the same rule and the same texts as a
corpus read whole) and tokenized in batches of bounded size, so memory does not grow with the corpus.
Units are independent: ``num_proc`` processes prepare them at once on one machine, and ``shard=(i, n)``
prepares every n-th unit from the i-th, so n jobs (SLURM array tasks on a shared filesystem) prepare one
corpus together; whichever finds every unit done writes the manifest. Two prepares of one cache that are
not shards of one job (parallel sweep jobs) take turns on its ``units/.prepare.lock``: the second finds the
tokens done. Every file is written under a temporary name and renamed into place, so a prepare killed at
any point leaves no file a later one trusts, and the next one prepares only the units that are missing (and
deletes the temporary files a killed one left: see ``_remove_stale_files``). The folders it writes and
deletes in, ``tokens/<key>`` and its ``units``, must be real folders: a symbolic link there is refused (see
``_refuse_links``), so that no file the framework did not write is deleted through one; ``cache_dir`` and
its ``tokens`` folder may be links (a cache on another disk).

Reading maps each unit's file on demand, and keeps at most ``_MAX_OPEN_MAPS`` of them mapped in a process
(each map holds a file descriptor and a memory map), so any number of units reads within a small budget of
both (``TokenShards``).
"""

from __future__ import annotations

import fcntl
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import re
import socket
import stat
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from lightning_llm.atomic import atomic_write
from lightning_llm.data.corpus import SPLITS, assign_split
from lightning_llm.data.streams import Corpus, Part, Unit, parts
from lightning_llm.tokenizers.cache import cache_errors
from lightning_llm.tokenizers.pieces import MAX_BATCH_CHARS, MAX_PIECE_CHARS, settled_pieces, text_pieces

__all__ = [
    "MANIFEST",
    "SplitRule",
    "TokenCacheError",
    "TokenShards",
    "TokenizerLike",
    "check_cache",
    "prepare",
    "prepared_dir",
    "read_manifest",
    "sample_texts",
    "split_texts",
    "token_dtype",
]

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
_LOCK_FILE = ".prepare.lock"  # held by the process preparing the folder
CORES_PER_PROCESS = 4  # data.num_proc=0: cores per preparing process
_IN_FLIGHT = 2  # batches of one split waiting to be encoded and written
_FORMAT_VERSION = 3
_PROGRESS_SECONDS = 30  # how often preparing logs its progress
_WRITER_MARK = ".writer-"  # units/.writer-<host>-<pid>: that process may be writing temporary files here
_MAX_OPEN_MAPS = 256  # unit files a process keeps mapped, all TokenShards together (see _OpenMaps)
_TEMPORARY = re.compile(  # atomic_write's temporary names of the files a prepare writes; group 1: the pid
    r"^(?:\d{6}\.(?:json|(?:train|val|test)\.bin)|manifest\.json)\.tmp-(\d+)-[0-9a-f]{8}$"
)


class TokenCacheError(ValueError):
    """A token file that cannot be right for the tokenizer: damaged, truncated, or another tokenizer's."""


class TokenizerLike(Protocol):
    """The part of a tokenizer preparing uses."""

    vocab_size: int
    eos_id: int

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    def fingerprint(self) -> str: ...


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype that holds every id: uint16 halves the file size of small vocabularies."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


@dataclass(frozen=True)
class SplitRule:
    """How paragraphs are assigned to train/val/test (``lightning_llm.data.corpus.assign_split``)."""

    val_fraction: float
    test_fraction: float
    seed: int

    def split_of(self, paragraph: str) -> str:
        return assign_split(
            paragraph, val_fraction=self.val_fraction, test_fraction=self.test_fraction, seed=self.seed
        )


def prepared_dir(
    cache_dir: str | Path, corpus_fingerprint: str, rule: SplitRule, tokenizer_fingerprint: str
) -> Path:
    payload = json.dumps(
        {
            "format": _FORMAT_VERSION,
            "corpus": corpus_fingerprint,
            "rule": asdict(rule),
            "tokenizer": tokenizer_fingerprint,
        },
        sort_keys=True,
    )
    return Path(cache_dir).expanduser() / "tokens" / hashlib.sha256(payload.encode()).hexdigest()[:24]


def read_manifest(folder: Path) -> dict | None:
    """The manifest of a completely prepared folder, or None."""
    try:
        manifest = json.loads((folder / MANIFEST).read_text())
    except (OSError, ValueError, RecursionError):
        return None
    return manifest if isinstance(manifest, dict) and manifest.get("format") == _FORMAT_VERSION else None


# --------------------------------------------------------------------------- the tokenizer, as workers see it


@dataclass(frozen=True)
class _Job:
    folder: str
    rule: SplitRule


_worker_tokenizer: TokenizerLike | None = None  # a preparing process's tokenizer, sent once when it starts


def _start_worker(tokenizer: TokenizerLike, threads: int) -> None:
    global _worker_tokenizer
    os.environ["RAYON_NUM_THREADS"] = str(threads)  # the tokenizer's own threads share the cores
    _worker_tokenizer = tokenizer


# --------------------------------------------------------------------------- preparing


def prepare(
    corpus: Corpus,
    tokenizer: Any,
    rule: SplitRule,
    cache_dir: str | Path,
    *,
    num_proc: int | None = None,
    shard: tuple[int, int] | None = None,
) -> tuple[Path, dict | None]:
    """Prepare ``corpus`` (a no-op when its cache is complete and whole); returns the folder and its manifest,
    or None when ``shard`` left other jobs' units to do. A cache hit takes the file list's metadata and a stat
    per shard file: no corpus file is opened, and its units are planned only when something is prepared."""
    tokenizer_fingerprint = tokenizer.fingerprint()  # a hash of the whole vocabulary: taken once
    folder = prepared_dir(cache_dir, corpus.fingerprint(), rule, tokenizer_fingerprint)
    _refuse_links(folder)
    if (manifest := read_manifest(folder)) is not None:
        if (problem := check_cache(folder, manifest)) is None:
            log.info("token cache hit: %s tokens at %s", manifest["tokens"], folder)
            return folder, manifest
        log.warning("token cache %s is damaged (%s); preparing the damaged units again", folder, problem)
    elif (folder / MANIFEST).exists():
        log.warning(
            "token cache %s: its %s is unreadable or of another format; writing it again", folder, MANIFEST
        )
    # An OSError here is the cache's (cache_errors words it so), except one reading the corpus: that one is
    # carried past cache_errors as a _CorpusReadError and raised as it was, naming the corpus file.
    try:
        with cache_errors(cache_dir, "write the token cache"), _one_prepare_at_a_time(folder, shard):
            manifest = read_manifest(folder) if shard is None else None
            if manifest is not None and check_cache(folder, manifest) is None:
                log.info("token cache hit (prepared meanwhile): %s tokens at %s", manifest["tokens"], folder)
                return folder, manifest
            with _reading_corpus():
                units = corpus.units()
            return folder, _prepare(folder, units, tokenizer, tokenizer_fingerprint, rule, num_proc, shard)
    except _CorpusReadError as carried:
        error = carried.error
    raise error  # outside the handler: the corpus's error as it was raised, with no carrier in its context


class _CorpusReadError(Exception):
    """An OSError raised reading a corpus file (not the cache), carried past ``cache_errors``, which would
    word it as the cache's; ``prepare`` raises the OSError itself. Pickled whole from a preparing process."""

    def __init__(self, error: OSError) -> None:
        super().__init__(error)
        self.error = error


@contextmanager
def _reading_corpus() -> Iterator[None]:
    """Carry an OSError raised inside (reading the corpus) past ``cache_errors`` as a ``_CorpusReadError``."""
    try:
        yield
    except OSError as error:
        raise _CorpusReadError(error) from None


def _corpus_parts(unit: Unit) -> Iterator[Part]:
    """``parts(unit)``, with an OSError reading it carried as a ``_CorpusReadError``: only the reading is
    wrapped, not what the consumer does between parts (writing the cache)."""
    iterator = parts(unit)
    while True:
        with _reading_corpus():
            try:
                part = next(iterator)
            except StopIteration:
                return
        yield part


def _refuse_links(folder: Path) -> None:
    """Refuse a token folder (``tokens/<key>``) or its ``units`` that is a symbolic link. Preparing deletes
    files in them (the temporary files of a killed prepare, see ``_remove_stale_files``), and the framework
    deletes only files it wrote: through a link it could delete, and write, anywhere. Refused rather than
    cleaned around: a link there is not a layout the framework makes, and writing through it would still
    write elsewhere. Only these two are judged: ``cache_dir`` (a link to a larger disk is common) and its
    ``tokens`` folder may be links, since the folders below them are still the framework's own."""
    for path in (folder, folder / "units"):
        if os.path.islink(path):
            raise TokenCacheError(_link_message(path))


def _link_message(path: Path) -> str:
    return (
        f"token cache {path} is a symbolic link; the framework writes and deletes its files only in folders "
        "of its own: remove the link (the cache is prepared again) or set paths.cache_dir where the tokens "
        "should go"
    )


@contextmanager
def _one_prepare_at_a_time(folder: Path, shard: tuple[int, int] | None) -> Iterator[None]:
    """Hold ``folder``'s lock while preparing it, so that a second prepare of the same cache (parallel sweep
    jobs on one corpus) waits for the first and then finds its tokens instead of encoding them again. A
    ``shard`` job takes no lock: jobs of one sharded prepare run at once on distinct units. ``flock``, not
    ``lockf``: it holds between threads too, and Linux carries it to NFS; where the filesystem has no locks,
    prepares overlap as before (each unit is still written atomically)."""
    if shard is not None:
        yield
        return
    (folder / "units").mkdir(parents=True, exist_ok=True)
    _refuse_links(folder)
    lock = folder / "units" / _LOCK_FILE
    try:  # O_NOFOLLOW: a link in its place would have its target created or opened for writing
        descriptor = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666)
    except OSError:
        if os.path.islink(lock):
            raise TokenCacheError(_link_message(lock)) from None
        raise
    try:
        try:
            try:
                fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                log.info("waiting for another prepare of %s to finish", folder)
                fcntl.flock(descriptor, fcntl.LOCK_EX)
        except OSError as error:  # no lock support on this filesystem
            log.debug("preparing %s without a lock: %s", folder, error)
        yield
    finally:
        os.close(descriptor)  # releases the lock


def check_cache(folder: Path, manifest: dict) -> str | None:
    """What is wrong with a prepared folder, or None: the manifest's structure, and each shard file's size
    against the count the manifest gives it (a stat per file: no token is read, so ids rewritten in place
    with other valid ids go unnoticed)."""
    if (problem := _manifest_problem(manifest)) is not None:
        return f"{folder / MANIFEST}: {problem}"
    itemsize = np.dtype(manifest["dtype"]).itemsize
    # Every unit prepared leaves a sidecar: one past the manifest's last means units were left out of it.
    if _unit_path(folder, len(manifest["units"]), "json").exists():
        return f"{folder / MANIFEST} lists {len(manifest['units'])} units, and the folder holds more"
    for index, counts in enumerate(manifest["units"]):
        for split in SPLITS:
            path = _unit_path(folder, index, f"{split}.bin")
            try:
                size = path.stat().st_size
            except OSError:
                return f"{path} is missing"
            if size != counts[split] * itemsize:
                return f"{path} holds {size} bytes, the manifest says {counts[split] * itemsize}"
    return None


def _manifest_problem(manifest: dict) -> str | None:
    """Why ``manifest`` is not one ``_prepare`` writes, or None."""

    def counts(value: Any) -> bool:
        return isinstance(value, dict) and all(
            isinstance(value.get(s), int) and not isinstance(value.get(s), bool) and value[s] >= 0
            for s in SPLITS
        )

    units = manifest.get("units")
    if not isinstance(units, list) or not units or not all(counts(unit) for unit in units):
        return "'units' is not a list of each unit's token counts"
    for key in ("tokens", "paragraphs"):
        if not counts(manifest.get(key)):
            return f"'{key}' is not a count per split"
    if any(manifest["tokens"][s] != sum(unit[s] for unit in units) for s in SPLITS):
        return "'tokens' is not the sum of the units' counts"
    if manifest.get("dtype") not in ("uint16", "uint32"):
        return "'dtype' is not uint16 or uint32"
    high = manifest.get("max_id")
    if not isinstance(high, dict) or not all(isinstance(high.get(s), int) for s in SPLITS):
        return "'max_id' is not the largest id of each split"
    return None


def _prepare(
    folder: Path,
    units: list[Unit],
    tokenizer: TokenizerLike,
    tokenizer_fingerprint: str,
    rule: SplitRule,
    num_proc: int | None,
    shard: tuple[int, int] | None,
) -> dict | None:
    (folder / "units").mkdir(parents=True, exist_ok=True)
    _remove_stale_files(folder)
    job = _Job(str(folder), rule)
    mine = range(len(units)) if shard is None else range(shard[0], len(units), shard[1])
    todo = [(job, index, units[index]) for index in mine if _unit_counts(folder, index) is None]
    log.info(
        "preparing %d of %d units%s into %s",
        len(todo),
        len(units),
        f" (shard {shard[0]}/{shard[1]})" if shard else "",
        folder,
    )
    start = last_log = time.perf_counter()
    tokens = 0
    for done, counts in enumerate(_run(todo, tokenizer, num_proc), start=1):
        tokens += sum(counts["tokens"].values())
        if time.perf_counter() - last_log > _PROGRESS_SECONDS and done < len(todo):
            last_log = time.perf_counter()
            log.info("prepared %d of %d units so far: %s tokens", done, len(todo), tokens)
    if todo:
        seconds = time.perf_counter() - start
        log.info("prepared %d of %d units: %s tokens in %.1f s", len(todo), len(units), tokens, seconds)
    counts = [_unit_counts(folder, index) for index in range(len(units))]
    if any(count is None for count in counts):
        return None  # other shards' jobs still to finish
    manifest = {
        "format": _FORMAT_VERSION,
        "dtype": token_dtype(tokenizer.vocab_size).name,
        "vocab_size": tokenizer.vocab_size,
        "eos_id": tokenizer.eos_id,
        "tokenizer_fingerprint": tokenizer_fingerprint,
        "rule": asdict(rule),
        "tokens": {split: sum(count["tokens"][split] for count in counts) for split in SPLITS},
        "paragraphs": {split: sum(count["paragraphs"][split] for count in counts) for split in SPLITS},
        "max_id": {split: max(count["max_id"][split] for count in counts) for split in SPLITS},
        "units": [count["tokens"] for count in counts],
    }
    with _writing(folder), atomic_write(folder / MANIFEST) as file:
        file.write(json.dumps(manifest, indent=1).encode())
    _remove_stale_files(folder)
    return manifest


# --------------------------------------------------------------------------- temporary files a kill leaves


@contextmanager
def _writing(folder: Path) -> Iterator[None]:
    """While inside, this process is marked as one that may write temporary files in ``folder``, so that no
    other prepare, on this host or another sharing the filesystem, takes them for a killed writer's. The mark
    goes on the way out, a failure included (a spawned worker's too); only a killed process leaves one, and
    the next prepare removes it."""
    mark = _writer_mark(folder, socket.gethostname(), os.getpid())
    os.close(os.open(mark, os.O_WRONLY | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o666))  # never a link's
    try:
        yield
    finally:
        mark.unlink(missing_ok=True)


def _writer_mark(folder: Path, host: str, pid: int) -> Path:
    return Path(folder) / "units" / f"{_WRITER_MARK}{host}-{pid}"


def _remove_stale_files(folder: Path) -> None:
    """Delete the temporary files (``<name>.tmp-<pid>-<hex>``, ``lightning_llm.atomic``) that a prepare killed
    on this host left in ``folder``: those of a process that is gone, unless a process of that number on
    another host marked the folder (it may be writing them now). Only this folder's own names are touched,
    only plain files (a link of such a name is left), never through a linked folder (``_refuse_links``)."""
    _refuse_links(folder)
    host = socket.gethostname()
    elsewhere = set()
    for mark in (folder / "units").glob(f"{_WRITER_MARK}*"):
        where, _, pid = mark.name[len(_WRITER_MARK) :].rpartition("-")
        if not pid.isdigit():
            continue
        if where != host:
            elsewhere.add(int(pid))
        elif not _alive(int(pid)) and _is_plain_file(mark):
            mark.unlink(missing_ok=True)
    removed = 0
    for path in [*folder.iterdir(), *(folder / "units").iterdir()]:
        match = _TEMPORARY.match(path.name)
        if match and int(match[1]) not in elsewhere and not _alive(int(match[1])) and _is_plain_file(path):
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("removed %d temporary files that a killed prepare left in %s", removed, folder)


def _is_plain_file(path: Path) -> bool:
    """True for a regular file, not a link (the kind of file a prepare writes)."""
    try:
        return stat.S_ISREG(path.lstat().st_mode)
    except OSError:
        return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True  # another user's process
    return True


def _run(
    todo: list[tuple[_Job, int, Unit]], tokenizer: TokenizerLike, num_proc: int | None
) -> Iterator[dict]:
    global _worker_tokenizer
    cores = os.cpu_count() or 1
    # automatic: a process per CORES_PER_PROCESS cores, each encoding with that many tokenizer threads
    # (on 2 cores one process runs at 0.84x encode_batch's speed, two at 0.74x; bench/data_scale.py)
    processes = min(num_proc or max(1, cores // CORES_PER_PROCESS), len(todo))
    if processes <= 1:
        _worker_tokenizer = tokenizer
        try:
            yield from map(_prepare_unit, todo)
        finally:
            _worker_tokenizer = None
        return
    # spawn: a fork would copy the parent's tokenizer threads' state; each worker gets the tokenizer once
    threads = max(1, cores // processes)
    context = multiprocessing.get_context("spawn")
    with context.Pool(processes, initializer=_start_worker, initargs=(tokenizer, threads)) as pool:
        yield from pool.imap_unordered(_prepare_unit, todo)


def _unit_counts(folder: Path, index: int) -> dict | None:
    """The counts of a unit whose files are complete, else None."""
    try:
        counts = json.loads(_unit_path(folder, index, "json").read_text())
        dtype = np.dtype(counts["dtype"])
        if not all(isinstance(counts["max_id"][split], int) for split in SPLITS):
            return None
        for split in SPLITS:
            if (
                _unit_path(folder, index, f"{split}.bin").stat().st_size
                != counts["tokens"][split] * dtype.itemsize
            ):
                return None
    except (OSError, ValueError, KeyError, TypeError, RecursionError):
        return None
    return counts


def _unit_path(folder: Path, index: int, suffix: str) -> Path:
    return Path(folder) / "units" / f"{index:06d}.{suffix}"


def _prepare_unit(task: tuple[_Job, int, Unit]) -> dict:
    """Tokenize one unit into its three split files, then write its sidecar."""
    job, index, unit = task
    tokenizer = _worker_tokenizer
    assert tokenizer is not None  # set by _run, or by _start_worker in a preparing process
    dtype = token_dtype(tokenizer.vocab_size)
    folder = Path(job.folder)
    with ExitStack() as stack:
        stack.enter_context(_writing(folder))
        files = {s: stack.enter_context(atomic_write(_unit_path(folder, index, f"{s}.bin"))) for s in SPLITS}
        encoder = stack.enter_context(ThreadPoolExecutor(max_workers=1, thread_name_prefix="encode"))
        writers = {s: _SplitWriter(files[s], tokenizer, dtype, encoder) for s in SPLITS}
        paragraph_counts = dict.fromkeys(SPLITS, 0)
        try:
            for split, run in _runs(unit, job.rule, _corpus_parts):
                paragraph_counts[split] += writers[split].write_text(run)
            for writer in writers.values():
                writer.close()
        except BaseException:  # no batch may still write once the files are discarded
            for writer in writers.values():
                for future in writer.pending:
                    future.cancel()
            raise
    counts = {
        "unit": asdict(unit),
        "dtype": dtype.name,
        "tokens": {s: writers[s].n_tokens for s in SPLITS},
        "paragraphs": paragraph_counts,
        "max_id": {s: writers[s].max_id for s in SPLITS},  # checked against the tokenizer when opened
    }
    with _writing(folder), atomic_write(_unit_path(folder, index, "json")) as file:
        file.write(json.dumps(counts).encode())
    return counts


def _runs(
    unit: Unit, rule: SplitRule, read: Callable[[Unit], Iterator[Part]] = parts
) -> Iterator[tuple[str, Iterator[Part]]]:
    """``(split, parts)`` for each maximal run of consecutive paragraphs of one document that share a split:
    one text of the split (its paragraphs joined by a blank line, see ``_join``), streamed. Each paragraph's
    split is its key's (``Part``): the paragraph, or its whole document. Moving to the next run skips what is
    left of the current one. ``read`` gives the unit's parts."""

    def labelled() -> Iterator[tuple[int, str, Part]]:
        key, split = None, ""
        for part in read(unit):
            if part.key is not key:  # a record's paragraphs share its key: hashed once
                key, split = part.key, rule.split_of(part.key)
            yield part.document, split, part

    for (_, split), run in itertools.groupby(labelled(), key=lambda item: item[:2]):
        yield split, (part for _, _, part in run)


def _join(run: Iterable[Part]) -> str:
    """One text from its parts: paragraphs joined by a blank line, the parts of one paragraph directly."""
    return "".join(_piece(n, part) for n, part in enumerate(run))


def _piece(n: int, part: Part) -> str:
    """Part ``n`` of a run, as it goes into the run's text."""
    return part.text if part.continued or n == 0 else f"\n\n{part.text}"


class _SplitWriter:
    """Encodes one split's texts into a file, in batches of bounded size, eos after each text.

    Batches are encoded and written by ``encoder``, one thread shared by a unit's writers: the tokenizer
    releases the GIL while it encodes, so reading and splitting the next batch overlaps with it. At most
    ``_IN_FLIGHT`` batches wait, which bounds the memory."""

    def __init__(
        self, file: Any, tokenizer: TokenizerLike, dtype: np.dtype, encoder: ThreadPoolExecutor
    ) -> None:
        self.file, self.tokenizer, self.dtype, self.encoder = file, tokenizer, dtype, encoder
        self.eos_id, self.vocab_size = tokenizer.eos_id, tokenizer.vocab_size
        self.pending: deque[Future] = deque()
        self.pieces: list[str] = []
        self.ends: list[bool] = []
        self.chars = 0
        self.n_tokens = 0
        self.max_id = -1  # the largest id written (-1: none)

    def write_text(self, run: Iterable[Part]) -> int:
        """Add one text, given as its paragraphs' parts; returns how many paragraphs there were. A long text
        is cut into pieces exactly where ``text_pieces`` cuts it whole, holding at most a few at a time."""
        rest = ""
        count = 0
        for part in run:
            if part.continued:
                rest += part.text
            else:
                rest = f"{rest}\n\n{part.text}" if count else part.text
                count += 1
            if len(rest) > 2 * MAX_PIECE_CHARS:
                settled, rest = settled_pieces(rest, MAX_PIECE_CHARS)
                for piece in settled:
                    self._add(piece, False)
        settled, rest = settled_pieces(rest, MAX_PIECE_CHARS)
        tail = [*settled, *text_pieces(rest, MAX_PIECE_CHARS)]
        for position, piece in enumerate(tail):
            self._add(piece, position == len(tail) - 1)
        return count

    def _add(self, piece: str, ends_text: bool) -> None:
        if self.pieces and self.chars + len(piece) > MAX_BATCH_CHARS:
            self.flush()
        self.pieces.append(piece)
        self.ends.append(ends_text)
        self.chars += len(piece)

    def flush(self) -> None:
        """Hand the current batch to the encoder, waiting while too many are in flight."""
        if self.pieces:
            self.pending.append(self.encoder.submit(self._write, self.pieces, self.ends))
            self.pieces, self.ends, self.chars = [], [], 0
        while len(self.pending) > _IN_FLIGHT:
            self.pending.popleft().result()

    def close(self) -> None:
        """Write what is left; raises the first error of any batch."""
        self.flush()
        while self.pending:
            self.pending.popleft().result()

    def _write(self, pieces: list[str], ends: list[bool]) -> None:
        arrays = []
        for ids, ends_text in zip(self.tokenizer.encode_batch(pieces), ends, strict=True):
            arrays.append(np.asarray(ids, dtype=np.int64))
            if ends_text:
                arrays.append(np.array([self.eos_id], dtype=np.int64))
        ids = np.concatenate(arrays)
        if ids.size and (int(ids.min()) < 0 or int(ids.max()) >= self.vocab_size):
            bad = int(ids.min()) if int(ids.min()) < 0 else int(ids.max())
            raise ValueError(f"tokenizer produced id {bad}, outside [0, vocab_size={self.vocab_size})")
        self.file.write(ids.astype(self.dtype).tobytes())
        self.n_tokens += ids.size
        self.max_id = max(self.max_id, int(ids.max()) if ids.size else -1)


# --------------------------------------------------------------------------- tokenizer training sample


def sample_texts(corpus: Corpus, rule: SplitRule, max_chars: int) -> Iterator[str]:
    """Train-split texts for tokenizer training: at most ``max_chars`` characters (blank lines between
    paragraphs counted), spread over the units in proportion to their size: each unit is read from its
    start until its share is taken, the last paragraph cut to fit."""
    if max_chars < 1:
        raise ValueError(f"tokenizer.train_max_chars must be >= 1, got {max_chars}")
    units = corpus.units()
    total = sum(unit.size for unit in units) or 1
    taken = seen = 0
    for unit in units:
        seen += unit.size
        budget = round(max_chars * seen / total) - taken  # cumulative shares: they sum to max_chars
        if budget <= 0:
            continue
        for split, run in _runs(unit, rule):
            if split != "train":
                continue
            text = _head(run, budget)
            taken += len(text)
            budget -= len(text)
            if text:
                yield text
            if budget <= 2:  # not even a blank line and a character left
                break
    log.info(
        "tokenizer training sample: %d characters from %d units (tokenizer.train_max_chars=%d)",
        taken,
        len(units),
        max_chars,
    )


def _head(run: Iterable[Part], budget: int) -> str:
    """The first ``budget`` characters of the text ``run`` makes, reading no more of it than that needs."""
    pieces, size = [], 0
    for n, part in enumerate(run):
        pieces.append(_piece(n, part)[: budget - size])
        size += len(pieces[-1])
        if size >= budget:
            break
    return "".join(pieces)


def split_texts(corpus: Corpus, rule: SplitRule, split: str) -> Iterator[str]:
    """Every text of ``split``, in corpus order: each run of paragraphs joined by a blank line."""
    for unit in corpus.units():
        for run_split, run in _runs(unit, rule):
            if run_split == split:
                yield _join(run)


# --------------------------------------------------------------------------- reading


class _OpenMaps:
    """The unit files a process has memory-mapped, least recently read first: at most ``_MAX_OPEN_MAPS``,
    for all ``TokenShards`` together. Each map holds a file descriptor (Python's mmap keeps one) and one of
    the kernel's maps (``vm.max_map_count``), so a corpus of many small files, a unit each, would otherwise
    run out of descriptors (``ulimit -n``, often 1024) partway through an epoch. The least recently read map
    is closed to open another, and opened again when read again; a slice still held keeps its map alive until
    it goes (``PackedWindows`` copies each window out at once). Keyed by the reader (a ``TokenShards``'s own
    key) and the unit: a reader made after the cache was prepared again maps the files that are there now."""

    def __init__(self) -> None:
        self.maps: OrderedDict[tuple[object, int], np.memmap] = OrderedDict()
        self.lock = threading.Lock()  # readers in several threads of a process
        os.register_at_fork(after_in_child=self._after_fork)

    def get(self, key: tuple[object, int], path: Path, dtype: np.dtype, length: int) -> np.memmap:
        with self.lock:
            if (found := self.maps.get(key)) is not None:
                self.maps.move_to_end(key)
                return found
            while self.maps and len(self.maps) >= _MAX_OPEN_MAPS:
                self.maps.popitem(last=False)  # its memmap closes when no slice of it is left
        mapped = np.memmap(path, dtype=dtype, mode="r", shape=(length,))
        with self.lock:
            self.maps[key] = mapped  # a thread that mapped it meanwhile: its map is dropped
            self.maps.move_to_end(key)
        return mapped

    def _after_fork(self) -> None:
        self.lock = threading.Lock()  # a forked worker: no other thread is there to release the lock


_OPEN_MAPS = _OpenMaps()


class TokenShards:
    """The ids of one split, across its unit files, as one read-only sequence: ``len`` and slices, which is
    what ``PackedWindows`` reads. Each file is memory-mapped when read (pages load on demand, shared by
    processes), at most ``_MAX_OPEN_MAPS`` at once in a process (``_OpenMaps``), however many units."""

    def __init__(self, folder: str | Path, split: str, manifest: dict) -> None:
        self.folder, self.split = str(folder), split
        self.dtype = np.dtype(manifest["dtype"])
        self.sizes = [unit[split] for unit in manifest["units"]]
        self.offsets = np.cumsum([0, *self.sizes])
        self._key = object()  # its maps' key in _OPEN_MAPS: unique in a process, a new one once unpickled

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _map(self, index: int) -> np.ndarray:
        path = _unit_path(Path(self.folder), index, f"{self.split}.bin")
        return _OPEN_MAPS.get((self._key, index), path, self.dtype, self.sizes[index])

    def windows(self, starts: Sequence[int], width: int) -> np.ndarray:
        """``self[s : s + width]`` for every ``s`` in ``starts``, as the rows of one int64 array: the windows
        that lie in one unit are gathered from its map together (one fancy index per unit a batch touches,
        not a slice, a lookup and a copy per window: a training batch of 12 windows, ~0.7 -> ~0.1 ms); a
        window across units is copied part by part as ``__getitem__`` does."""
        starts_ = np.asarray(starts, dtype=np.int64).reshape(-1)
        rows = np.empty((len(starts_), width), dtype=np.int64)
        if not len(starts_):
            return rows
        if int(starts_.min()) < 0 or int(starts_.max()) + width > len(self):
            raise IndexError(f"a window of {width} ids from {starts_.tolist()} is outside 0..{len(self)}")
        # side="right" passes over empty units, whose offset equals the next one's
        units = np.searchsorted(self.offsets, starts_, side="right") - 1
        local = starts_ - self.offsets[units]
        inside = local + width <= np.asarray(self.sizes, dtype=np.int64)[units]
        columns = np.arange(width)
        for unit in np.unique(units[inside]).tolist():
            pick = np.flatnonzero(inside & (units == unit))
            rows[pick] = self._map(unit)[local[pick, None] + columns]
        for row in np.flatnonzero(~inside).tolist():
            start = int(starts_[row])
            rows[row] = self[start : start + width]
        return rows

    def __getitem__(self, key: slice) -> np.ndarray:
        """The ids ``key`` names: a view of the unit's map when they lie in one unit, else a copy, each unit's
        part copied in as it is read (so a slice across many units holds one map at a time)."""
        start, stop, step = key.indices(len(self))
        if step != 1:
            raise ValueError("TokenShards takes contiguous slices only")
        first = int(np.searchsorted(self.offsets, start, side="right")) - 1
        out = np.empty(0, self.dtype)
        at = start
        while at < stop:
            while self.sizes[first] == 0 or at >= self.offsets[first + 1]:
                first += 1
            local = at - int(self.offsets[first])
            take = min(stop - at, self.sizes[first] - local)
            part = self._map(first)[local : local + take]
            if take == stop - start:
                return part
            if not out.size:
                out = np.empty(stop - start, self.dtype)
            out[at - start : at - start + take] = part
            at += take
        return out
