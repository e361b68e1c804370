"""Questions as encoder inputs: ``<cls> question <sep> passage window <sep>``, and batches of them.

A passage longer than what fits beside the question is read in overlapping windows (BERT's "doc stride";
``stride`` is the number of tokens consecutive windows share, as in ``transformers``' ``stride``), so an
answer cut by one window's edge lies whole in the next. A window's targets are the answer's first and last
token when the whole answer lies in it, else ``<cls>`` (position 0) for both, which is also the target of
an unanswerable question (SQuAD 2.0, Devlin et al. 2018, section 4.3). Each token keeps the character span
it came from, so a predicted token span maps back to the exact text of the passage.

For training every window is an item of its own; for evaluation an item is a question with all its
windows, so a batch holds every window of its questions and the best span is chosen across them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from torch.nn.utils.rnn import pad_sequence

from lightning_llm.data.squad import QAExample

__all__ = ["EncodedQuestion", "QACollator", "Window", "encode_question", "training_items"]


class QATokenizer(Protocol):
    cls_id: int
    sep_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]: ...

    def encode_with_offsets(self, text: str) -> tuple[list[int], list[tuple[int, int]]]: ...


class Window(NamedTuple):
    input_ids: list[int]  # <cls> question <sep> passage tokens <sep>
    first: int  # the row position of the window's first passage token (segment 1 starts here)
    context_start: int  # that token's index among the passage's tokens
    start: int  # the answer's first token in the row; 0 (<cls>) when the answer is not in the window
    end: int  # the answer's last token in the row; 0 with start


class EncodedQuestion(NamedTuple):
    example: QAExample
    windows: list[Window]
    offsets: list[tuple[int, int]]  # the character span of each passage token


def encode_question(
    example: QAExample, tokenizer: QATokenizer, block_size: int, max_question_tokens: int, stride: int
) -> EncodedQuestion:
    """The question's windows over its passage; the target is the first reference answer."""
    question = tokenizer.encode(example.question)[:max_question_tokens]
    context, offsets = tokenizer.encode_with_offsets(example.context)
    room = block_size - len(question) - 3  # <cls>, <sep>, <sep>
    first = len(question) + 2
    span = _answer_tokens(example, offsets)
    windows = []
    for begin in _window_starts(len(context), room, stride):
        passage = context[begin : begin + room]
        ids = [tokenizer.cls_id, *question, tokenizer.sep_id, *passage, tokenizer.sep_id]
        start = end = 0
        if span is not None and begin <= span[0] and span[1] < begin + room:
            start, end = first + span[0] - begin, first + span[1] - begin
        windows.append(Window(ids, first, begin, start, end))
    return EncodedQuestion(example, windows, offsets)


def _window_starts(n_tokens: int, room: int, stride: int) -> list[int]:
    """Where each window begins: every ``room - stride`` tokens, the last one reaching the passage's end."""
    starts = [0]
    while starts[-1] + room < n_tokens:
        starts.append(starts[-1] + room - stride)
    return starts


def _answer_tokens(example: QAExample, offsets: list[tuple[int, int]]) -> tuple[int, int] | None:
    """The first and last passage token overlapping the first answer's characters; None when unanswerable."""
    if not example.answers:
        return None
    begin = example.starts[0]
    stop = begin + len(example.answers[0])
    inside = [i for i, (a, b) in enumerate(offsets) if a < stop and b > begin]
    if not inside:  # the tokenizer dropped the answer's characters (whitespace): nothing to point at
        raise ValueError(f"{example.source}: no token of the passage covers answer {example.answers[0]!r}")
    return inside[0], inside[-1]


def training_items(question: EncodedQuestion) -> list[EncodedQuestion]:
    """One item per window, so training shuffles and batches windows."""
    return [question._replace(windows=[window]) for window in question.windows]


@dataclass(frozen=True)
class QACollator:
    """Stacks items' windows into one padded batch:

    - ``input_ids``, ``attention_mask``, ``token_type_ids`` (R, T) for the R windows;
    - ``labels`` (R, 2): each window's start and end targets;
    - ``offsets`` (R, T, 2): each passage token's character span, -1 elsewhere;
    - ``question_of_row`` (R,): which of the batch's questions a window belongs to;
    - ``contexts``, ``answers`` (reference lists) and ``source_texts`` (the questions), one per question;
    - ``no_answer``: whether an empty answer is a valid prediction (SQuAD 2.0 data).
    """

    pad_id: int
    no_answer: bool

    def __call__(self, items: list[EncodedQuestion]) -> dict[str, object]:
        rows = [(q, window) for q, item in enumerate(items) for window in item.windows]
        ids = pad_sequence(
            [torch.tensor(w.input_ids) for _, w in rows], batch_first=True, padding_value=self.pad_id
        )
        positions = torch.arange(ids.size(1))
        lengths = torch.tensor([len(w.input_ids) for _, w in rows])
        firsts = torch.tensor([w.first for _, w in rows])
        offsets = torch.full((*ids.shape, 2), -1, dtype=torch.int64)
        for r, (q, window) in enumerate(rows):
            n = len(window.input_ids) - window.first - 1  # the window's passage tokens
            spans = items[q].offsets[window.context_start : window.context_start + n]
            offsets[r, window.first : window.first + n] = torch.tensor(spans, dtype=torch.int64).view(-1, 2)
        return {
            "input_ids": ids,
            "attention_mask": positions < lengths[:, None],
            "token_type_ids": ((positions >= firsts[:, None]) & (positions < lengths[:, None])).long(),
            "labels": torch.tensor([[w.start, w.end] for _, w in rows]),
            "offsets": offsets,
            "question_of_row": torch.tensor([q for q, _ in rows]),
            "contexts": [item.example.context for item in items],
            "answers": [list(item.example.answers) for item in items],
            "source_texts": [item.example.question for item in items],
            "no_answer": self.no_answer,
        }
