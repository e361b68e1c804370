"""Cut over-long texts into bounded pieces before a tokenizer sees them, and group pieces into batches.

A Hugging Face tokenizer holds all of one input's words, offsets and token strings in memory at once, on one
core: a single 30 MB line took 6.8 GB and over a minute. Pieces of at most ``MAX_PIECE_CHARS`` characters,
encoded ``MAX_BATCH_CHARS`` at a time with ``encode_batch``, bound that memory and use every core.

Where a piece ends matters. A cut falls just before a space that is followed by a non-space character, where
every built-in tokenizer already has a word boundary: byte_bpe and bpe (GPT-2's split gives each word the one
space before it), wordpiece (splits at whitespace), unigram (Metaspace starts a word at each space) and char
(any cut is exact) then produce exactly the tokens of the whole text. Failing that, a cut falls before a tab,
newline or other ASCII whitespace followed by a non-space: still exact for all but unigram, whose Metaspace
marks the start of every input as a word start (one extra ``▁``). A window with no whitespace at all is cut
hard at ``MAX_PIECE_CHARS``, which splits one "word" in two for every tokenizer but char. A ``pretrained``
tokenizer whose normalizer or pre-tokenizer treats the start of its input specially (Llama's ``Prepend("▁")``
without a splitting pre-tokenizer, say) may also differ by a token at each cut, once per ``MAX_PIECE_CHARS``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import NamedTuple

__all__ = [
    "MAX_BATCH_CHARS",
    "MAX_PIECE_CHARS",
    "Piece",
    "piece_batches",
    "pieces_of",
    "settled_pieces",
    "text_pieces",
]

# Encoding takes some 180 (byte_bpe) to 400 (char) bytes of memory per character of the input, measured.
# 64 KiB pieces cost at most ~25 MB each and cuts stay rare (one per ~10k words); a batch of 16 of them, one
# per core of a typical node, stays near 400 MB however long the texts are.
MAX_PIECE_CHARS = 64 * 1024
MAX_BATCH_CHARS = 16 * MAX_PIECE_CHARS  # text per encode_batch call

# Greedy prefix, so each finds the LAST cut in the window (backtracking from its end, in C). Python's \S
# is stricter than the tokenizers' (it counts U+001C..U+001F as space): at worst a possible cut is skipped.
_SPACE_CUT = re.compile(r"[\s\S]*( )(?=\S)")
_WHITESPACE_CUT = re.compile(r"[\s\S]*([\t\n\v\f\r])(?=\S)")


class Piece(NamedTuple):
    """One piece of text ``index`` of a batch; ``last`` marks the piece that ends its text."""

    index: int
    text: str
    last: bool


def text_pieces(text: str, max_chars: int = MAX_PIECE_CHARS) -> Iterator[str]:
    """``text`` as consecutive pieces of at most ``max_chars`` characters, cut at whitespace where possible.

    The pieces join back to ``text``; a text that fits (the empty text too) is one piece.
    """
    if max_chars < 1:
        raise ValueError(f"max_chars must be >= 1, got {max_chars}")
    start = 0
    while len(text) - start > max_chars:
        end = _cut(text, start, start + max_chars)
        yield text[start:end]
        start = end
    yield text[start:]


def settled_pieces(text: str, max_chars: int = MAX_PIECE_CHARS) -> tuple[list[str], str]:
    """The leading pieces of ``text`` that no text appended to it could change, and the rest: what lets a
    text that arrives in parts (a long run of paragraphs, streamed) be cut exactly as ``text_pieces`` cuts
    the whole. A cut looks at most two characters past its window, so a piece is settled once they exist."""
    pieces: list[str] = []
    start = 0
    while len(text) - start > max_chars + 2:
        end = _cut(text, start, start + max_chars)
        pieces.append(text[start:end])
        start = end
    return pieces, text[start:]


def pieces_of(texts: Iterable[str], max_chars: int = MAX_PIECE_CHARS) -> Iterator[str]:
    """Every piece of every text, in order: what a tokenizer trainer is fed."""
    for text in texts:
        yield from text_pieces(text, max_chars)


def piece_batches(
    texts: Iterable[str], max_piece: int = MAX_PIECE_CHARS, max_batch: int = MAX_BATCH_CHARS
) -> Iterator[list[Piece]]:
    """The pieces of ``texts`` in order, in batches of at most ``max_batch`` characters (or one piece)."""
    batch: list[Piece] = []
    size = 0
    for index, text in enumerate(texts):
        for piece in _marked_pieces(index, text, max_piece):
            if batch and size + len(piece.text) > max_batch:
                yield batch
                batch, size = [], 0
            batch.append(piece)
            size += len(piece.text)
    if batch:
        yield batch


def _marked_pieces(index: int, text: str, max_chars: int) -> Iterator[Piece]:
    """The pieces of one text, the last one marked (pieces are made lazily: a huge text is never copied)."""
    if len(text) <= max_chars:  # the usual case, kept cheap: corpora may hold millions of short texts
        yield Piece(index, text, True)
        return
    pieces = text_pieces(text, max_chars)
    piece = next(pieces)
    for following in pieces:
        yield Piece(index, piece, False)
        piece = following
    yield Piece(index, piece, True)


def _cut(text: str, start: int, limit: int) -> int:
    """Where the piece starting at ``start`` ends: the best cut in ``(start, limit]``, else ``limit``."""
    for pattern in (_SPACE_CUT, _WHITESPACE_CUT):
        # endpos limit + 2: the cut character may sit at ``limit`` and the lookahead needs the one after it.
        match = pattern.match(text, start + 1, limit + 2)
        if match:
            return match.start(1)
    return limit
