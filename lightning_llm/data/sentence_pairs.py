"""Sentence pairs for BERT's pretraining: masked LM plus next-sentence prediction (Devlin et al. 2018, 3.1).

Each example is two consecutive pieces of one document (A, then the piece that follows it: label 0,
"IsNext") or, half of the time, A and a piece of another document (label 1, "NotNext"), laid out as
``<cls> A <sep> B <sep>`` with segment ids 0 for the first part and 1 for the second. Pieces are the
documents' paragraphs (this corpus's "sentences" are short; BERT packed several sentences into each segment).
Pairs are drawn with a fixed seed, per split, from paragraphs split as every text corpus is (by a stable
hash, ``lightning_llm.data.corpus``), so an evaluation pair never shares a paragraph with a training one.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from torch.nn.utils.rnn import pad_sequence

from lightning_llm.data.corpus import SPLITS, assign_split, check_split_sizes, split_paragraphs

__all__ = [
    "IS_NEXT",
    "NOT_NEXT",
    "EncodedPair",
    "PairCollator",
    "SentencePair",
    "encode_pair",
    "pairs_fingerprint",
    "sentence_pairs",
]

IS_NEXT, NOT_NEXT = 0, 1  # BERT's (and transformers' next_sentence_label) convention


class SentencePair(NamedTuple):
    first: str
    second: str
    label: int  # IS_NEXT or NOT_NEXT


class PairTokenizer(Protocol):
    cls_id: int
    sep_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]: ...


def sentence_pairs(
    documents: Sequence[str], *, val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[SentencePair]]:
    """Per split: one pair for every paragraph whose successor in its document is in the same split, its
    second part that successor or (with probability 1/2, seeded) a paragraph of another document of the
    split. A split whose paragraphs come from one document is refused: it has no NotNext pair to make."""
    runs: dict[str, list[tuple[int, list[str]]]] = {split: [] for split in SPLITS}  # (document, paragraphs)
    for number, document in enumerate(documents):
        run: list[str] = []
        run_split = "train"  # the split of the paragraphs in run (set before run is non-empty)
        for paragraph in split_paragraphs(document):
            split = assign_split(paragraph, val_fraction=val_fraction, test_fraction=test_fraction, seed=seed)
            if run and split != run_split:  # the next paragraph went elsewhere: the run of successors ends
                runs[run_split].append((number, run))
                run = []
            run_split = split
            run.append(paragraph)
        if run:
            runs[run_split].append((number, run))
    pairs: dict[str, list[SentencePair]] = {}
    for split in SPLITS:
        rng = random.Random(f"{seed}-{split}")
        by_document: dict[int, list[str]] = {}
        for number, paragraphs in runs[split]:
            by_document.setdefault(number, []).extend(paragraphs)
        others = list(by_document)
        position = {number: i for i, number in enumerate(others)}
        pairs[split] = []
        for number, paragraphs in runs[split]:
            for first, following in zip(paragraphs, paragraphs[1:], strict=False):
                if len(others) > 1 and rng.random() < 0.5:
                    pick = rng.randrange(len(others) - 1)
                    pick += pick >= position[number]  # any document but this one
                    pairs[split].append(SentencePair(first, rng.choice(by_document[others[pick]]), NOT_NEXT))
                else:
                    pairs[split].append(SentencePair(first, following, IS_NEXT))
        if pairs[split] and len(others) < 2:
            raise ValueError(
                f"next-sentence prediction: the {split} split's paragraphs all come from one document, so it "
                "has no NotNext pair (the second part from another document); give several documents "
                "(files) in data.paths"
            )
    check_split_sizes(pairs, {"val": val_fraction, "test": test_fraction}, "sentence pairs")
    return pairs


def pairs_fingerprint(pairs: dict[str, list[SentencePair]]) -> str:
    digest = hashlib.sha256(b"sentence-pairs-v1")
    for split in SPLITS:
        digest.update(json.dumps(pairs[split]).encode())
    return digest.hexdigest()


class EncodedPair(NamedTuple):
    input_ids: list[int]
    token_type_ids: list[int]
    label: int


def encode_pair(pair: SentencePair, tokenizer: PairTokenizer, block_size: int) -> EncodedPair:
    """``<cls> A <sep> B <sep>`` in at most ``block_size`` tokens: the longer part is cut first, one token at
    a time from its end, as BERT's ``truncate_seq_pair`` does."""
    first, second = tokenizer.encode(pair.first), tokenizer.encode(pair.second)
    room = block_size - 3
    while len(first) + len(second) > room:
        (first if len(first) >= len(second) else second).pop()
    ids = [tokenizer.cls_id, *first, tokenizer.sep_id, *second, tokenizer.sep_id]
    segments = [0] * (len(first) + 2) + [1] * (len(second) + 1)
    return EncodedPair(ids, segments, pair.label)


@dataclass(frozen=True)
class PairCollator:
    """Pads a batch to its longest pair: ``input_ids``, ``attention_mask``, ``token_type_ids`` (B, T) and
    the next-sentence ``labels`` (B,)."""

    pad_id: int

    def __call__(self, pairs: list[EncodedPair]) -> dict[str, torch.Tensor]:
        ids = pad_sequence(
            [torch.tensor(p.input_ids) for p in pairs], batch_first=True, padding_value=self.pad_id
        )
        segments = pad_sequence([torch.tensor(p.token_type_ids) for p in pairs], batch_first=True)
        lengths = torch.tensor([len(p.input_ids) for p in pairs])
        return {
            "input_ids": ids,
            "attention_mask": torch.arange(ids.size(1)) < lengths[:, None],
            "token_type_ids": segments,
            "labels": torch.tensor([p.label for p in pairs]),
        }
