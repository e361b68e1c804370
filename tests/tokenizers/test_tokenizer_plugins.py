"""The trainable tokenizer plugins: round trips, special ids, save/load, determinism, bad parameters."""

from __future__ import annotations

import json
from pydoc_data.topics import topics

import pytest

from lightning_llm.registry import build, names
from lightning_llm.tokenizers import SPECIAL_TOKENS, Tokenizer, TokenizerNotTrainedError

TRAINABLE = {  # plugin -> small parameters, so each trains in well under a second
    "byte_bpe": {"vocab_size": 512},
    "bpe": {"vocab_size": 512},
    "wordpiece": {"vocab_size": 512},
    "unigram": {"vocab_size": 512},
    "char": {},
}
EXACT_ROUND_TRIP = {"byte_bpe", "bpe", "unigram", "char"}  # wordpiece re-spaces words and punctuation
CORPUS = [topics[name] for name in sorted(topics)[:12]]  # real English prose and code, about 60k characters
SAMPLE = topics["assert"]  # in the corpus, so every character has been seen


def train(name: str, corpus: list[str] = CORPUS) -> Tokenizer:
    tokenizer = build("tokenizer", name, **TRAINABLE[name])
    tokenizer.train(iter(corpus))  # a one-shot iterator, as a streaming corpus would give
    return tokenizer


@pytest.fixture(scope="module", params=sorted(TRAINABLE))
def trained(request: pytest.FixtureRequest) -> Tokenizer:
    return train(request.param)


def test_every_builtin_is_registered() -> None:
    assert set(TRAINABLE) | {"pretrained"} <= set(names("tokenizer"))


def test_round_trip(trained: Tokenizer) -> None:
    decoded = trained.decode(trained.encode(SAMPLE))
    if trained.name in EXACT_ROUND_TRIP:
        assert decoded == SAMPLE
    else:  # every character survives; only the spacing between words and punctuation changes
        assert "".join(decoded.split()) == "".join(SAMPLE.split())


def test_special_tokens_hold_ids_0_to_6(trained: Tokenizer) -> None:
    ids = [trained.pad_id, trained.unk_id, trained.bos_id, trained.eos_id]
    ids += [trained.mask_id, trained.cls_id, trained.sep_id]
    assert ids == list(range(len(SPECIAL_TOKENS)))
    assert [trained.backend.id_to_token(i) for i in ids] == list(SPECIAL_TOKENS)


def test_vocab_size_covers_every_id(trained: Tokenizer) -> None:
    ids = trained.encode(SAMPLE)
    assert max(ids) < trained.vocab_size <= TRAINABLE[trained.name].get("vocab_size", 10_000)
    assert trained.vocab_size == trained.backend.get_vocab_size(with_added_tokens=True)


def test_text_never_becomes_special_tokens(trained: Tokenizer) -> None:
    text = "a <eos> b <pad>"
    specials = set(range(len(SPECIAL_TOKENS))) - {trained.unk_id}
    assert not specials & set(trained.encode(text))


def test_decode_drops_special_tokens(trained: Tokenizer) -> None:
    ids = trained.encode("assert")
    wrapped = [trained.bos_id, *ids, trained.eos_id, trained.pad_id, trained.pad_id]
    assert trained.decode(wrapped) == trained.decode(ids)


def test_encode_batch_matches_encode(trained: Tokenizer) -> None:
    texts = CORPUS[:4] + ["", "x"]
    assert trained.encode_batch(texts) == [trained.encode(text) for text in texts]


def test_save_and_load_give_identical_tokenizer(trained: Tokenizer, tmp_path) -> None:
    path = trained.save(tmp_path / "tokenizer.json")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["tokenizer.json"]  # no temporary left behind
    json.loads(path.read_text(encoding="utf-8"))  # plain Hugging Face JSON
    loaded = Tokenizer.from_file(path)
    assert loaded.fingerprint() == trained.fingerprint()
    assert loaded.encode_batch(CORPUS) == trained.encode_batch(CORPUS)
    assert loaded.vocab_size == trained.vocab_size
    assert loaded.eos_id == trained.eos_id


def test_spec_names_the_plugin_and_its_parameters(trained: Tokenizer) -> None:
    spec = trained.spec()
    assert spec["type"] == trained.name
    assert TRAINABLE[trained.name].items() <= spec.items()
    json.dumps(spec)  # usable as a cache key


def test_spec_includes_defaults() -> None:
    spec = build("tokenizer", "byte_bpe").spec()
    assert spec == {"type": "byte_bpe", "vocab_size": 4096, "min_frequency": 2}


def test_training_is_deterministic(trained: Tokenizer) -> None:
    assert train(trained.name).fingerprint() == trained.fingerprint()


def test_byte_bpe_round_trips_text_never_seen() -> None:
    tokenizer = train("byte_bpe", CORPUS[:3])
    text = "naïve café — 東京 🚀\r\n\ttabs  and  spaces "
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert tokenizer.unk_id not in tokenizer.encode(text)


def test_char_vocabulary_is_specials_then_sorted_characters() -> None:
    tokenizer = train("char", ["ba\n", "c a"])
    vocab = sorted(tokenizer.backend.get_vocab().items(), key=lambda item: item[1])
    assert [token for token, _ in vocab] == [*SPECIAL_TOKENS, "\n", " ", "a", "b", "c"]
    assert tokenizer.encode("ab c\n") == [9, 10, 8, 11, 7]


def test_char_maps_unknown_characters_to_unk() -> None:
    tokenizer = train("char", ["abc"])
    assert tokenizer.encode("aZb") == [tokenizer.encode("a")[0], tokenizer.unk_id, tokenizer.encode("b")[0]]
    assert tokenizer.decode(tokenizer.encode("aZb")) == "ab"


def test_bpe_maps_unseen_characters_to_unk() -> None:
    tokenizer = train("bpe", CORPUS[:3])
    assert tokenizer.unk_id in tokenizer.encode("assert 東")


def test_wordpiece_lowercase_option() -> None:
    tokenizer = build("tokenizer", "wordpiece", vocab_size=300, lowercase=True)
    tokenizer.train(CORPUS[:3])
    assert tokenizer.encode("ASSERT") == tokenizer.encode("assert")


def test_untrained_tokenizer_raises_a_clear_error() -> None:
    tokenizer = build("tokenizer", "byte_bpe")
    assert not tokenizer.is_trained
    with pytest.raises(TokenizerNotTrainedError, match="not trained yet"):
        tokenizer.encode("hello")
    with pytest.raises(TokenizerNotTrainedError):
        _ = tokenizer.eos_id


def test_save_to_a_folder_is_refused(trained: Tokenizer, tmp_path) -> None:
    with pytest.raises(IsADirectoryError, match="tokenizer.json"):
        trained.save(tmp_path)


@pytest.mark.parametrize(
    ("name", "params", "message"),
    [
        ("byte_bpe", {"vocab_size": 100}, "at least 263"),
        ("bpe", {"vocab_size": 7}, "at least 8"),
        ("wordpiece", {"min_frequency": 0}, "min_frequency"),
        ("unigram", {"max_piece_length": 0}, "max_piece_length"),
    ],
)
def test_bad_parameters_name_the_plugin(name: str, params: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message) as error:
        build("tokenizer", name, **params)
    assert name in str(error.value)
