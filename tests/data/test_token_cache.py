import logging
import multiprocessing
import sys
from pathlib import Path

import numpy as np
import pytest

from lightning_llm.data import token_cache
from lightning_llm.data.token_cache import ensure_token_cache, open_tokens, token_dtype

TEXTS = ["Hello, world!", "Second text: naïve café ☕", "a\n\nb"]
CORPUS = "corpus-fp"


def build(tokenizer, cache_dir, texts=TEXTS, split="train"):
    return ensure_token_cache(texts, tokenizer, cache_dir=cache_dir, split=split, corpus_fingerprint=CORPUS)


def decode_texts(tokens, tokenizer):
    """The texts in a token array, cut at each eos."""
    ends = np.flatnonzero(np.asarray(tokens) == tokenizer.eos_id)
    starts = np.concatenate([[0], ends[:-1] + 1])
    return [tokenizer.decode(tokens[s:e]) for s, e in zip(starts, ends, strict=True)]


def test_round_trip_puts_eos_after_every_text(tokenizer, tmp_path):
    path = build(tokenizer, tmp_path)
    tokens = open_tokens(path)
    assert path == tmp_path / "tokens" / path.parent.name / "train.bin"
    assert isinstance(tokens, np.memmap) and not tokens.flags.writeable
    assert tokens.dtype == np.uint16
    assert len(tokens) == sum(len(t.encode()) + 1 for t in TEXTS)
    assert decode_texts(tokens, tokenizer) == TEXTS


def test_dtype_widens_past_uint16(make_tokenizer, tmp_path):
    assert token_dtype(2**16) == np.uint16
    assert token_dtype(2**16 + 1) == np.uint32
    wide = make_tokenizer(offset=65_500, vocab_size=65_800)
    tokens = open_tokens(build(wide, tmp_path))
    assert tokens.dtype == np.uint32
    assert int(tokens.max()) > 2**16
    assert decode_texts(tokens, wide) == TEXTS


def test_ids_outside_the_vocabulary_are_an_error(make_tokenizer, tmp_path):
    with pytest.raises(ValueError, match=r"outside \[0, vocab_size=200\)"):
        build(make_tokenizer(vocab_size=200), tmp_path)


def test_second_build_reuses_the_cache(make_tokenizer, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lightning_llm.data")
    first = make_tokenizer()
    path = build(first, tmp_path)
    assert first.calls == 1
    assert "tokenized train split: 3 texts" in caplog.text
    second = make_tokenizer()
    assert build(second, tmp_path) == path
    assert second.calls == 0
    assert "token cache hit: train split" in caplog.text


def test_new_tokenizer_or_corpus_gets_a_new_cache(make_tokenizer, tmp_path):
    path = build(make_tokenizer(), tmp_path)
    assert build(make_tokenizer(name="retrained"), tmp_path) != path
    other = ensure_token_cache(
        TEXTS, make_tokenizer(), cache_dir=tmp_path, split="train", corpus_fingerprint="x"
    )
    assert other != path


def test_writes_in_bounded_chunks(make_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(token_cache, "_CHUNK_CHARS", 20)
    texts = [f"text number {i}" for i in range(10)]
    tok = make_tokenizer()
    tokens = open_tokens(build(tok, tmp_path, texts))
    assert tok.calls == 10  # one encode_batch per ~20 characters
    assert decode_texts(tokens, tok) == texts


@pytest.mark.parametrize("damage", ["no sidecar", "truncated bin", "garbled sidecar"])
def test_half_written_cache_is_rebuilt(make_tokenizer, tmp_path, damage):
    path = build(make_tokenizer(), tmp_path)
    good = path.read_bytes()
    if damage == "no sidecar":  # the build died between the .bin and the sidecar
        path.with_suffix(".json").unlink()
    elif damage == "truncated bin":
        path.write_bytes(good[:5])
    else:
        path.with_suffix(".json").write_text("{")
    tok = make_tokenizer()
    assert build(tok, tmp_path) == path
    assert tok.calls == 1
    assert path.read_bytes() == good


def test_open_without_sidecar_explains(tokenizer, tmp_path):
    path = build(tokenizer, tmp_path)
    path.with_suffix(".json").unlink()
    with pytest.raises(FileNotFoundError, match="token cache is incomplete"):
        open_tokens(path)


def test_empty_split_is_an_error(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="no texts to tokenize for the val split"):
        build(tokenizer, tmp_path, texts=[], split="val")


def _build_in_child(tokenizer, cache_dir, texts, barrier, results):
    barrier.wait()  # start together so both find no cache and both build it
    path = build(tokenizer, cache_dir, texts)
    results.put((str(path), tokenizer.calls))


@pytest.mark.skipif(sys.platform == "win32", reason="needs fork")
def test_concurrent_builds_both_succeed_with_identical_bytes(make_tokenizer, tmp_path, monkeypatch):
    monkeypatch.setattr(token_cache, "_CHUNK_CHARS", 200)  # several interleaved chunk writes each
    texts = [f"paragraph {i} " * 5 for i in range(40)]
    reference = build(make_tokenizer(), tmp_path / "reference", texts).read_bytes()

    ctx = multiprocessing.get_context("fork")
    barrier, results = ctx.Barrier(2), ctx.Queue()
    tok = make_tokenizer(delay=0.02)
    workers = [
        ctx.Process(target=_build_in_child, args=(tok, tmp_path / "shared", texts, barrier, results))
        for _ in range(2)
    ]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(timeout=30)
        assert worker.exitcode == 0
    outcomes = [results.get(timeout=5) for _ in workers]

    paths = {path for path, _ in outcomes}
    assert len(paths) == 1
    assert all(calls > 1 for _, calls in outcomes)  # both really tokenized, at the same time
    path = Path(paths.pop())
    assert path.read_bytes() == reference
    assert sorted(p.name for p in path.parent.iterdir()) == ["train.bin", "train.json"]  # no temp files left
