"""``fit_or_load``: train once per (spec, corpus), load afterwards, and stay correct under concurrency."""

from __future__ import annotations

import errno
import logging
import multiprocessing
import os
from pathlib import Path
from pydoc_data.topics import topics
from typing import Any

import pytest

from lightning_llm import atomic
from lightning_llm.registry import build
from lightning_llm.tokenizers import CacheWriteError, Tokenizer, cache_key, fit_or_load
from tests.conftest import read_only_folder

CORPUS = [topics[name] for name in sorted(topics)[:8]]
CORPUS_FINGERPRINT = "pydoc-topics-first-8"


def corpus() -> list[str]:
    return list(CORPUS)


def byte_bpe(vocab_size: int = 400) -> Tokenizer:
    return build("tokenizer", "byte_bpe", vocab_size=vocab_size)


def cache_entries(cache_dir: Path) -> list[str]:
    return sorted(path.parent.name for path in (cache_dir / "tokenizers").glob("*/tokenizer.json"))


def refuse_to_train(self: Tokenizer, texts) -> None:
    raise AssertionError("trained although the cache holds this tokenizer")


def test_first_call_trains_and_second_loads(tmp_path: Path, monkeypatch, caplog) -> None:
    caplog.set_level(logging.INFO, logger="lightning_llm.tokenizers")
    first = fit_or_load(byte_bpe(), corpus, CORPUS_FINGERPRINT, tmp_path)
    assert "trained tokenizer" in caplog.text
    assert cache_entries(tmp_path) == [cache_key(first.spec(), CORPUS_FINGERPRINT)]

    caplog.clear()
    monkeypatch.setattr(Tokenizer, "train", refuse_to_train)
    second = fit_or_load(byte_bpe(), lambda: pytest.fail("read the corpus"), CORPUS_FINGERPRINT, tmp_path)
    assert "from the cache" in caplog.text
    assert second.fingerprint() == first.fingerprint()
    assert second.encode(CORPUS[0]) == first.encode(CORPUS[0])


def test_a_damaged_entry_is_trained_again_and_kept_aside(tmp_path: Path, caplog) -> None:
    first = fit_or_load(byte_bpe(), corpus, CORPUS_FINGERPRINT, tmp_path)
    (entry,) = (tmp_path / "tokenizers").glob("*/tokenizer.json")
    entry.write_bytes(entry.read_bytes()[:100])  # cut short
    again = fit_or_load(byte_bpe(), corpus, CORPUS_FINGERPRINT, tmp_path)
    assert "is unreadable" in caplog.text and again.fingerprint() == first.fingerprint()
    assert [p.name.split("-")[0] for p in entry.parent.glob("*.damaged-*")] == ["tokenizer.json.damaged"]
    assert fit_or_load(byte_bpe(), corpus, CORPUS_FINGERPRINT, tmp_path).fingerprint() == first.fingerprint()


def test_entries_are_keyed_by_spec_and_corpus(tmp_path: Path) -> None:
    small = fit_or_load(byte_bpe(400), corpus, CORPUS_FINGERPRINT, tmp_path)
    large = fit_or_load(byte_bpe(500), corpus, CORPUS_FINGERPRINT, tmp_path)
    fit_or_load(byte_bpe(400), corpus, "another corpus", tmp_path)
    assert len(cache_entries(tmp_path)) == 3
    assert small.vocab_size == 400 and large.vocab_size == 500


def test_cache_entry_holds_only_the_tokenizer(tmp_path: Path) -> None:
    fit_or_load(byte_bpe(), corpus, CORPUS_FINGERPRINT, tmp_path)
    (entry,) = (tmp_path / "tokenizers").iterdir()
    assert [path.name for path in entry.iterdir()] == ["tokenizer.json"]  # no temporaries left behind


def test_already_trained_tokenizer_is_returned_as_is(tmp_path: Path) -> None:
    saved = byte_bpe()
    saved.train(CORPUS[:2])
    path = saved.save(tmp_path / "model" / "tokenizer.json")
    pretrained = build("tokenizer", "pretrained", path=str(path))
    result = fit_or_load(pretrained, lambda: pytest.fail("read the corpus"), CORPUS_FINGERPRINT, tmp_path)
    assert result is pretrained
    assert not (tmp_path / "tokenizers").exists()


def fit_in_subprocess(cache_dir: str, start: Any) -> tuple[str, list[int]]:
    start.wait()  # both processes miss the cache and train at the same moment
    tokenizer = fit_or_load(byte_bpe(), corpus, CORPUS_FINGERPRINT, cache_dir)
    return tokenizer.fingerprint(), tokenizer.encode(CORPUS[1])


def test_concurrent_processes_both_succeed_with_the_same_tokenizer(tmp_path: Path) -> None:
    context = multiprocessing.get_context("spawn")  # fork after tokenizers' threads have run can deadlock
    with context.Manager() as manager, context.Pool(2) as pool:
        start = manager.Barrier(2, timeout=60)
        results = pool.starmap(fit_in_subprocess, [(str(tmp_path), start)] * 2, chunksize=1)
    assert results[0] == results[1]
    assert len(cache_entries(tmp_path)) == 1
    cached = Tokenizer.from_file(next((tmp_path / "tokenizers").glob("*/tokenizer.json")))
    assert cached.fingerprint() == results[0][0]


# --------------------------------------------------------------------------- an unusable cache folder


def test_a_cache_dir_under_a_file_fails_before_training(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("not a folder")
    cache_dir = tmp_path / "file" / "cache"
    with pytest.raises(CacheWriteError) as error:
        fit_or_load(byte_bpe(), lambda: pytest.fail("read the corpus"), CORPUS_FINGERPRINT, cache_dir)
    message = str(error.value)
    assert message.startswith(
        f"paths.cache_dir={cache_dir}: cannot write the tokenizer cache (Not a directory)"
    )
    assert "choose another paths.cache_dir or set LIGHTNING_LLM_CACHE" in message and "\n" not in message


def test_a_read_only_cache_dir_fails_before_training(tmp_path: Path) -> None:
    cache_dir = read_only_folder(tmp_path / "cache")
    try:
        with pytest.raises(CacheWriteError, match=r"cannot write the tokenizer cache \(Permission denied\)"):
            fit_or_load(byte_bpe(), lambda: pytest.fail("read the corpus"), CORPUS_FINGERPRINT, cache_dir)
    finally:
        cache_dir.chmod(0o755)


def test_a_full_disk_leaves_no_entry_and_a_later_run_trains_again(tmp_path: Path, monkeypatch) -> None:
    def no_space(fd: int) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(atomic.os, "fsync", no_space)
    with pytest.raises(
        CacheWriteError, match=r"\(No space left on device\); free some space, choose another"
    ):
        fit_or_load(byte_bpe(), corpus, CORPUS_FINGERPRINT, tmp_path)
    (entry,) = (tmp_path / "tokenizers").iterdir()
    assert list(entry.iterdir()) == []  # neither an entry nor a temporary
    monkeypatch.undo()
    fit_or_load(byte_bpe(), corpus, CORPUS_FINGERPRINT, tmp_path)
    assert [path.name for path in entry.iterdir()] == ["tokenizer.json"]


def test_another_plugin_or_setting_with_the_same_spec_gets_its_own_entry(tmp_path: Path) -> None:
    """Two tokenizer plugins that report the same spec (a subclass keeping its parent's name, settings not
    passed to ``Tokenizer.__init__``) shared one entry: the second run loaded the first one's vocabulary."""
    from lightning_llm.tokenizers import CharTokenizer

    class Upper(CharTokenizer):  # a plugin's: the same spec as char's
        def train(self, texts) -> None:
            super().train(text.upper() for text in texts)

    char = fit_or_load(CharTokenizer(), corpus, CORPUS_FINGERPRINT, tmp_path, settings={})
    upper = fit_or_load(Upper(), corpus, CORPUS_FINGERPRINT, tmp_path, settings={})
    assert Upper().spec() == CharTokenizer().spec() and upper.vocab_size < char.vocab_size
    assert len(cache_entries(tmp_path)) == 2
    digits = fit_or_load(Upper(), corpus, CORPUS_FINGERPRINT, tmp_path, settings={"keep_digits": False})
    assert len(cache_entries(tmp_path)) == 3 and digits.vocab_size == upper.vocab_size
    assert fit_or_load(CharTokenizer(), corpus, CORPUS_FINGERPRINT, tmp_path).vocab_size == char.vocab_size
    assert len(cache_entries(tmp_path)) == 3  # a built-in's entry is keyed by its spec, as before
