"""A tokenizer trained elsewhere that cannot represent the train text is refused, once per tokenizer and
corpus; one that can (byte-level, or with an unknown token for a few rare characters) is not."""

from __future__ import annotations

import logging

import pytest
from tokenizers import Tokenizer as HFTokenizer
from tokenizers import models

from lightning_llm.tokenizers import Tokenizer
from lightning_llm.tokenizers.coverage import TokenizerCoverageError, check_coverage, lost

TEXT = "the cat sat on the mat; a bat ate the hat"


def bpe_of(letters: str, unknown: bool) -> Tokenizer:
    """A BPE of single letters, with or without an unknown token (without: it drops the other characters)."""
    vocab = {"[UNK]": 0, **{ch: i + 1 for i, ch in enumerate(letters)}}
    backend = HFTokenizer(models.BPE(vocab=vocab, merges=[], unk_token="[UNK]" if unknown else None))
    backend.add_special_tokens(["[UNK]"])
    return Tokenizer.from_backend(backend, source="test")


def test_the_characters_no_token_covers_are_counted() -> None:
    visible, missing = lost(bpe_of("aeht", unknown=False), [TEXT])
    assert visible == len(TEXT.replace(" ", ""))
    assert missing == {"c": 1, "s": 1, "o": 1, "n": 1, "m": 1, ";": 1, "b": 1}  # a, e, h, t are known
    _, missing = lost(bpe_of("aeht", unknown=True), [TEXT])  # as the unknown token: lost all the same
    assert set(missing) == {"c", "s", "o", "n", "m", ";", "b"}


def test_a_tokenizer_that_drops_most_of_the_text_is_refused_once_checked_not_again(tmp_path, caplog) -> None:
    texts = lambda: [TEXT] * 10  # noqa: E731
    with pytest.raises(
        TokenizerCoverageError, match=r"the tokenizer t.json has no token for 2\d% of the train"
    ):
        check_coverage(bpe_of("aeht", unknown=False), texts, "corpus", tmp_path, "t.json")
    every = bpe_of("abcehmnost;", unknown=False)
    with caplog.at_level(logging.WARNING, logger="lightning_llm.tokenizers"):
        check_coverage(every, texts, "corpus", tmp_path, "t.json")
    assert "cannot represent" not in caplog.text

    def never() -> list[str]:
        raise AssertionError("the corpus was read again")

    check_coverage(every, never, "corpus", tmp_path, "t.json")  # checked once per tokenizer and corpus


def test_a_few_unknown_characters_are_a_warning(tmp_path, caplog) -> None:
    text = TEXT * 5 + " ü"
    with caplog.at_level(logging.WARNING, logger="lightning_llm.tokenizers"):
        check_coverage(bpe_of("abcehmnost;", unknown=True), lambda: [text], "c", tmp_path, "t.json")
    assert "cannot represent" not in caplog.text  # 1 of ~150 characters: under 1%
    with caplog.at_level(logging.WARNING, logger="lightning_llm.tokenizers"):
        check_coverage(bpe_of("abcehmnost;", unknown=True), lambda: [TEXT + " üüü"], "d", tmp_path, "t.json")
    assert "the tokenizer t.json cannot represent 8.8% of the train text (e.g. 'ü')" in caplog.text
