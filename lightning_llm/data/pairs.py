"""Source/target pairs for sequence-to-sequence training (translation, summarisation, transductions).

A run goes: the pairs are read and split on first use -> ``texts("train")`` (sources and targets, for
tokenizer training) -> ``setup(stage)`` tokenizes the splits the stage needs (pairs are small, so there is no
token cache) -> DataLoaders of dynamically padded batches, each as the seq2seq contract says::

    input_ids          (B, S) int64   source ids, no bos, truncated to block_size, pad_id after the end
    attention_mask     (B, S) bool    True at real source tokens
    decoder_input_ids  (B, T) int64   bos + target ids, pad_id after the end
    labels             (B, T) int64   target ids + eos, -100 after the end
    target_text        list[str]      the reference strings, for BLEU/ROUGE

Target ids are truncated to ``block_size - 1`` so both decoder sequences fit in ``block_size``; the
reference string stays whole, so a truncated target costs BLEU rather than hiding it.

Two plugins (``lightning_llm.data.datamodule``) read through here: ``pairs`` reads jsonl/tsv/csv files, and
``reverse_words`` (the embedded default) makes pairs from Python's bundled documentation, so a seq2seq run
needs no downloads. Both build a ``PairDataModule`` (``lightning_llm.data.pair_module``).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple, Protocol

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from lightning_llm.data.corpus import (
    SPLITS,
    check_fraction,
    split_by_key,
    split_paragraphs,
    warn_shared_texts,
)
from lightning_llm.data.sources import (
    SourceError,
    delimited_rows,
    expand_paths,
    json_object,
    pydoc_topics,
    read_text_file,
)

__all__ = [
    "IGNORE_INDEX",
    "Pair",
    "PairDataset",
    "PairTokenizer",
    "Seq2SeqCollator",
    "check_reverse_words",
    "file_splits",
    "hashed_splits",
    "pairs_fingerprint",
    "read_pairs",
    "reverse_words",
    "reverse_words_corpus",
    "reverse_words_pairs",
    "split_pairs",
]

IGNORE_INDEX = -100  # label value that contributes no loss (PyTorch's default)
_FINGERPRINT_VERSION = 1  # bump when reading, splitting or pair generation changes
_SUFFIXES = (".jsonl", ".tsv", ".csv")


class PairTokenizer(Protocol):
    """The part of a tokenizer the pairs module uses."""

    pad_id: int
    bos_id: int
    eos_id: int

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...


class Pair(NamedTuple):
    source: str
    target: str


# --------------------------------------------------------------------------- reading pair files


def read_pairs(patterns: list[str], source_field: str = "source", target_field: str = "target") -> list[Pair]:
    """The pairs of every file named by ``patterns`` (paths or globs), in order.

    ``.jsonl`` files hold one JSON object per line; ``.tsv`` and ``.csv`` files start with a header row
    naming their columns. Either way ``source_field`` and ``target_field`` name the two texts.
    """
    return [
        pair for path in expand_paths(patterns) for pair in _read_pair_file(path, source_field, target_field)
    ]


def _read_pair_file(path: Path, source_field: str, target_field: str) -> list[Pair]:
    suffix = path.suffix.lower()
    if suffix not in _SUFFIXES:
        raise SourceError(
            f"{path}: unsupported pairs file type '{suffix}'; use one of: {', '.join(_SUFFIXES)}"
        )
    text = read_text_file(path)  # raises on an empty, binary or non-UTF-8 file
    fields = (source_field, target_field)
    pairs = _jsonl_pairs(path, text, fields) if suffix == ".jsonl" else _table_pairs(path, text, fields)
    if not pairs:
        raise SourceError(f"{path}: holds no pairs (only blank lines or a header)")
    return pairs


def _jsonl_pairs(path: Path, text: str, fields: tuple[str, str]) -> list[Pair]:
    pairs = []
    # split on "\n" only: str.splitlines would also break on U+2028 and friends inside JSON strings
    for lineno, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        where = f"{path}:{lineno}"
        pairs.append(_pair(json_object(line, where, f"with fields {fields}"), fields, where))
    return pairs


def _table_pairs(path: Path, text: str, fields: tuple[str, str]) -> list[Pair]:
    header, rows = delimited_rows(path, text)
    missing = [field for field in fields if field not in header]
    if missing:
        raise SourceError(
            f"{path}:1: the header has no column {', '.join(map(repr, missing))}; columns present: "
            f"{', '.join(header) or '(none)'} (set data.source_field / data.target_field)"
        )
    pairs = []
    for where, row in rows:
        cells = {key: value for key, value in row.items() if value is not None}  # a short row's: None
        if any(value.strip() for value in cells.values()):  # csv skips empty lines, not whitespace-only ones
            pairs.append(_pair(cells, fields, where))
    return pairs


def _pair(record: dict, fields: tuple[str, str], where: str) -> Pair:
    """The pair in ``record``; a missing, non-string or blank field raises naming ``where`` (a blank target
    would teach the model to answer nothing, and score every output against an empty reference)."""
    values = []
    for field in fields:
        if field not in record:
            present = ", ".join(map(str, record))
            raise SourceError(
                f"{where}: no field '{field}'; fields present: {present or '(none)'} "
                "(set data.source_field / data.target_field)"
            )
        value = record[field]
        if not isinstance(value, str):
            raise SourceError(f"{where}: field '{field}' holds {type(value).__name__}, expected a string")
        values.append(value)
    for role, field, value in zip(("source", "target"), fields, values, strict=True):
        if not value.strip():
            raise SourceError(f"{where}: the {role} ('{field}') is blank; every pair needs a {role} text")
    return Pair(*values)


# --------------------------------------------------------------------------- splitting


def split_pairs(
    pairs: Sequence[Pair], *, val_fraction: float = 0.05, test_fraction: float = 0.05, seed: int = 1234
) -> dict[str, list[Pair]]:
    """Train/val/test pairs by a stable hash of each source (``lightning_llm.data.corpus.assign_split``).

    Hashing the source keeps every copy of a source text in one split, so no evaluation source is ever a
    training source; a fraction of 0 leaves that split empty on purpose.
    """
    return split_by_key(
        pairs, lambda pair: pair.source, val_fraction, test_fraction, seed, "pairs", "sources"
    )


def file_splits(
    paths: list[str], val_paths: list[str] | None, test_paths: list[str] | None, fields: tuple[str, str]
) -> Callable[[], dict[str, list[Pair]]]:
    """A reader of splits given as files: train from ``paths``, the others from their own files (or none)."""

    def read() -> dict[str, list[Pair]]:
        splits = {
            "train": read_pairs(paths, *fields),
            "val": read_pairs(val_paths, *fields) if val_paths else [],
            "test": read_pairs(test_paths, *fields) if test_paths else [],
        }
        warn_shared_texts(splits, lambda pair: pair.source, "pairs", "source")
        return splits

    return read


def hashed_splits(
    read: Callable[[], list[Pair]], val_fraction: float, test_fraction: float, seed: int
) -> Callable[[], dict[str, list[Pair]]]:
    check_fraction("data.val_fraction", val_fraction)
    check_fraction("data.test_fraction", test_fraction)
    return lambda: split_pairs(read(), val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)


def pairs_fingerprint(splits: dict[str, list[Pair]]) -> str:
    """A hash of every split's pairs: same value, same data, on any machine."""
    digest = hashlib.sha256(f"pairs-v{_FINGERPRINT_VERSION}".encode())
    for split in SPLITS:
        digest.update(f"\0{split}\0{len(splits[split])}\0".encode())
        for text in (text for pair in splits[split] for text in pair):
            data = text.encode()
            digest.update(len(data).to_bytes(8, "little"))  # length prefix: ["ab"] and ["a", "b"] differ
            digest.update(data)
    return digest.hexdigest()


# --------------------------------------------------------------------------- the reverse_words task


def reverse_words(text: str) -> str:
    """The whitespace-separated words of ``text`` in reverse order, joined by single spaces."""
    return " ".join(reversed(text.split()))


def reverse_words_pairs(
    documents: list[str], *, min_words: int = 3, max_words: int = 8, num_examples: int = 20000, seed: int = 0
) -> list[Pair]:
    """Word runs of ``documents`` and their reversals: a pure function of the documents and arguments.

    Words are the whitespace-separated tokens that hold a letter (so heading underlines, ``>>>`` prompts
    and lone punctuation are left out). A run starts at every word of every paragraph, so runs overlap,
    and takes a seeded random length in [min_words, max_words], cut short only by the paragraph's end and
    never below ``min_words``. Runs with the same text are kept once; when more than ``num_examples``
    remain, a seeded sample (in corpus order) is returned.
    """
    check_reverse_words(min_words, max_words, num_examples)
    rng = random.Random(seed)
    sources: dict[str, None] = {}  # an ordered set
    for document in documents:
        for paragraph in split_paragraphs(document):
            words = [word for word in paragraph.split() if _has_letter(word)]
            for start in range(len(words) - min_words + 1):
                sources.setdefault(" ".join(words[start : start + rng.randint(min_words, max_words)]))
    runs = list(sources)
    if len(runs) > num_examples:
        runs = [runs[i] for i in sorted(rng.sample(range(len(runs)), num_examples))]
    return [Pair(run, reverse_words(run)) for run in runs]


def _has_letter(word: str) -> bool:
    return any(char.isalpha() for char in word)


# --------------------------------------------------------------------------- tensors


class Example(NamedTuple):
    source_ids: list[int]
    target_ids: list[int]
    target_text: str


class PairDataset(Dataset):
    """Tokenized pairs: item ``i`` is an ``Example`` of source ids, target ids and the reference text."""

    def __init__(self, examples: list[Example]) -> None:
        self.examples = examples

    def __len__(self) -> int:
        return len(self.examples)

    def __getitem__(self, index: int) -> Example:
        return self.examples[index]


@dataclass(frozen=True)
class Seq2SeqCollator:
    """Pads a list of ``Example``s to the longest of the batch (dynamic padding) in the seq2seq layout."""

    pad_id: int
    bos_id: int
    eos_id: int

    def __call__(self, examples: list[Example]) -> dict[str, torch.Tensor | list[str]]:
        sources = [torch.tensor(e.source_ids, dtype=torch.long) for e in examples]
        lengths = torch.tensor([len(s) for s in sources])
        input_ids = pad_sequence(sources, batch_first=True, padding_value=self.pad_id)  # (B, S)
        decoder_inputs = [torch.tensor([self.bos_id, *e.target_ids], dtype=torch.long) for e in examples]
        labels = [torch.tensor([*e.target_ids, self.eos_id], dtype=torch.long) for e in examples]
        return {
            "input_ids": input_ids,
            "attention_mask": torch.arange(input_ids.size(1)) < lengths[:, None],  # (B, S)
            "decoder_input_ids": pad_sequence(decoder_inputs, batch_first=True, padding_value=self.pad_id),
            "labels": pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX),  # (B, T)
            "target_text": [e.target_text for e in examples],
        }


def reverse_words_corpus(**params: int) -> list[Pair]:
    return reverse_words_pairs(pydoc_topics(), **params)


def check_reverse_words(min_words: int, max_words: int, num_examples: int) -> None:
    if min_words < 1 or max_words < min_words:
        raise ValueError(
            f"need 1 <= data.min_words <= data.max_words, got min_words={min_words}, max_words={max_words}"
        )
    if num_examples < 1:
        raise ValueError(f"data.num_examples must be >= 1, got {num_examples}")
