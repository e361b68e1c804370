"""Long texts are trained on and encoded in bounded pieces, with the tokens of the whole text."""

from __future__ import annotations

from typing import Any

import pytest

from lightning_llm.registry import build
from lightning_llm.tokenizers import CharTokenizer, Tokenizer
from lightning_llm.tokenizers.pieces import MAX_BATCH_CHARS, MAX_PIECE_CHARS
from tests.tokenizers.test_tokenizer_plugins import CORPUS, TRAINABLE, train

LONG = " ".join(CORPUS)  # ~60k characters of prose and code, all seen in training
SPACED = " ".join(LONG.split())  # the same words with single spaces only: every cut falls before a space
PIECE = 300  # small pieces, so one text gets ~200 cuts in every kind of context
AT_ANY_WHITESPACE = {"byte_bpe", "bpe", "wordpiece", "char"}  # unigram is exact at spaces only


class BackendSpy:
    """Stands in for the Hugging Face backend, recording the length of every input it is given, by call."""

    def __init__(self, backend: Any) -> None:
        self.backend = backend
        self.calls: list[list[int]] = []

    def encode(self, text: str, **kwargs: Any) -> Any:
        self.calls.append([len(text)])
        return self.backend.encode(text, **kwargs)

    def encode_batch(self, texts: list[str], **kwargs: Any) -> Any:
        self.calls.append([len(text) for text in texts])
        return self.backend.encode_batch(texts, **kwargs)

    def encode_batch_fast(self, texts: list[str], **kwargs: Any) -> Any:
        self.calls.append([len(text) for text in texts])
        return self.backend.encode_batch_fast(texts, **kwargs)


def in_small_pieces(tokenizer: Tokenizer) -> Tokenizer:
    tokenizer.max_piece_chars, tokenizer.max_batch_chars = PIECE, 10 * PIECE
    return tokenizer


@pytest.fixture(scope="module", params=sorted(TRAINABLE))
def trained(request: pytest.FixtureRequest) -> Tokenizer:
    return train(request.param)


def test_pieces_give_the_tokens_of_the_whole_text(trained: Tokenizer) -> None:
    text = LONG if trained.name in AT_ANY_WHITESPACE else SPACED
    whole = trained.backend.encode(text, add_special_tokens=False).ids
    tokenizer = in_small_pieces(train(trained.name))
    assert tokenizer.encode(text) == whole
    assert tokenizer.encode_batch(["a b", text, "", text]) == [tokenizer.encode("a b"), whole, [], whole]


def test_char_tokens_are_exact_even_at_hard_cuts() -> None:
    tokenizer = in_small_pieces(train("char"))
    text = LONG.replace(" ", "").replace("\n", "")  # no whitespace: every cut is hard
    assert tokenizer.encode(text) == tokenizer.backend.encode(text, add_special_tokens=False).ids


def test_training_on_pieces_gives_the_same_tokenizer(trained: Tokenizer) -> None:
    corpus = [SPACED, *CORPUS[:2]]
    whole = build("tokenizer", trained.name, **TRAINABLE[trained.name])
    whole.train(corpus)  # SPACED is under MAX_PIECE_CHARS: one piece
    pieces = in_small_pieces(build("tokenizer", trained.name, **TRAINABLE[trained.name]))
    pieces.train(corpus)
    assert pieces.fingerprint() == whole.fingerprint()


def test_the_trainer_gets_bounded_pieces(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[str] = []
    fit = CharTokenizer._fit

    def spy(self: CharTokenizer, texts: Any) -> Any:
        return fit(self, (seen.append(text) or text for text in texts))

    monkeypatch.setattr(CharTokenizer, "_fit", spy)
    in_small_pieces(CharTokenizer()).train([LONG, "short"])
    assert max(len(text) for text in seen) <= PIECE
    assert "".join(seen) == LONG + "short"


@pytest.mark.slow
def test_a_multi_megabyte_line_reaches_the_backend_in_bounded_batches() -> None:
    """What bounds the memory of encoding one huge line: no input over MAX_PIECE_CHARS, no call over
    MAX_BATCH_CHARS, and the pieces go out as batches, so all cores encode them."""
    tokenizer = train("char")
    line = (SPACED * (2_500_000 // len(SPACED) + 1))[:2_500_000]
    spy = BackendSpy(tokenizer.backend)
    tokenizer._backend = spy
    ids = tokenizer.encode(line)
    assert max(size for call in spy.calls for size in call) <= MAX_PIECE_CHARS
    assert all(sum(call) <= MAX_BATCH_CHARS for call in spy.calls)
    assert len(spy.calls) >= 2 and max(len(call) for call in spy.calls) > 1
    vocab = spy.backend.get_vocab()
    assert ids == [vocab[char] for char in line]


@pytest.mark.parametrize("name", ["byte_bpe", "bpe", "wordpiece", "unigram"])
@pytest.mark.parametrize("vocab_size", [10**12, 2**21 + 1, 0, -1])
def test_vocab_size_out_of_range_is_refused_when_built(name: str, vocab_size: int) -> None:
    with pytest.raises(ValueError) as error:
        build("tokenizer", name, vocab_size=vocab_size)
    message = str(error.value)
    assert message.startswith(f"tokenizer.vocab_size={vocab_size} is out of range for tokenizer '{name}'")
    assert "at most 2097152" in message and "at least" in message and "\n" not in message


@pytest.mark.parametrize(("name", "minimum"), [("byte_bpe", 263), ("bpe", 8), ("unigram", 8)])
def test_vocab_size_limits_themselves_are_accepted(name: str, minimum: int) -> None:
    for vocab_size in (minimum, 2**21):
        assert build("tokenizer", name, vocab_size=vocab_size).params["vocab_size"] == vocab_size
    with pytest.raises(ValueError, match=f"at least {minimum}"):
        build("tokenizer", name, vocab_size=minimum - 1)


def test_any_plugin_passing_vocab_size_gets_the_upper_bound() -> None:
    class Custom(Tokenizer):
        name = "custom"

        def __init__(self, vocab_size: int = 100) -> None:
            super().__init__(vocab_size=vocab_size)

    assert Custom().params == {"vocab_size": 100}
    with pytest.raises(ValueError, match=r"tokenizer\.vocab_size=1000000000000 .* 'custom'.*at most 2097152"):
        Custom(vocab_size=10**12)
