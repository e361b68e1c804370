"""Sequence-classification data: labelled texts -> ``<cls>`` + tokens -> dynamically padded batches.

A run goes: ``texts("train")`` (the framework trains the tokenizer on it; ``num_classes`` and ``labels`` are
known from here on) -> ``setup(stage)`` (tokenize the splits the stage needs, once) -> DataLoaders of
``{"input_ids" (B, T), "attention_mask" (B, T) bool, "labels" (B,) int64}``. Each sequence is ``<cls>``
followed by the text's tokens, cut to ``block_size``; a batch is padded with ``<pad>`` only to its longest
sequence (dynamic padding), and ``attention_mask`` is True at the real tokens.

The class index of a label is its position in the sorted distinct labels of the train split (numeric order
when every label is an integer, so labels 0..K-1 keep their values). Corpora for classification are small,
so the examples stay in memory and nothing is cached on disk.

The ``pydoc_topics`` and ``classification`` data plugins (``lightning_llm.data.datamodule``) build a
``ClassificationDataModule`` (``lightning_llm.data.classification_module``) from what is read here.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch
from torch.nn.utils.rnn import pad_sequence
from torch.utils.data import Dataset

from lightning_llm.data.corpus import (
    SPLITS,
    assign_split,
    check_fraction,
    check_split_sizes,
    split_paragraphs,
    warn_shared_texts,
)
from lightning_llm.data.sources import SourceError, delimited_rows, expand_paths, json_object, read_text_file

__all__ = [
    "EncodedExamples",
    "Example",
    "LabelError",
    "PadCollate",
    "check_labels",
    "describe_labels",
    "examples_fingerprint",
    "label_names",
    "pydoc_topic_examples",
    "read_examples",
    "split_examples",
]

_SPLIT_RULE_VERSION = 1  # bump when the example or hashing rule changes, to change the fingerprint
_INTEGER = re.compile(r"-?\d{1,4000}")  # longer: sorted as text (Python reads at most 4,300 digits)
_LABELS_SHOWN = 20  # labels listed in a message, at most
_LABELS_LOGGED = 200  # labels listed in the log line that shows a run's labels, at most


class LabelError(SourceError):
    """A val or test label that no train example has: the classifier has no output for it."""


class ClassificationTokenizer(Protocol):
    """The part of a tokenizer the module uses."""

    pad_id: int
    cls_id: int

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...


@dataclass(frozen=True)
class Example:
    text: str
    label: str
    source: str  # where it was read ("reviews.tsv:12"), for error messages


# --------------------------------------------------------------------------- reading examples


def read_examples(patterns: list[str], text_field: str = "text", label_field: str = "label") -> list[Example]:
    """The examples of ``.jsonl`` files (one JSON object per line) and ``.tsv`` / ``.csv`` files (a header
    row naming the columns), in file order. TSV is read unquoted (GLUE's convention: quotes are text), CSV
    with the usual double-quote quoting."""
    examples: list[Example] = []
    for path in expand_paths(patterns):
        suffix = path.suffix.lower()
        if suffix == ".jsonl":
            examples.extend(_read_jsonl(path, text_field, label_field))
        elif suffix in (".tsv", ".csv"):
            examples.extend(_read_delimited(path, text_field, label_field))
        else:
            raise SourceError(f"{path}: unsupported file type '{suffix}'; use .jsonl, .tsv or .csv")
    return examples


def _read_jsonl(path: Path, text_field: str, label_field: str) -> list[Example]:
    examples = []
    # split on "\n" only: str.splitlines would also break on U+2028 and friends inside JSON strings
    for lineno, line in enumerate(read_text_file(path).split("\n"), start=1):
        if line.strip():
            record = json_object(line, f"{path}:{lineno}")
            examples.append(_example(record, text_field, label_field, f"{path}:{lineno}"))
    return _non_empty(examples, path)


def _read_delimited(path: Path, text_field: str, label_field: str) -> list[Example]:
    """The examples of a TSV or CSV file (read by ``delimited_rows``)."""
    columns, rows = delimited_rows(path, read_text_file(path))
    for field, key in ((text_field, "text_field"), (label_field, "label_field")):
        if field not in columns:
            present = ", ".join(columns) or "(none)"
            raise SourceError(
                f"{path}:1: no column '{field}' in the header; columns: {present} (set data.{key})"
            )
    examples = []
    for where, row in rows:
        if "\n" in (row.get(label_field) or ""):
            raise SourceError(
                f"{where}: the '{label_field}' value runs over several lines: a quote opened and not closed?"
            )
        examples.append(_example(row, text_field, label_field, where))
    return _non_empty(examples, path)


def _example(record: dict, text_field: str, label_field: str, where: str) -> Example:
    """One example from a parsed JSON object or CSV row, with the text and label checked."""
    for field, key in ((text_field, "text_field"), (label_field, "label_field")):
        if record.get(field) is None:
            present = ", ".join(k for k, v in record.items() if v is not None) or "(none)"
            raise SourceError(f"{where}: no '{field}' value; fields present: {present} (set data.{key})")
    text, label = record[text_field], record[label_field]
    if not isinstance(text, str) or not text.strip():
        raise SourceError(f"{where}: '{text_field}' must be a non-empty string, got {text!r}")
    if isinstance(label, bool) or not isinstance(label, str | int):
        raise SourceError(f"{where}: '{label_field}' must be a string or an integer, got {label!r}")
    label = str(label).strip()
    if not label:
        raise SourceError(f"{where}: '{label_field}' is empty")
    return Example(text, label, where)


def _non_empty(examples: list[Example], path: Path) -> list[Example]:
    if not examples:
        raise SourceError(f"{path}: holds no examples")
    return examples


def pydoc_topic_examples(num_topics: int = 8) -> list[Example]:
    """Paragraphs of Python's bundled pydoc topics, labelled by their topic, for the ``num_topics`` topics
    with the most paragraphs. A paragraph found in several of them is left out (its label is ambiguous);
    one repeated within a topic is kept once."""
    from pydoc_data.topics import topics

    paragraphs = {name: list(dict.fromkeys(split_paragraphs(topics[name]))) for name in sorted(topics)}
    if not 2 <= num_topics <= len(paragraphs):
        raise ValueError(
            f"data.num_topics must be in [2, {len(paragraphs)}] (the pydoc topics), got {num_topics}"
        )
    chosen = sorted(paragraphs, key=lambda name: (-len(paragraphs[name]), name))[:num_topics]
    owners: dict[str, int] = {}
    for name in chosen:
        for paragraph in paragraphs[name]:
            owners[paragraph] = owners.get(paragraph, 0) + 1
    return [
        Example(paragraph, name, f"pydoc topic '{name}' paragraph {i}")
        for name in sorted(chosen)
        for i, paragraph in enumerate(paragraphs[name])
        if owners[paragraph] == 1
    ]


# --------------------------------------------------------------------------- splits and labels


def split_examples(
    train: list[Example],
    val: list[Example] | None = None,
    test: list[Example] | None = None,
    *,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    seed: int = 1234,
) -> dict[str, list[Example]]:
    """The three splits: ``val`` / ``test`` as given, or, where None, held out of ``train`` by the stable
    text hash of ``lightning_llm.data.corpus`` (equal texts share a split, on every machine)."""
    check_fraction("data.val_fraction", val_fraction)
    check_fraction("data.test_fraction", test_fraction)
    fractions = {"val": val_fraction if val is None else 0.0, "test": test_fraction if test is None else 0.0}
    splits: dict[str, list[Example]] = {"train": [], "val": list(val or []), "test": list(test or [])}
    for example in train:
        split = assign_split(
            example.text, val_fraction=fractions["val"], test_fraction=fractions["test"], seed=seed
        )
        splits[split].append(example)
    check_split_sizes(splits, fractions, "examples", "pass data.{split}_paths, ")
    warn_shared_texts(splits, lambda example: example.text, "examples", "text")
    return splits


def label_names(examples: list[Example]) -> list[str]:
    """The sorted distinct labels: numerically when all are integers ("2" before "10"), else as strings.
    Integers that are equal in value ("1" and "01", "0" and "-0") are ordered as strings, so the order (the
    class indices) never depends on the process's string hashing."""
    labels = set(example.label for example in examples)
    if all(_INTEGER.fullmatch(label) for label in labels):
        return sorted(labels, key=lambda label: (int(label), label))
    return sorted(labels)


def check_labels(splits: dict[str, list[Example]], labels: list[str], learned: bool = False) -> None:
    """Raise LabelError when the train split has fewer than two labels (nothing to tell apart: the loss is
    0 from the first step), or at the first val/test example whose label the train split lacks. ``learned``:
    ``labels`` are a trained model's, and every split is held to them."""
    if len(labels) < 2:
        first = splits["train"][0].source if splits["train"] else "the data"
        raise LabelError(
            f"{first}: the train split has {len(labels)} label ({', '.join(labels) or 'none'}); "
            "classification needs at least two"
        )
    known = set(labels)
    for split in SPLITS if learned else ("val", "test"):
        for example in splits[split]:
            if example.label not in known:
                where = "the labels the model learned" if learned else "the train split"
                raise LabelError(
                    f"{example.source}: {split} label '{example.label}' does not occur in {where}; "
                    f"valid labels: {_some(labels)}"
                )


def describe_labels(labels: list[str]) -> str:
    """``labels (2): neg, pos``: what a run logs once, so a misspelt label (a class of its own) shows."""
    return f"labels ({len(labels)}): {_some(labels, _LABELS_LOGGED)}"


def _some(labels: list[str], shown: int = _LABELS_SHOWN) -> str:
    """The first ``shown`` of ``labels``, comma-separated, and how many more there are."""
    more = f", ... {len(labels) - shown} more" if len(labels) > shown else ""
    return ", ".join(labels[:shown]) + more


def examples_fingerprint(splits: dict[str, list[Example]], params: dict) -> str:
    """A hash of the split examples and ``params``: same value, same data, on any machine."""
    digest = hashlib.sha256(json.dumps({"rule": _SPLIT_RULE_VERSION, **params}, sort_keys=True).encode())
    for split in SPLITS:
        digest.update(f"\0{split}\0{len(splits[split])}\0".encode())
        for example in splits[split]:
            for value in (example.text, example.label):
                data = value.encode()
                digest.update(len(data).to_bytes(8, "little"))  # length prefix: no two records collide
                digest.update(data)
    return digest.hexdigest()


# --------------------------------------------------------------------------- tensors


class EncodedExamples(Dataset):
    """Item ``i`` is (token ids (L,) int64 starting with ``<cls>``, class index)."""

    def __init__(self, token_ids: list[list[int]], labels: list[int]) -> None:
        if len(token_ids) != len(labels):
            raise ValueError(f"{len(token_ids)} token sequences but {len(labels)} labels")
        self.token_ids = [torch.tensor(ids, dtype=torch.int64) for ids in token_ids]
        self.labels = labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        return self.token_ids[index], self.labels[index]


class PadCollate:
    """Stacks (ids, label) items into a batch padded with ``pad_id`` to its longest sequence."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, items: list[tuple[torch.Tensor, int]]) -> dict[str, torch.Tensor]:
        sequences = [ids for ids, _ in items]
        input_ids = pad_sequence(sequences, batch_first=True, padding_value=self.pad_id)  # (B, T)
        lengths = torch.tensor([len(ids) for ids in sequences])  # (B,)
        attention_mask = torch.arange(input_ids.size(1))[None, :] < lengths[:, None]  # (B, T)
        labels = torch.tensor([label for _, label in items], dtype=torch.int64)  # (B,)
        return {"input_ids": input_ids, "attention_mask": attention_mask, "labels": labels}
