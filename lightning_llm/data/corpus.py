"""A deterministic train/val/test split of a corpus, by paragraph or by document.

Every paragraph (blank-line separated) of a plain text file goes to a split chosen by a stable hash of its
text and a seed; every record of a JSON Lines, Parquet or ``datasets`` corpus (a document) goes whole to the
split its own hash picks, so no document is seen in training and scored in validation. Either way: the three
splits share the distribution of the whole corpus (no "the last 5% of the files are the validation set"
skew); the same text never appears in two splits (duplicates hash alike); and the split is identical on every
machine and Python version (hashlib, never the salted built-in ``hash``). A text file (a book, a dump) is
often one long document, which a split by file could only put whole in one split.

Consecutive paragraphs of one document that land in the same split stay together as one text, so the
model still sees multi-paragraph context; the token cache puts an end-of-sequence token between texts.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import re
from collections.abc import Callable, Hashable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

__all__ = [
    "SPLITS",
    "CorpusTooSmallError",
    "SplitCorpus",
    "assign_split",
    "check_fraction",
    "check_paragraph_counts",
    "split_by_key",
    "split_corpus",
    "split_paragraphs",
    "warn_shared_texts",
]

SPLITS = ("train", "val", "test")
BY = ("paragraph", "document")  # what goes whole to one split
# Only a text's first SPLIT_KEY_CHARS characters are hashed: a streamed paragraph longer than that is
# assigned (and written) before its end is read. Texts sharing so long a start share a split, as they should.
SPLIT_KEY_CHARS = 1 << 20
_SPLIT_RULE_VERSION = 2  # bump when the paragraph or hashing rule changes, to invalidate cached tokens
_BLANK_LINES = re.compile(r"\n\s*\n")  # a newline, then whitespace-only lines, then a newline
_MAX_FRACTION = 0.5
T = TypeVar("T")
log = logging.getLogger(__name__)


class CorpusTooSmallError(ValueError):
    """The corpus has too few paragraphs to give every requested split some text."""


@dataclass(frozen=True)
class SplitCorpus:
    """The texts of each split in corpus order, and a fingerprint of them for cache keys."""

    texts: dict[str, list[str]]
    fingerprint: str


def check_split(split: str) -> None:
    """Refuse a split name other than train, val and test."""
    if split not in SPLITS:
        raise ValueError(f"unknown split '{split}'; valid splits: {', '.join(SPLITS)}")


def check_fraction(key: str, value: float) -> None:
    """Raise unless ``value`` is a usable split fraction; ``key`` names it in the message."""
    if not 0.0 <= value < _MAX_FRACTION:
        raise ValueError(f"{key} must be in [0, {_MAX_FRACTION}), got {value}")


def split_paragraphs(document: str) -> list[str]:
    """The non-blank paragraphs of ``document``, leading indentation kept (it matters in code)."""
    pieces = _BLANK_LINES.split(document)
    return [piece.strip("\n").rstrip() for piece in pieces if piece.strip()]


def assign_split(paragraph: str, *, val_fraction: float, test_fraction: float, seed: int) -> str:
    """The split of one paragraph (or document): a pure function of its text (its first
    ``SPLIT_KEY_CHARS`` characters), the fractions and the seed."""
    digest = hashlib.sha256(f"{seed}\0{paragraph[:SPLIT_KEY_CHARS]}".encode()).digest()
    u = int.from_bytes(digest[:8], "big") / 2**64  # uniform in [0, 1)
    if u < test_fraction:
        return "test"
    if u < test_fraction + val_fraction:
        return "val"
    return "train"


def split_corpus(
    documents: list[str],
    *,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    seed: int = 1234,
    by: str = "paragraph",
) -> SplitCorpus:
    """Split ``documents`` into train/val/test texts, each paragraph by its own hash (``by="paragraph"``:
    text files) or each document whole by the hash of the document (``by="document"``: records); a fraction
    of 0 leaves that split empty on purpose."""
    check_fraction("val_fraction", val_fraction)
    check_fraction("test_fraction", test_fraction)
    if by not in BY:
        raise ValueError(f"unknown split unit '{by}'; valid: {', '.join(BY)}")
    texts: dict[str, list[str]] = {split: [] for split in SPLITS}
    counts = dict.fromkeys(SPLITS, 0)
    for document in documents:
        for split, run in _runs(document, val_fraction, test_fraction, seed, by):
            texts[split].append("\n\n".join(run))
            counts[split] += len(run)
    check_paragraph_counts(counts, {"val": val_fraction, "test": test_fraction})
    return SplitCorpus(texts, _fingerprint(texts, val_fraction, test_fraction, seed, by))


def _runs(
    document: str, val_fraction: float, test_fraction: float, seed: int, by: str
) -> Iterator[tuple[str, list]]:
    """Maximal runs of consecutive paragraphs of ``document`` that share a split."""
    fractions = {"val_fraction": val_fraction, "test_fraction": test_fraction, "seed": seed}
    whole = assign_split(document, **fractions) if by == "document" else None
    labelled = [(whole or assign_split(p, **fractions), p) for p in split_paragraphs(document)]
    for split, run in itertools.groupby(labelled, key=lambda item: item[0]):
        yield split, [paragraph for _, paragraph in run]


def check_paragraph_counts(counts: dict[str, int], fractions: dict[str, float], source: str = "") -> None:
    """Refuse a split that left train without paragraphs, or a val/test split with a non-zero fraction;
    ``source`` names the corpus (its paths) in the message about a corpus with no text."""
    total = sum(counts.values())
    if total == 0:
        named = f" ({source})" if source else ""
        raise CorpusTooSmallError(
            f"the corpus{named} holds no text: every document is blank, or there are no rows or records"
        )
    if counts["train"] == 0:
        raise CorpusTooSmallError(
            f"corpus too small: all {total} paragraphs went to val/test, none to train; "
            "add text or lower data.val_fraction / data.test_fraction"
        )
    # A text file without blank lines is one paragraph, however long: adding text would not help.
    few = (
        " (a paragraph ends at a blank line: separate the text's paragraphs with blank lines)"
        if total < 20
        else ""
    )
    for split, fraction in fractions.items():
        if fraction > 0 and counts[split] == 0:
            raise CorpusTooSmallError(
                f"corpus too small: its {total} paragraphs gave the {split} split none "
                f"({split}_fraction={fraction}); add text, raise data.{split}_fraction, "
                f"or set data.{split}_fraction=0 to run without a {split} split{few}"
            )


def _fingerprint(
    texts: dict[str, list[str]], val_fraction: float, test_fraction: float, seed: int, by: str
) -> str:
    params = {"rule": _SPLIT_RULE_VERSION, "val": val_fraction, "test": test_fraction, "seed": seed}
    params |= {"by": by} if by != "paragraph" else {}
    digest = hashlib.sha256(json.dumps(params, sort_keys=True).encode())
    for split in SPLITS:
        digest.update(f"\0{split}\0{len(texts[split])}\0".encode())
        for text in texts[split]:
            data = text.encode()
            digest.update(len(data).to_bytes(8, "little"))  # length prefix: ["ab"] and ["a", "b"] differ
            digest.update(data)
    return digest.hexdigest()


def check_split_sizes(
    splits: dict[str, list], fractions: dict[str, float], noun: str, more: str = ""
) -> None:
    """Refuse a split of ``noun`` (examples, pairs) that left train empty, or a val/test split with a non-zero
    fraction empty, saying what to change; ``more`` is one further remedy (``{split}`` is filled in)."""
    total = sum(len(items) for items in splits.values())
    if not splits["train"]:
        raise CorpusTooSmallError(
            f"too few {noun}: all {total} went to val/test, none to train; "
            f"add {noun} or lower data.val_fraction / data.test_fraction"
        )
    for split, fraction in fractions.items():
        if fraction > 0 and not splits[split]:
            raise CorpusTooSmallError(
                f"too few {noun}: the {total} {noun} gave the {split} split none "
                f"({split}_fraction={fraction}); add {noun}, raise data.{split}_fraction, "
                f"{more.format(split=split)}or set "
                f"data.{split}_fraction=0 to run without a {split} split"
            )


def split_by_key(
    items: Iterable[T],
    key: Callable[[T], str],
    val_fraction: float,
    test_fraction: float,
    seed: int,
    noun: str,
    key_name: str = "keys",
) -> dict[str, list[T]]:
    """Train/val/test lists of ``items``, each by the stable hash of ``key(item)`` (``assign_split``), so
    items with equal keys share a split; refused as ``check_split_sizes`` refuses (``noun``: the items)."""
    check_fraction("data.val_fraction", val_fraction)
    check_fraction("data.test_fraction", test_fraction)
    splits: dict[str, list[T]] = {split: [] for split in SPLITS}
    keys: set[str] = set()
    for item in items:
        keys.add(item_key := key(item))
        split = assign_split(item_key, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
        splits[split].append(item)
    try:
        check_split_sizes(splits, {"val": val_fraction, "test": test_fraction}, noun)
    except CorpusTooSmallError as error:
        total = sum(map(len, splits.values()))
        if len(keys) * 10 > total:
            raise
        raise CorpusTooSmallError(  # adding more of the same would not help: say why they stay together
            f"{error} (the {total} {noun} share only {len(keys)} distinct {key_name}; {noun} that share "
            f"one stay in one split)"
        ) from None
    return splits


def warn_shared_texts(splits: dict[str, list[T]], key: Callable[[T], Hashable], noun: str, what: str) -> None:
    """Warn, with a count, of val/test ``noun`` whose ``key`` (``what``: their text) a train item has too.
    Splits given as files can share such exact duplicates; a hash split never does. Only warned of: real
    datasets hold a few, though each scores what the model memorised rather than what it learned."""
    train = {key(item) for item in splits["train"]}  # a set of the texts: hashed, not compared pairwise
    for split in ("val", "test"):
        shared = sum(key(item) in train for item in splits[split])
        if shared:
            log.warning(
                "%s split: %d of its %d %s have a %s that the train split has too (exact duplicates); "
                "their scores measure memory, not generalisation",
                split,
                shared,
                len(splits[split]),
                noun,
                what,
            )
