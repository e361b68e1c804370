"""Preparing a corpus into sharded token files: the same texts as reading it whole, in bounded pieces, in
parallel or in shards with the same bytes, resumable, and nothing half-written ever trusted."""

import errno
import json
import logging
import os
import random
import stat

import numpy as np
import pytest

from lightning_llm import atomic
from lightning_llm.data import shards
from lightning_llm.data.corpus import split_corpus
from lightning_llm.data.shards import MANIFEST, SplitRule, TokenShards, prepare, read_manifest, sample_texts
from lightning_llm.data.sources import SourceError, pydoc_topics, read_text_files
from lightning_llm.data.streams import Corpus, paragraphs
from lightning_llm.tokenizers import CacheWriteError
from lightning_llm.tokenizers.pieces import settled_pieces, text_pieces
from tests.conftest import read_only_folder
from tests.data.conftest import ByteTokenizer

RULE = SplitRule(val_fraction=0.1, test_fraction=0.1, seed=1234)
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "wizards"]


def write_corpus(folder, files=3, paragraphs_per_file=60, seed=0):
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        lines = [" ".join(rng.choices(WORDS, k=rng.randint(3, 30))) for _ in range(paragraphs_per_file)]
        (folder / f"{index}.txt").write_text("\n\n".join(lines) + "\n")
    return folder


def all_tokens(folder, manifest, split):
    shards_ = TokenShards(folder, split, manifest)
    return np.asarray(shards_[0 : len(shards_)])


def expected_tokens(texts, tokenizer):
    ids = []
    for text in texts:
        ids += tokenizer.encode(text) + [tokenizer.eos_id]
    return np.array(ids)


def test_the_texts_are_those_of_the_corpus_read_whole(tokenizer, tmp_path):
    """Streaming changes nothing: each split holds exactly the texts split_corpus makes of the whole files."""
    corpus_dir = write_corpus(tmp_path / "corpus")
    corpus = Corpus("text", (str(corpus_dir / "*.txt"),))
    folder, manifest = prepare(corpus, tokenizer, RULE, tmp_path / "cache")
    whole = split_corpus(read_text_files([str(corpus_dir / "*.txt")]), val_fraction=0.1, test_fraction=0.1)
    for split in ("train", "val", "test"):
        assert np.array_equal(
            all_tokens(folder, manifest, split), expected_tokens(whole.texts[split], tokenizer)
        )
    assert read_manifest(folder) == manifest and manifest["tokens"]["train"] > manifest["tokens"]["val"] > 0


def test_the_builtin_corpus_is_one_unit_and_matches_too(tokenizer, tmp_path):
    folder, manifest = prepare(Corpus("pydoc"), tokenizer, RULE, tmp_path)
    whole = split_corpus(pydoc_topics(), val_fraction=0.1, test_fraction=0.1)
    assert len(manifest["units"]) == 1
    assert np.array_equal(all_tokens(folder, manifest, "val"), expected_tokens(whole.texts["val"], tokenizer))


def test_a_large_file_is_cut_into_units_at_blank_lines(tmp_path):
    path = write_corpus(tmp_path, files=1, paragraphs_per_file=400)
    corpus = Corpus("text", (str(path / "0.txt"),), unit_bytes=2000)
    units = corpus.units()
    assert len(units) > 5 and units[0].start == 0 and units[-1].end == (path / "0.txt").stat().st_size
    text = (path / "0.txt").read_bytes()
    for unit in units[1:]:
        assert text[unit.start - 2 : unit.start] == b"\n\n"  # just after a blank line
    streamed = [p for unit in units for _, p in paragraphs(unit)]
    assert streamed == [p for _, p in paragraphs(Corpus("text", (str(path / "0.txt"),)).units()[0])]


def test_a_long_run_is_cut_where_the_whole_text_would_be(tmp_path, monkeypatch):
    """A run of paragraphs far longer than a piece is encoded in pieces, exactly as text_pieces cuts it."""
    monkeypatch.setattr(shards, "MAX_PIECE_CHARS", 50)
    monkeypatch.setattr(shards, "MAX_BATCH_CHARS", 120)
    rng = random.Random(3)
    paras = [" ".join(rng.choices(WORDS, k=rng.randint(1, 40))) for _ in range(80)]
    (tmp_path / "a.txt").write_text("\n\n".join(paras))
    tokenizer = ByteTokenizer()
    rule = SplitRule(0.0, 0.0, 0)  # one run: the whole file
    folder, manifest = prepare(Corpus("text", (str(tmp_path / "a.txt"),)), tokenizer, rule, tmp_path / "c")
    pieces = list(text_pieces("\n\n".join(paras), 50))
    assert all(len(piece) <= 50 for piece in pieces) and len(pieces) > 20
    assert np.array_equal(
        all_tokens(folder, manifest, "train"), expected_tokens(["\n\n".join(paras)], tokenizer)
    )


def test_settled_pieces_are_those_of_the_whole_text():
    rng = random.Random(0)
    for _ in range(50):
        text = "".join(rng.choice(["a", "b", " ", "\n", "  ", "word "]) for _ in range(rng.randint(0, 400)))
        rest, got = "", []
        for start in range(0, len(text), 37):  # the text arrives in parts
            settled, rest = settled_pieces(rest + text[start : start + 37], 20)
            got += settled
        assert got + list(text_pieces(rest, 20)) == list(text_pieces(text, 20))


def test_several_processes_and_shards_write_the_same_bytes(make_tokenizer, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lightning_llm.data")
    corpus = Corpus("text", (str(write_corpus(tmp_path / "corpus", files=4) / "*.txt"),))
    one, reference = prepare(corpus, make_tokenizer(), RULE, tmp_path / "one", num_proc=1)
    two, parallel = prepare(corpus, make_tokenizer(), RULE, tmp_path / "two", num_proc=2)  # spawned workers
    assert parallel == reference
    first, none = prepare(corpus, make_tokenizer(), RULE, tmp_path / "three", shard=(0, 2), num_proc=1)
    assert none is None and not (first / MANIFEST).exists()  # the other job's units are missing
    _, joined = prepare(corpus, make_tokenizer(), RULE, tmp_path / "three", shard=(1, 2), num_proc=1)
    assert joined == reference  # the last job writes the manifest
    for split in ("train", "val"):
        assert np.array_equal(all_tokens(two, parallel, split), all_tokens(one, reference, split))
    assert "prepared 2 of 4 units" in caplog.text


def test_a_prepare_that_dies_leaves_no_manifest_and_resumes(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lightning_llm.data")
    corpus = Corpus("text", (str(write_corpus(tmp_path / "corpus", files=3) / "*.txt"),))

    class Dying(ByteTokenizer):
        def encode_batch(self, texts):
            if any("dies" in text for text in texts):
                raise KeyboardInterrupt  # as a kill would stop it, mid-unit
            return super().encode_batch(texts)

    (tmp_path / "corpus" / "1.txt").write_text("it dies here\n")
    with pytest.raises(KeyboardInterrupt):
        prepare(corpus, Dying(), RULE, tmp_path / "cache", num_proc=1)
    folder = next((tmp_path / "cache" / "tokens").iterdir())
    assert not (folder / MANIFEST).exists() and not list(folder.rglob("*.tmp-*"))
    assert sorted(p.name for p in (folder / "units").glob("*.json")) == ["000000.json"]  # unit 0 is done
    _, manifest = prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=1)
    assert manifest is not None and "prepared 2 of 3 units" in caplog.text  # only the missing ones


def test_a_damaged_unit_is_prepared_again(tmp_path):
    corpus = Corpus("text", (str(write_corpus(tmp_path / "corpus", files=2) / "*.txt"),))
    folder, reference = prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=1)
    (folder / MANIFEST).unlink()
    with open(folder / "units" / "000001.train.bin", "ab") as file:
        file.write(b"\0\0")  # a size its sidecar does not vouch for
    tokenizer = ByteTokenizer()
    _, again = prepare(corpus, tokenizer, RULE, tmp_path / "cache", num_proc=1)
    assert again == reference and tokenizer.calls > 0


def test_token_shards_slice_across_units(tmp_path):
    corpus = Corpus("text", (str(write_corpus(tmp_path / "corpus", files=3) / "*.txt"),))
    folder, manifest = prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=1)
    tokens = TokenShards(folder, "train", manifest)
    whole = np.concatenate(
        [np.fromfile(p, dtype=np.uint16) for p in sorted((folder / "units").glob("*.train.bin"))]
    )
    assert len(tokens) == len(whole)
    edge = manifest["units"][0]["train"]
    for start, stop in [(0, 5), (edge - 3, edge + 4), (0, len(whole)), (len(whole) - 2, len(whole))]:
        assert np.array_equal(tokens[start:stop], whole[start:stop])
    assert tokens.max_id() == int(whole.max())


def test_the_tokenizer_sample_is_spread_over_the_corpus(tmp_path):
    corpus = Corpus(
        "text", (str(write_corpus(tmp_path / "corpus", files=4, paragraphs_per_file=200) / "*.txt"),)
    )
    sample = list(sample_texts(corpus, RULE, max_chars=4000))
    size = sum(len(text) for text in sample)
    assert 3000 < size < 5000
    starts = {text.split("\n\n")[0] for text in sample}
    for unit in corpus.units():  # every file gave some of it
        assert any(p in starts or any(p in text for text in sample) for _, p in list(paragraphs(unit))[:20])


# --------------------------------------------------------------------------- every format streams


def test_jsonl_parquet_and_saved_datasets_give_the_same_tokens(tokenizer, tmp_path):
    rng = random.Random(5)
    docs = ["\n\n".join(" ".join(rng.choices(WORDS, k=8)) for _ in range(3)) for _ in range(150)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": doc}) + "\n" for doc in docs))
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": docs}), tmp_path / "d.parquet", row_group_size=40)
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": docs}).save_to_disk(str(tmp_path / "ds"))
    expected = split_corpus(docs, val_fraction=0.1, test_fraction=0.1).texts["train"]
    for kind, path in [("jsonl", "d.jsonl"), ("parquet", "d.parquet"), ("dataset", "ds")]:
        corpus = Corpus(kind, (str(tmp_path / path),))
        folder, manifest = prepare(corpus, tokenizer, RULE, tmp_path / kind, num_proc=1)
        assert np.array_equal(all_tokens(folder, manifest, "train"), expected_tokens(expected, tokenizer)), (
            kind
        )
    assert len(Corpus("parquet", (str(tmp_path / "d.parquet"),)).units()) == 4  # one per row group


def test_bad_records_name_the_file_and_line(tmp_path):
    good = "".join(json.dumps({"text": f"record {i}"}) + "\n" for i in range(50))
    (tmp_path / "d.jsonl").write_text(good + '{"body": "x"}\n')
    corpus = Corpus("jsonl", (str(tmp_path / "d.jsonl"),), unit_bytes=300)  # the bad line is in a later unit
    with pytest.raises(
        SourceError, match=rf"{tmp_path / 'd.jsonl'}:51: no field 'text'; fields present: body"
    ):
        prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=1)
    (tmp_path / "t.txt").write_bytes(b"fine\n\n" * 100 + b"bad \xff byte\n")
    with pytest.raises(SourceError, match=r"t.txt: not UTF-8 text \(byte 0xff at offset 604\)"):
        prepare(
            Corpus("text", (str(tmp_path / "t.txt"),), unit_bytes=100), ByteTokenizer(), RULE, tmp_path / "c2"
        )
    (tmp_path / "e.txt").write_text("\n  \n")
    with pytest.raises(SourceError, match="e.txt: file is empty"):
        prepare(Corpus("text", (str(tmp_path / "e.txt"),)), ByteTokenizer(), RULE, tmp_path / "c3")


# --------------------------------------------------------------------------- an unusable cache folder


def test_a_cache_dir_under_a_file_is_one_clear_error(tokenizer, tmp_path):
    (tmp_path / "file").write_text("not a folder")
    cache_dir = tmp_path / "file" / "cache"
    with pytest.raises(CacheWriteError) as error:
        prepare(Corpus("pydoc"), tokenizer, RULE, cache_dir)
    message = str(error.value)
    assert message.startswith(f"paths.cache_dir={cache_dir}: cannot write the token cache (Not a directory)")
    assert "LIGHTNING_LLM_CACHE" in message and "\n" not in message


def test_a_read_only_cache_dir_is_one_clear_error(tokenizer, tmp_path):
    cache_dir = read_only_folder(tmp_path / "cache")
    try:
        with pytest.raises(CacheWriteError, match=r"cannot write the token cache \(Permission denied\)"):
            prepare(Corpus("pydoc"), tokenizer, RULE, cache_dir)
    finally:
        cache_dir.chmod(0o755)


@pytest.mark.parametrize("failing", [1, 4], ids=["bin", "sidecar"])
def test_a_full_disk_leaves_nothing_a_later_run_trusts(tmp_path, monkeypatch, failing):
    _, reference = prepare(Corpus("pydoc"), ByteTokenizer(), RULE, tmp_path / "reference")
    calls = iter(range(1, 100))
    real_fsync = os.fsync

    def fsync(fd: int) -> None:
        if stat.S_ISREG(os.fstat(fd).st_mode) and next(calls) == failing:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real_fsync(fd)

    monkeypatch.setattr(atomic.os, "fsync", fsync)
    with pytest.raises(CacheWriteError, match=r"No space left on device\); free some space"):
        prepare(Corpus("pydoc"), ByteTokenizer(), RULE, tmp_path / "cache")
    folder = next((tmp_path / "cache" / "tokens").iterdir())
    assert not list(folder.rglob("*.tmp-*")) and not (folder / MANIFEST).exists()
    monkeypatch.undo()
    tokenizer = ByteTokenizer()
    _, again = prepare(Corpus("pydoc"), tokenizer, RULE, tmp_path / "cache")
    assert tokenizer.calls > 0 and again == reference


def test_paragraphs_read_in_blocks_are_those_of_the_whole_file(tmp_path, monkeypatch):
    """Blank lines of spaces, several in a row, CRLF and lone CR, indentation, blocks cut anywhere."""
    from lightning_llm.data import streams
    from lightning_llm.data.corpus import split_paragraphs
    from lightning_llm.data.sources import read_text_file

    rng = random.Random(7)
    pieces = ["word", "  indented", "\n", "\n\n", "\n  \n", "\r\n", "\r\n\r\n", "\r", " \t\n\n\n", "naïve ☕"]
    for attempt in range(30):
        path = tmp_path / f"{attempt}.txt"
        path.write_bytes("".join(rng.choice(pieces) for _ in range(300)).encode())
        monkeypatch.setattr(streams, "_BLOCK_BYTES", rng.randint(1, 40))
        try:
            whole = split_paragraphs(read_text_file(path))
        except SourceError:
            continue  # a blank file
        for unit_bytes in (10**9, rng.randint(5, 200)):  # one unit, or many cut at blank lines
            units = Corpus("text", (str(path),), unit_bytes=unit_bytes).units()
            assert [p for unit in units for _, p in paragraphs(unit)] == whole, (attempt, unit_bytes)


def test_a_saved_dataset_rewritten_in_place_is_prepared_again(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": ["one paragraph"] * 50}).save_to_disk(str(tmp_path / "ds"))
    corpus = Corpus("dataset", (str(tmp_path / "ds"),))
    before = corpus.fingerprint()
    datasets.Dataset.from_dict({"text": ["another paragraph"] * 50}).save_to_disk(str(tmp_path / "ds2"))
    for path in (tmp_path / "ds2").iterdir():  # the same folder, its files replaced
        os.replace(path, tmp_path / "ds" / path.name)
    assert corpus.fingerprint() != before
