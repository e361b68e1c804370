"""The ``pretrained`` plugin and loading files: our own saves, foreign tokenizer.json files, bad paths."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from tokenizers import Regex, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from lightning_llm.registry import build
from lightning_llm.tokenizers import SPECIAL_TOKENS, Tokenizer, TokenizerFileError

CORPUS = ["the cat sat on the mat", "the dog sat on the log"]


@pytest.fixture(scope="module")
def saved(tmp_path_factory: pytest.TempPathFactory) -> tuple[Tokenizer, str]:
    tokenizer = build("tokenizer", "char")
    tokenizer.train(CORPUS)
    path = tokenizer.save(tmp_path_factory.mktemp("char") / "tokenizer.json")
    return tokenizer, str(path)


def foreign_tokenizer_file(folder, vocab: dict[str, int]) -> str:
    """A tokenizer.json written by plain Hugging Face tokenizers, knowing nothing of our special tokens."""
    backend = HFTokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Whitespace()
    path = str(folder / "tokenizer.json")
    backend.save(path)
    return path


def test_loads_our_own_save_unchanged(saved: tuple[Tokenizer, str], caplog) -> None:
    trained, path = saved
    tokenizer = build("tokenizer", "pretrained", path=path)
    assert not caplog.records  # nothing is missing, so nothing to warn about
    assert tokenizer.is_trained
    assert tokenizer.fingerprint() == trained.fingerprint()
    assert tokenizer.encode("the cat") == trained.encode("the cat")
    assert [tokenizer.pad_id, tokenizer.sep_id] == [0, 6]
    assert tokenizer.spec() == {"type": "pretrained", "path": path}


def test_accepts_the_folder_holding_tokenizer_json(saved: tuple[Tokenizer, str]) -> None:
    trained, path = saved
    folder = path.rsplit("/", 1)[0]
    assert build("tokenizer", "pretrained", path=folder).fingerprint() == trained.fingerprint()


def test_train_is_a_no_op(saved: tuple[Tokenizer, str]) -> None:
    trained, path = saved
    tokenizer = build("tokenizer", "pretrained", path=path)
    tokenizer.train(["completely different text: zebra quokka"])
    assert tokenizer.fingerprint() == trained.fingerprint()


def test_missing_file_names_the_path(tmp_path) -> None:
    missing = tmp_path / "nowhere" / "tokenizer.json"
    with pytest.raises(FileNotFoundError, match="nowhere"):
        build("tokenizer", "pretrained", path=str(missing))


def test_invalid_file_names_the_path(tmp_path) -> None:
    bad = tmp_path / "tokenizer.json"
    bad.write_text('{"not": "a tokenizer"}', encoding="utf-8")
    with pytest.raises(TokenizerFileError, match="not a valid Hugging Face tokenizer.json") as error:
        build("tokenizer", "pretrained", path=str(bad))
    assert str(bad) in str(error.value)
    assert isinstance(error.value, ValueError)


def test_foreign_file_gets_missing_special_tokens_with_a_warning(tmp_path, caplog) -> None:
    path = foreign_tokenizer_file(tmp_path, {"[UNK]": 0, "hello": 1, "world": 2, "<eos>": 3})
    tokenizer = build("tokenizer", "pretrained", path=path)
    (message,) = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]  # one line, logged
    assert "lacks the special tokens" in message
    assert "<pad>" in message and "'<eos>'" not in message  # <eos> was already there
    # <eos> keeps its id; the six missing ones follow the vocabulary, in SPECIAL_TOKENS order.
    assert tokenizer.eos_id == 3
    assert [tokenizer.pad_id, tokenizer.unk_id, tokenizer.bos_id] == [4, 5, 6]
    assert [tokenizer.mask_id, tokenizer.cls_id, tokenizer.sep_id] == [7, 8, 9]
    assert tokenizer.vocab_size == 4 + len(SPECIAL_TOKENS) - 1
    assert tokenizer.encode("hello world") == [1, 2]
    assert tokenizer.decode([tokenizer.bos_id, 1, 2, tokenizer.eos_id]) == "hello world"


def test_from_file_reads_any_tokenizer_json(tmp_path) -> None:
    path = foreign_tokenizer_file(tmp_path, {"[UNK]": 0, "hi": 1})
    tokenizer = Tokenizer.from_file(path)
    assert tokenizer.encode("hi") == [1]


def test_loading_with_only_the_roles_a_use_needs_keeps_the_vocabulary(tmp_path, caplog) -> None:
    """A pretrained model's tokenizer loaded with ``roles=``: roles it lacks and the use does not need add no
    token (so no model row), <pad> is played by <eos>, and asking for a role without a token says so."""
    from lightning_llm.tokenizers.base import MissingSpecialTokenError

    path = foreign_tokenizer_file(tmp_path, {"[UNK]": 0, "hello": 1, "world": 2, "<eos>": 3})
    tokenizer = Tokenizer.from_file(path, roles=("<eos>",))
    assert not caplog.records  # nothing is added, so nothing to warn about
    assert tokenizer.vocab_size == 4 and tokenizer.added_tokens == []
    assert tokenizer.pad_id == tokenizer.eos_id == 3
    assert tokenizer.roles == {"<eos>": "<eos>", "<pad>": "<eos>"}
    with pytest.raises(MissingSpecialTokenError, match=r"has no <mask> token"):
        _ = tokenizer.mask_id
    masked = Tokenizer.from_file(path, roles=("<eos>", "<mask>"))
    assert "lacks the special tokens ['<mask>']" in caplog.text
    assert (masked.mask_id, masked.vocab_size, masked.added_tokens) == (4, 5, ["<mask>"])


def test_truncation_padding_and_bpe_dropout_a_file_switches_on_are_turned_off(tmp_path, caplog) -> None:
    """Each would change the training data silently: documents cut to a few tokens, pad ids inside them, or
    other ids for the same text on every call (no cache, no reproducible generation)."""
    backend = HFTokenizer(models.BPE(dropout=0.5, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    from tokenizers import decoders, trainers

    backend.decoder = decoders.ByteLevel()

    backend.train_from_iterator(CORPUS * 20, trainers.BpeTrainer(vocab_size=60, special_tokens=["[UNK]"]))
    backend.enable_truncation(max_length=3)
    backend.enable_padding(length=12)
    backend.save(str(tmp_path / "tokenizer.json"))
    tokenizer = Tokenizer.from_file(tmp_path / "tokenizer.json")
    assert "turned off its truncation and padding and BPE dropout" in caplog.text
    text = " ".join(CORPUS * 3)
    ids = tokenizer.encode(text)
    assert len(ids) > 12 and tokenizer.decode(ids) == text  # whole, without padding
    assert all(tokenizer.encode(text) == ids for _ in range(5))  # the same every time


def test_a_file_whose_ids_need_an_embedding_too_large_or_collide_is_refused(tmp_path) -> None:
    sparse = foreign_tokenizer_file(tmp_path, {"[UNK]": 0, "cat": 1, "far": 2})
    content = json.loads(Path(sparse).read_text())  # edited: the library writes a vocab this sparse in ~15 s
    content["model"]["vocab"]["far"] = 2_000_000_000
    Path(sparse).write_text(json.dumps(content))
    with pytest.raises(TokenizerFileError, match=r"largest token id is 2000000000, so a model would need"):
        Tokenizer.from_file(sparse)
    (tmp_path / "gap").mkdir()
    gap = foreign_tokenizer_file(tmp_path / "gap", {"[UNK]": 0, "cat": 1, "dog": 3})  # 3 tokens, ids to 3
    with pytest.raises(
        TokenizerFileError, match=r"ids leave gaps, so <eos>, which it lacks .* id 3, already 'dog'"
    ):
        Tokenizer.from_file(gap, roles=("<eos>",))


def test_a_regex_the_library_panics_on_is_an_error_naming_the_file(tmp_path) -> None:
    """Oniguruma gives up on a regex that backtracks past its limit and the Rust library panics; pyo3 raises a
    BaseException that no ``except Exception`` stops."""
    backend = HFTokenizer(models.WordLevel({"[UNK]": 0, "a": 1}, unk_token="[UNK]"))
    backend.pre_tokenizer = pre_tokenizers.Split(Regex("(a|a)+$"), "isolated")
    backend.save(str(tmp_path / "tokenizer.json"))
    tokenizer = Tokenizer.from_file(tmp_path / "tokenizer.json")
    text = "a" * 40 + "b"
    for encode in (tokenizer.encode, lambda t: tokenizer.encode_batch([t]), tokenizer.encode_with_offsets):
        with pytest.raises(TokenizerFileError, match="tokenizer.json: the tokenizers library failed"):
            encode(text)
