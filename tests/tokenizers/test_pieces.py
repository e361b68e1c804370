"""Long texts in bounded pieces: where the cuts fall, and batches of pieces."""

from __future__ import annotations

import pytest

from lightning_llm.tokenizers.pieces import (
    MAX_BATCH_CHARS,
    MAX_PIECE_CHARS,
    Piece,
    piece_batches,
    pieces_of,
    text_pieces,
)


def pieces(text: str, max_chars: int) -> list[str]:
    result = list(text_pieces(text, max_chars))
    assert "".join(result) == text
    assert all(0 < len(piece) <= max_chars for piece in result) or result == [""]
    return result


def test_a_text_that_fits_is_one_piece() -> None:
    assert pieces("a b c", 5) == ["a b c"]
    assert pieces("", 5) == [""]


def test_cuts_fall_before_a_space_that_starts_a_word() -> None:
    assert pieces("aaa bbb ccc", 8) == ["aaa bbb", " ccc"]
    assert pieces("aaa   bbb", 8) == ["aaa  ", " bbb"]  # the word keeps its one space, as GPT-2 splits it
    assert pieces("one two\nthr", 9) == ["one", " two\nthr"]  # a space beats a later newline


def test_without_a_space_a_cut_falls_before_other_whitespace() -> None:
    assert pieces("aaaa\nbbbb\tcc", 10) == ["aaaa\nbbbb", "\tcc"]


def test_without_whitespace_the_cut_is_hard() -> None:
    assert pieces("x" * 25, 10) == ["x" * 10, "x" * 10, "x" * 5]
    assert pieces("ab" + " " * 20, 10) == ["ab" + " " * 8, " " * 10, " " * 2]  # no space starts a word


def test_a_cut_may_fall_exactly_at_the_limit() -> None:
    assert pieces("abcd efg", 4) == ["abcd", " efg"]


def test_a_bad_size_is_refused() -> None:
    with pytest.raises(ValueError, match="max_chars must be >= 1"):
        list(text_pieces("abc", 0))


def test_pieces_of_many_texts_in_order() -> None:
    assert list(pieces_of(["aa bb", "c"], 3)) == ["aa", " bb", "c"]


def test_batches_are_bounded_and_mark_each_texts_last_piece() -> None:
    batches = list(piece_batches(["aa bb cc", "", "dd"], max_piece=3, max_batch=5))
    assert batches == [
        [Piece(0, "aa", False), Piece(0, " bb", False)],
        [Piece(0, " cc", True), Piece(1, "", True), Piece(2, "dd", True)],
    ]
    assert all(sum(len(piece.text) for piece in batch) <= 5 for batch in batches)


def test_a_piece_larger_than_a_batch_is_a_batch_alone() -> None:
    assert list(piece_batches(["abcdef", "g"], max_piece=10, max_batch=4)) == [
        [Piece(0, "abcdef", True)],
        [Piece(1, "g", True)],
    ]


def test_no_texts_no_batches() -> None:
    assert list(piece_batches([])) == []


def test_the_bounds_are_sane() -> None:
    """Pieces of 64 KiB to 1 MiB: bounded memory per input, yet cuts stay rare; a batch feeds many cores."""
    assert 64 * 1024 <= MAX_PIECE_CHARS <= 1024 * 1024
    assert 8 * MAX_PIECE_CHARS <= MAX_BATCH_CHARS <= 4 * 1024 * 1024
