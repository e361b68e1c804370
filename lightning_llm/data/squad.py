"""Extractive question answering data in SQuAD's format (Rajpurkar et al. 2016, 2018): a passage (the
context), a question, and the answer as a span of the passage given by its text and character offset.

Two layouts are read: SQuAD's own JSON (``{"data": [{"paragraphs": [{"context", "qas": [{"id", "question",
"answers": [{"text", "answer_start"}], "is_impossible"}]}]}]}``) and JSON Lines with one question per line
(``{"id", "context", "question", "answers": {"text": [...], "answer_start": [...]}}``, the layout of the
Hugging Face ``squad`` dataset; a list of ``{"text", "answer_start"}`` objects is accepted too). Every
answer is checked against its context: an offset that does not point at the answer's text is refused,
naming the record. A question without an answer is SQuAD 2.0's "unanswerable": refused unless
``no_answer`` is set, in which case it is kept and the model learns to point at ``<cls>`` for it.

With no files, ``pydoc_questions`` makes a small set from Python's bundled documentation: cloze questions
(a sentence of a paragraph with one word replaced by "what") whose answer is that word in the paragraph.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from lightning_llm.data.corpus import SPLITS, split_by_key, split_paragraphs
from lightning_llm.data.sources import (
    SourceError,
    expand_paths,
    json_object,
    number_too_long,
    read_text_file,
)

__all__ = [
    "QAExample",
    "first_sentence",
    "pydoc_questions",
    "qa_fingerprint",
    "read_squad",
    "split_questions",
]


class QAExample(NamedTuple):
    id: str
    question: str
    context: str
    answers: tuple[str, ...]  # the reference answers; empty: the question has none (SQuAD 2.0)
    starts: tuple[int, ...]  # each answer's character offset in the context
    source: str  # where it was read ("dev.json: data[0].paragraphs[2].qas[1]"), for messages


# --------------------------------------------------------------------------- reading files


def read_squad(patterns: list[str], no_answer: bool = False) -> list[QAExample]:
    """The questions of SQuAD ``.json`` files and JSON Lines ``.jsonl`` files, in file order."""
    examples: list[QAExample] = []
    for path in expand_paths(patterns):
        suffix = path.suffix.lower()
        if suffix == ".json":
            found = list(_read_squad_json(path, no_answer))
        elif suffix == ".jsonl":
            found = list(_read_squad_jsonl(path, no_answer))
        else:
            raise SourceError(f"{path}: unsupported file type '{suffix}'; use SQuAD .json or .jsonl")
        if not found:
            raise SourceError(f"{path}: holds no questions")
        examples.extend(found)
    return examples


def _read_squad_json(path: Path, no_answer: bool) -> Iterator[QAExample]:
    try:
        document = json.loads(read_text_file(path))
    except json.JSONDecodeError as err:
        lines = "; one object a line is JSON Lines: name the file .jsonl" if err.msg == "Extra data" else ""
        raise SourceError(f"{path}: not valid JSON ({err.msg} at line {err.lineno}){lines}") from None
    except ValueError as err:  # a number of more digits than Python converts
        raise SourceError(number_too_long(str(path), err)) from None
    except RecursionError:  # Python's parser recurses once per level of nesting
        raise SourceError(f"{path}: JSON nested too deeply to read") from None
    articles = document.get("data") if isinstance(document, dict) else None
    if not isinstance(articles, list):
        raise SourceError(f'{path}: expected SQuAD\'s layout, an object with a "data" list of articles')
    for a, article in enumerate(articles):
        for p, paragraph in enumerate(_list(article, "paragraphs", f"{path}: data[{a}]")):
            where = f"{path}: data[{a}].paragraphs[{p}]"
            for q, qa in enumerate(_list(paragraph, "qas", where)):
                yield _example(paragraph.get("context"), qa, f"{where}.qas[{q}]", no_answer)


def _list(record: object, key: str, where: str) -> list:
    value = record.get(key) if isinstance(record, dict) else None
    if not isinstance(value, list):
        raise SourceError(f"{where}: expected an object with a '{key}' list")
    return value


def _read_squad_jsonl(path: Path, no_answer: bool) -> Iterator[QAExample]:
    # split on "\n" only: str.splitlines would also break on U+2028 and friends inside JSON strings
    for lineno, line in enumerate(read_text_file(path).split("\n"), start=1):
        if line.strip():
            where = f"{path}:{lineno}"
            record = json_object(line, where, "with context, question and answers")
            yield _example(record.get("context"), record, where, no_answer)


def _example(context: object, qa: dict, where: str, no_answer: bool) -> QAExample:
    """One question, its context and its answers, checked."""
    if not isinstance(qa, dict):
        raise SourceError(f"{where}: expected a question object, got {type(qa).__name__}")
    for name, value in (("context", context), ("question", qa.get("question"))):
        if not isinstance(value, str) or not value.strip():
            raise SourceError(f"{where}: '{name}' must be a non-empty string, got {value!r}")
    answers = _answers(qa.get("answers", []), where)
    impossible = qa.get("is_impossible", False)
    if not isinstance(impossible, bool):  # "false" would be true
        raise SourceError(f"{where}: is_impossible must be true or false (JSON booleans), got {impossible!r}")
    if impossible and answers:
        raise SourceError(f"{where}: is_impossible is true but answers are given; keep one of the two")
    if not answers and not no_answer:
        raise SourceError(
            f"{where}: the question has no answer; SQuAD 1.1 data needs one "
            "(set data.no_answer=true to keep SQuAD 2.0's unanswerable questions)"
        )
    for text, start in answers:
        if context[start : start + len(text)] != text:
            found = context.find(text)
            hint = f"; the text occurs at {found}" if found >= 0 else "; the text is not in the context"
            raise SourceError(
                f"{where}: answer {text!r} does not match the context at answer_start={start} "
                f"(which reads {context[start : start + len(text)]!r}){hint}"
            )
    qid = qa.get("id", where)
    return QAExample(
        str(qid),
        qa["question"],
        context,
        tuple(text for text, _ in answers),
        tuple(start for _, start in answers),
        where,
    )


def _answers(raw: object, where: str) -> list[tuple[str, int]]:
    """(text, answer_start) pairs from SQuAD's list of objects or the Hugging Face dict of two lists."""
    if isinstance(raw, dict):
        texts, starts = raw.get("text"), raw.get("answer_start")
        if not isinstance(texts, list) or not isinstance(starts, list) or len(texts) != len(starts):
            raise SourceError(f"{where}: 'answers' must hold equally long 'text' and 'answer_start' lists")
        raw = [{"text": t, "answer_start": s} for t, s in zip(texts, starts, strict=True)]
    if not isinstance(raw, list):
        raise SourceError(f"{where}: 'answers' must be a list of {{text, answer_start}} objects")
    answers = []
    for i, answer in enumerate(raw):
        text = answer.get("text") if isinstance(answer, dict) else None
        start = answer.get("answer_start") if isinstance(answer, dict) else None
        if not isinstance(text, str) or not text.strip():
            raise SourceError(f"{where}: answers[{i}] needs a non-empty 'text', got {text!r}")
        if isinstance(start, bool) or not isinstance(start, int) or start < 0:
            raise SourceError(f"{where}: answers[{i}] needs 'answer_start' >= 0, got {start!r}")
        answers.append((text, start))
    return answers


# --------------------------------------------------------------------------- a set made from pydoc

_WORD = re.compile(r"\b[A-Za-z][a-z]{3,}\b")  # a plain word of 4+ letters (no identifiers or numbers)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")
# fmt: off
_COMMON = frozenset((  # too common to make a question about
    "that", "this", "with", "from", "have", "which", "when", "there", "their", "they", "then", "than",
    "these", "those", "will", "would", "should", "could", "been", "being", "into", "also", "only", "such",
    "some", "more", "most", "other", "each", "every", "what", "where", "were", "your", "many", "must",
))
# fmt: on


def pydoc_questions(
    documents: list[str], per_paragraph: int = 16, per_sentence: int = 3, seed: int = 0
) -> list[QAExample]:
    """Cloze questions on the prose paragraphs of ``documents``: a sentence of the paragraph with one word
    (4+ letters, not a common one, occurring once in the paragraph, so the answer is unambiguous) replaced
    by "what"; the answer is that word, at its offset. At most ``per_paragraph`` questions per paragraph,
    from different sentences, chosen with ``seed``."""
    examples = []
    for d, document in enumerate(documents):
        for p, paragraph in enumerate(split_paragraphs(document)):
            if not 200 <= len(paragraph) <= 1500 or not _is_prose(paragraph):
                continue
            rng = random.Random(f"{seed}-{d}-{p}")
            for n, (question, answer, start) in enumerate(
                _cloze(paragraph, rng, per_sentence)[:per_paragraph]
            ):
                where = f"pydoc document {d} paragraph {p} question {n}"
                example = QAExample(f"pydoc-{d}-{p}-{n}", question, paragraph, (answer,), (start,), where)
                examples.append(example)
    return examples


def _is_prose(paragraph: str) -> bool:
    """Not an example session or a grammar rule, which make poor questions."""
    return not paragraph.lstrip().startswith((">>>", "...")) and "::=" not in paragraph


def _cloze(paragraph: str, rng: random.Random, per_sentence: int) -> list[tuple[str, str, int]]:
    """(question, answer, offset) for the paragraph's sentences that have a suitable word, shuffled."""
    counts: dict[str, int] = {}
    for word in _WORD.findall(paragraph):
        counts[word] = counts.get(word, 0) + 1
    found = []
    position = 0
    for sentence in _SENTENCE_END.split(paragraph):
        offset = paragraph.index(sentence, position)
        position = offset + len(sentence)
        words = [m for m in _WORD.finditer(sentence) if counts[m.group()] == 1 and m.group() not in _COMMON]
        if len(sentence.split()) < 6:
            continue
        for word in rng.sample(words, min(len(words), per_sentence)):
            question = f"{sentence[: word.start()]}what{sentence[word.end() :]}"
            found.append((" ".join(question.split()), word.group(), offset + word.start()))
    rng.shuffle(found)
    return found


def first_sentence(context: str) -> str:
    """The passage's first sentence: the answer of the simplest baseline a model must beat."""
    return _SENTENCE_END.split(context.strip(), maxsplit=1)[0]


# --------------------------------------------------------------------------- splits


def split_questions(
    examples: list[QAExample], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[QAExample]]:
    """Train/val/test by a stable hash of each question's context, so every question on one passage is in
    the same split and no evaluation passage was read in training."""
    return split_by_key(
        examples, lambda e: e.context, val_fraction, test_fraction, seed, "questions", "passages"
    )


def qa_fingerprint(splits: dict[str, list[QAExample]], params: dict) -> str:
    digest = hashlib.sha256(json.dumps({"rule": 1, **params}, sort_keys=True).encode())
    for split in SPLITS:
        digest.update(f"\0{split}\0{len(splits[split])}\0".encode())
        for example in splits[split]:
            digest.update(json.dumps(example[:5]).encode())
            digest.update(b"\0")
    return digest.hexdigest()
