"""Preparing a corpus into sharded token files: the same texts as reading it whole, in bounded pieces, in
parallel or in shards with the same bytes, resumable, and nothing half-written ever trusted."""

import dataclasses
import errno
import json
import logging
import os
import pickle
import random
import stat
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lightning_llm import atomic
from lightning_llm.data import shards
from lightning_llm.data.corpus import split_corpus
from lightning_llm.data.shards import MANIFEST, SplitRule, TokenShards, prepare, read_manifest, sample_texts
from lightning_llm.data.sources import SourceError, pydoc_topics, read_text_files
from lightning_llm.data.streams import Corpus, Unit, parts
from lightning_llm.tokenizers import CacheWriteError
from lightning_llm.tokenizers.pieces import settled_pieces, text_pieces
from tests.conftest import read_only_folder
from tests.data.conftest import ByteTokenizer

RULE = SplitRule(val_fraction=0.1, test_fraction=0.1, seed=1234)
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "wizards"]


def paragraphs(unit: Unit) -> Iterator[tuple[int, str]]:
    """``(document number, paragraph)`` for every non-blank paragraph of ``unit``, each whole: its ``parts``
    joined, as a text's paragraphs are compared with a whole read."""
    number, pieces = 0, []
    for part in parts(unit):
        if not part.continued and pieces:
            yield number, "".join(pieces)
            pieces = []
        number = part.document
        pieces.append(part.text)
    if pieces:
        yield number, "".join(pieces)


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
    first = sorted(corpus_dir.glob("*.txt"))[0]
    first.write_bytes("\ufeff".encode() + first.read_bytes())  # a byte-order mark: not text, either way
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
    assert not list((two / "units").glob(".writer-*"))  # the spawned workers' marks went with their units
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
    assert not list(folder.rglob(".writer-*"))  # a failure takes its mark away; only a kill leaves one
    assert sorted(p.name for p in (folder / "units").glob("*.json")) == ["000000.json"]  # unit 0 is done
    _, manifest = prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=1)
    assert manifest is not None and "prepared 2 of 3 units" in caplog.text  # only the missing ones


def test_a_second_prepare_of_the_same_cache_waits_for_the_first_and_encodes_nothing(tmp_path, caplog):
    """Two sweep jobs on one corpus: the second waits on the folder's lock while the first encodes, then
    finds the cache complete. (Threads: ``flock`` holds between them as between processes.)"""
    import threading

    caplog.set_level(logging.INFO, logger="lightning_llm.data")
    corpus = Corpus("text", (str(write_corpus(tmp_path / "corpus", files=2) / "*.txt"),))
    first, second = ByteTokenizer(delay=0.3), ByteTokenizer()
    results = {}
    job = threading.Thread(
        target=lambda: results.update(first=prepare(corpus, first, RULE, tmp_path, num_proc=1))
    )
    job.start()
    while first.calls == 0:  # the first is encoding, and holds the lock
        time.sleep(0.01)
    results["second"] = prepare(corpus, second, RULE, tmp_path, num_proc=1)
    job.join()
    assert results["second"] == results["first"] and results["first"][1] is not None
    assert first.calls > 0 and second.calls == 0
    assert "waiting for another prepare of" in caplog.text and "prepared meanwhile" in caplog.text


def test_an_unreadable_manifest_is_written_again_and_said_so(tmp_path, caplog):
    corpus = Corpus("text", (str(write_corpus(tmp_path / "corpus", files=2) / "*.txt"),))
    folder, reference = prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=1)
    (folder / MANIFEST).write_text("{ garbage")
    tokenizer = ByteTokenizer()
    assert prepare(corpus, tokenizer, RULE, tmp_path / "cache", num_proc=1) == (folder, reference)
    assert tokenizer.calls == 0  # the units were whole: only the manifest was written again
    assert f"its {MANIFEST} is unreadable or of another format; writing it again" in caplog.text


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
    assert manifest["max_id"]["train"] == int(whole.max())
    starts = [0, edge - 3, edge, 7, len(whole) - 9, edge - 9]  # the second one crosses into unit 1
    assert np.array_equal(tokens.windows(starts, 9), np.stack([whole[s : s + 9] for s in starts]))
    assert tokens.windows([], 9).shape == (0, 9)
    with pytest.raises(IndexError, match="outside"):
        tokens.windows([len(whole) - 8], 9)


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
    expected = split_corpus(docs, val_fraction=0.1, test_fraction=0.1, by="document").texts["train"]
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
    with pytest.raises(SourceError, match=r"t.txt:201: not UTF-8 text \(byte 0xff at offset 604\)"):
        prepare(
            Corpus("text", (str(tmp_path / "t.txt"),), unit_bytes=100), ByteTokenizer(), RULE, tmp_path / "c2"
        )
    (tmp_path / "e.txt").write_text("\n  \n")
    with pytest.raises(SourceError, match="e.txt: holds only whitespace"):
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


def test_a_saved_dataset_rewritten_in_place_is_prepared_again(tmp_path):
    datasets = pytest.importorskip("datasets")
    datasets.Dataset.from_dict({"text": ["one paragraph"] * 50}).save_to_disk(str(tmp_path / "ds"))
    corpus = Corpus("dataset", (str(tmp_path / "ds"),))
    before = corpus.fingerprint()
    datasets.Dataset.from_dict({"text": ["another paragraph"] * 50}).save_to_disk(str(tmp_path / "ds2"))
    for path in (tmp_path / "ds2").iterdir():  # the same folder, its files replaced
        os.replace(path, tmp_path / "ds" / path.name)
    assert corpus.fingerprint() != before


# --------------------------------------------------------------------------- a cached run reads nothing


def test_a_cached_run_opens_no_corpus_file_and_plans_no_unit(tmp_path, monkeypatch):
    """The key is the file list's metadata: a file over the unit size with no blank line (whose cuts would
    each scan to the file's end) is neither planned nor opened, not even when its bytes became garbage."""
    from lightning_llm.data import streams

    rng = random.Random(2)
    path = tmp_path / "corpus" / "lines.txt"
    path.parent.mkdir()
    path.write_text("".join(" ".join(rng.choices(WORDS, k=12)) + "\n" for _ in range(400)))
    corpus = Corpus("text", (str(path.parent),), unit_bytes=2000)
    assert len(corpus.units()) == 1  # no blank line to cut at
    folder, reference = prepare(corpus, ByteTokenizer(), SplitRule(0.0, 0.0, 0), tmp_path / "cache")
    before = path.stat()
    path.write_bytes(b"\xff" * before.st_size)  # same size, same time: only metadata is looked at
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))

    def no_reading(*args, **kwargs):
        raise AssertionError("the corpus was read")

    monkeypatch.setattr(streams, "open", no_reading, raising=False)
    monkeypatch.setattr(Corpus, "units", no_reading)
    tokenizer = ByteTokenizer()
    assert prepare(corpus, tokenizer, SplitRule(0.0, 0.0, 0), tmp_path / "cache") == (folder, reference)
    assert tokenizer.calls == 0
    assert reference["max_id"]["train"] == int(all_tokens(folder, reference, "train").max())


# --------------------------------------------------------------------------- a damaged cache


def damage_truncated(folder):
    os.truncate(folder / "units" / "000001.train.bin", 10)


def damage_deleted(folder):
    (folder / "units" / "000001.val.bin").unlink()


def damage_manifest_sizes(folder):
    manifest = json.loads((folder / MANIFEST).read_text())
    manifest["units"][0]["train"] += 5
    manifest["tokens"]["train"] += 5
    (folder / MANIFEST).write_text(json.dumps(manifest))


def damage_manifest_last_unit_left_out(folder):  # consistently: the counts still add up
    manifest = json.loads((folder / MANIFEST).read_text())
    last = manifest["units"].pop()
    for split in manifest["tokens"]:
        manifest["tokens"][split] -= last[split]
    (folder / MANIFEST).write_text(json.dumps(manifest))


def damage_manifest_units(folder):
    manifest = json.loads((folder / MANIFEST).read_text())
    (folder / MANIFEST).write_text(json.dumps({"format": manifest["format"], "units": []}))


@pytest.mark.parametrize(
    ("damage", "named", "encodes"),
    [
        (damage_truncated, "000001.train.bin holds 10 bytes", True),
        (damage_deleted, "000001.val.bin is missing", True),
        (damage_manifest_sizes, "000000.train.bin holds", False),
        (damage_manifest_units, "manifest.json: 'units' is not a list", False),
        (damage_manifest_last_unit_left_out, "manifest.json lists 2 units, and the folder holds more", False),
    ],
)
def test_a_damaged_cache_is_found_when_opened_and_prepared_again(tmp_path, caplog, damage, named, encodes):
    """Opening a cache stats each shard against the manifest: what does not match is prepared again (only
    the damaged units; a bad manifest is rebuilt from the units' sidecars without encoding anything)."""
    caplog.set_level(logging.INFO, logger="lightning_llm.data")
    corpus = Corpus("text", (str(write_corpus(tmp_path / "corpus", files=3) / "*.txt"),))
    folder, reference = prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=1)
    damage(folder)
    assert named in shards.check_cache(folder, read_manifest(folder) or {"format": 3})
    tokenizer = ByteTokenizer()
    assert prepare(corpus, tokenizer, RULE, tmp_path / "cache", num_proc=1) == (folder, reference)
    assert (tokenizer.calls > 0) == encodes and named in caplog.text
    assert ("prepared 1 of 3 units" in caplog.text) == encodes
    assert shards.check_cache(folder, read_manifest(folder)) is None


def test_temporary_files_a_killed_prepare_left_are_removed(tmp_path):
    """Only the framework's own temporary names, of a process that is gone and that no other host claims."""
    import socket
    import subprocess
    import sys

    corpus = Corpus("text", (str(write_corpus(tmp_path / "corpus", files=2) / "*.txt"),))
    folder, _ = prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=1)
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True)
    dead = int(gone.stdout)
    units = folder / "units"
    stale = [units / f"000000.train.bin.tmp-{dead}-0123abcd", folder / f"manifest.json.tmp-{dead}-89abcdef"]
    live = units / f"000001.json.tmp-{os.getpid()}-0123abcd"  # this process: it may be writing it
    remote = units / "000001.val.bin.tmp-424242-0123abcd"
    (units / f".writer-{socket.gethostname()}x-424242").touch()  # a process on another host marked it
    foreign = units / f"notes.txt.tmp-{dead}-0123abcd"  # not a name the framework writes
    for path in [*stale, live, remote, foreign]:
        path.write_bytes(b"partial")
    (folder / MANIFEST).unlink()  # the next prepare has work to do, as after a kill
    prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=1)
    assert not any(path.exists() for path in stale)
    assert live.exists() and remote.exists() and foreign.exists()
    assert not list(units.glob(f".writer-{socket.gethostname()}-*"))  # its own mark is gone


# --------------------------------------------------------------------------- long lines, the sample


def test_a_line_with_no_end_is_read_in_bounded_parts_with_the_same_tokens(tmp_path, monkeypatch):
    """A huge paragraph (one line, no newline) is read a block at a time and yielded in parts of bounded
    size; its split is chosen by its first SPLIT_KEY_CHARS characters in both paths, and the tokens are those
    of the corpus read whole."""
    from lightning_llm.data import corpus as corpus_module
    from lightning_llm.data import streams

    monkeypatch.setattr(streams, "_BLOCK_BYTES", 64)
    monkeypatch.setattr(corpus_module, "SPLIT_KEY_CHARS", 300)
    monkeypatch.setattr(streams, "SPLIT_KEY_CHARS", 300)
    monkeypatch.setattr(streams, "PART_CHARS", 600)
    monkeypatch.setattr(shards, "MAX_PIECE_CHARS", 50)
    rng = random.Random(4)
    words = [*WORDS, "naïve", "☕", "  ", "\t"]
    paragraphs_ = [" ".join(rng.choices(words, k=rng.randint(1, 900))) for _ in range(40)]
    text = "\n\n".join(paragraphs_) + "   \n\n  " + " ".join(rng.choices(words, k=3000))  # no final newline
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "a.txt").write_text(text)
    corpus = Corpus("text", (str(tmp_path / "c" / "a.txt"),))
    (unit,) = corpus.units()
    pieces = list(streams.parts(unit))
    assert max(len(part.text) for part in pieces) <= 600 + 64 and any(part.continued for part in pieces)
    assert [p for _, p in paragraphs(unit)] == split_corpus([text], val_fraction=0, test_fraction=0).texts[
        "train"
    ][0].split("\n\n")
    rule = SplitRule(0.3, 0.2, 5)
    folder, manifest = prepare(corpus, ByteTokenizer(), rule, tmp_path / "cache")
    whole = split_corpus(
        read_text_files([str(tmp_path / "c" / "a.txt")]), val_fraction=0.3, test_fraction=0.2, seed=5
    )
    for split in ("train", "val", "test"):
        assert np.array_equal(
            all_tokens(folder, manifest, split), expected_tokens(whole.texts[split], ByteTokenizer())
        ), split


def test_blocks_of_a_text_file_stop_short_of_a_split_character(tmp_path, monkeypatch):
    from lightning_llm.data import streams

    monkeypatch.setattr(streams, "_BLOCK_BYTES", 5)
    (tmp_path / "a.txt").write_bytes("ab☕cd\r\nnaïve ☕☕\r\r\n".encode() * 20)
    (unit,) = Corpus("text", (str(tmp_path / "a.txt"),)).units()
    blocks = [block for _, block in streams._blocks(unit)]
    assert max(len(block.encode()) for block in blocks) <= 5 + 3  # a block is read on to a whole character
    assert "".join(blocks) == "ab☕cd\nnaïve ☕☕\n\n" * 20


@pytest.mark.parametrize("max_chars", [1, 7, 1000, 100_000])
def test_the_tokenizer_sample_stops_at_its_budget(tmp_path, max_chars):
    """A paragraph larger than the budget (a one-line file) is cut to it, not taken whole."""
    rng = random.Random(1)
    (tmp_path / "one.txt").write_text(" ".join(rng.choices(WORDS, k=60_000)))
    corpus = Corpus("text", (str(tmp_path / "one.txt"),))
    sample = "".join(sample_texts(corpus, SplitRule(0.0, 0.0, 0), max_chars))
    assert len(sample) == max_chars and (tmp_path / "one.txt").read_text().startswith(sample)
    with pytest.raises(ValueError, match="train_max_chars must be >= 1"):
        list(sample_texts(corpus, RULE, 0))


# --------------------------------------------------------------------------- records go whole to a split


def test_each_record_goes_whole_to_one_split(tmp_path):
    """A JSON Lines record (a Parquet or dataset row too) is a document: all its paragraphs share a split;
    the paragraphs of a text file are split one by one."""
    rng = random.Random(8)
    docs = ["\n\n".join(" ".join(rng.choices(WORDS, k=6)) for _ in range(8)) for _ in range(200)]
    (tmp_path / "d.jsonl").write_text("".join(json.dumps({"text": doc}) + "\n" for doc in docs))
    corpus = Corpus("jsonl", (str(tmp_path / "d.jsonl"),))
    texts = {split: list(shards.split_texts(corpus, RULE, split)) for split in ("train", "val", "test")}
    assert sorted(text for split in texts.values() for text in split) == sorted(docs)  # each whole
    assert texts["val"] and texts["test"]
    (tmp_path / "d.txt").write_text("\n\n".join(docs))
    text_corpus = Corpus("text", (str(tmp_path / "d.txt"),))
    assert len(list(shards.split_texts(text_corpus, RULE, "val"))) > len(texts["val"])  # by paragraph


# --------------------------------------------------------------------------- folders, bad files


def test_a_folder_in_paths_means_the_files_of_its_format_under_it(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    snapshot = tmp_path / "snap"
    (snapshot / "data" / "more").mkdir(parents=True)
    (snapshot / "README.md").write_text("# a dataset card")
    pq.write_table(pa.table({"text": ["one", "two"]}), snapshot / "data" / "b.parquet")
    pq.write_table(pa.table({"text": ["three"]}), snapshot / "data" / "more" / "a.parquet")
    assert [Path(u.path).name for u in Corpus("parquet", (str(snapshot),)).units()] == [
        "b.parquet",
        "a.parquet",
    ]
    with pytest.raises(FileNotFoundError, match=r"no \.jsonl files under the folder"):
        Corpus("jsonl", (str(snapshot),)).units()
    with pytest.raises(SourceError, match=r"no state.json.*\.parquet files.*data=parquet"):
        Corpus("dataset", (str(snapshot),)).units()
    with pytest.raises(FileNotFoundError, match="no such folder: '.*missing'"):
        Corpus("dataset", (str(tmp_path / "missing"),)).fingerprint()


def test_damaged_parquet_and_dataset_files_are_one_line_naming_the_file(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["word " * 50] * 500}), tmp_path / "p.parquet")
    data = bytearray((tmp_path / "p.parquet").read_bytes())
    data[100:400] = b"A" * 300  # inside the first data page: the footer still reads
    (tmp_path / "p.parquet").write_bytes(bytes(data))
    with pytest.raises(SourceError, match=r"p\.parquet row group 0: cannot be read \(.+\)$"):
        prepare(Corpus("parquet", (str(tmp_path / "p.parquet"),)), ByteTokenizer(), RULE, tmp_path / "c1")
    datasets = pytest.importorskip("datasets")
    for name in ("truncated", "state"):
        datasets.Dataset.from_dict({"text": ["some words here"] * 2000}).save_to_disk(str(tmp_path / name))
    (arrow,) = (tmp_path / "truncated").glob("*.arrow")
    os.truncate(arrow, arrow.stat().st_size // 3)
    with pytest.raises(SourceError, match=rf"{arrow}: not a readable Arrow file"):
        prepare(Corpus("dataset", (str(tmp_path / "truncated"),)), ByteTokenizer(), RULE, tmp_path / "c2")
    (tmp_path / "state" / "state.json").write_text("{bad")
    with pytest.raises(SourceError, match=r"state/state\.json: not valid JSON"):
        prepare(Corpus("dataset", (str(tmp_path / "state"),)), ByteTokenizer(), RULE, tmp_path / "c3")
    (tmp_path / "d.jsonl").write_bytes(b'{"text": "fine"}\n' * 30 + b'{"text": "bad \xff"}\n')
    with pytest.raises(SourceError, match=r"d\.jsonl:31: not UTF-8 text \(byte 0xff at offset 524\)"):
        prepare(Corpus("jsonl", (str(tmp_path / "d.jsonl"),)), ByteTokenizer(), RULE, tmp_path / "c4")


# --------------------------------------------------------------------------- many units, links, corpus errors


def open_files_under(folder: Path) -> int:
    """How many of this process's file descriptors are open on files under ``folder`` (Linux)."""
    count = 0
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:  # the descriptor listdir itself used, closed meanwhile
            continue
        count += target.startswith(f"{folder}{os.sep}")
    return count


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="counts descriptors in /proc")
def test_any_number_of_units_reads_within_a_small_budget_of_open_files(tmp_path, monkeypatch):
    """A corpus of many tiny files is many units: reading them all keeps at most _MAX_OPEN_MAPS mapped, so a
    small ``ulimit -n`` (here the descriptors already open plus 40) reads them all, with the same tokens."""
    import resource

    rng = np.random.default_rng(0)
    sizes = [int(size) for size in rng.integers(0, 40, 400)]  # some empty, as a split of a tiny file is
    (tmp_path / "units").mkdir()
    for index, size in enumerate(sizes):
        for split in ("train", "val", "test"):
            ids = rng.integers(0, 2**16, size if split == "train" else 0).astype(np.uint16)
            ids.tofile(tmp_path / "units" / f"{index:06d}.{split}.bin")
    whole = np.concatenate(
        [np.fromfile(tmp_path / "units" / f"{i:06d}.train.bin", dtype=np.uint16) for i in range(len(sizes))]
    )
    manifest = {"dtype": "uint16", "units": [{"train": size, "val": 0, "test": 0} for size in sizes]}
    monkeypatch.setattr(shards, "_MAX_OPEN_MAPS", 8)
    tokens = TokenShards(tmp_path, "train", manifest)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (len(os.listdir("/proc/self/fd")) + 40, hard))
    try:
        width = 65
        for start in range(0, len(tokens) - width, width - 1):  # every unit, in order, as an epoch reads
            assert np.array_equal(tokens[start : start + width], whole[start : start + width])
        assert open_files_under(tmp_path) <= 8
        for _ in range(300):  # and in random order, across unit edges, from units read long ago
            start = int(rng.integers(0, len(tokens)))
            stop = min(len(tokens), start + int(rng.integers(1, 200)))
            assert np.array_equal(tokens[start:stop], whole[start:stop])
        assert open_files_under(tmp_path) <= 8
        assert np.array_equal(tokens[0 : len(tokens)], whole)  # every unit in one slice
        for width in (5, 65):  # a batch read at once, as PackedWindows reads: in one unit, across units
            for _ in range(40):
                starts = rng.integers(0, len(tokens) - width + 1, 12)
                rows = tokens.windows(starts.tolist(), width)
                assert rows.dtype == np.int64
                assert np.array_equal(rows, np.stack([whole[s : s + width] for s in starts]))
        assert open_files_under(tmp_path) <= 8
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def dead_pid() -> int:
    import subprocess
    import sys

    return int(
        subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True).stdout
    )


@pytest.mark.parametrize("linked", ["units", "key"])
def test_a_linked_cache_folder_is_refused_and_nothing_is_deleted_through_it(tmp_path, linked):
    """Every path the framework deletes is one it wrote: a token folder, or its units/, that is a symbolic
    link is refused in one line naming it, and the files named like a killed prepare's in its target stay."""
    corpus = Corpus("text", (str(write_corpus(tmp_path / "corpus", files=2) / "*.txt"),))
    folder, _ = prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=1)
    (folder / MANIFEST).unlink()  # the next prepare has work to do: it would clean up first
    link = folder / "units" if linked == "units" else folder
    target = tmp_path / "elsewhere"
    link.rename(target)
    link.symlink_to(target, target_is_directory=True)
    dead = dead_pid()
    units = target if linked == "units" else target / "units"
    theirs = [units / f"000000.json.tmp-{dead}-deadbeef", units / f"000001.train.bin.tmp-{dead}-0123abcd"]
    if linked == "key":
        theirs.append(target / f"manifest.json.tmp-{dead}-deadbeef")
    for path in theirs:
        path.write_bytes(b"not the framework's")
    with pytest.raises(shards.TokenCacheError) as error:
        prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=1)
    assert str(error.value).startswith(f"token cache {link} is a symbolic link;") and "\n" not in str(
        error.value
    )
    assert all(path.read_bytes() == b"not the framework's" for path in theirs)


def test_a_linked_lock_file_is_refused_and_its_target_left_alone(tmp_path):
    corpus = Corpus("text", (str(write_corpus(tmp_path / "corpus", files=2) / "*.txt"),))
    folder, _ = prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=1)
    (folder / MANIFEST).unlink()
    lock = folder / "units" / ".prepare.lock"
    lock.unlink()
    lock.symlink_to(tmp_path / "target")  # opened for writing, it would create its target
    with pytest.raises(shards.TokenCacheError, match=f"token cache {lock} is a symbolic link;"):
        prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=1)
    assert not (tmp_path / "target").exists()


def test_a_linked_cache_dir_or_tokens_folder_is_a_cache_as_any(tmp_path):
    """A cache on another disk through a link (~/.cache -> /scratch) is used: only links below are refused."""
    corpus = Corpus("text", (str(write_corpus(tmp_path / "corpus", files=2) / "*.txt"),))
    (tmp_path / "scratch" / "tokens").mkdir(parents=True)
    (tmp_path / "cache").symlink_to(tmp_path / "scratch", target_is_directory=True)
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "tokens").symlink_to(tmp_path / "scratch" / "tokens", target_is_directory=True)
    _, reference = prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=1)
    tokenizer = ByteTokenizer()
    assert prepare(corpus, tokenizer, RULE, tmp_path / "other", num_proc=1)[1] == reference
    assert tokenizer.calls == 0 and reference is not None


def test_an_unreadable_corpus_file_is_named_not_the_cache(tmp_path):
    """An OSError reading a corpus file (here EACCES) is that file's, not the cache's: it names the file."""
    corpus_dir = write_corpus(tmp_path / "corpus", files=2)
    unreadable = corpus_dir / "1.txt"
    unreadable.chmod(0)
    try:
        try:
            unreadable.read_bytes()
        except PermissionError:
            pass
        else:
            pytest.skip("this user reads unreadable files (root)")
        with pytest.raises(Exception) as error:  # noqa: PT011 - the reading code's own error passes through
            prepare(Corpus("text", (str(corpus_dir / "*.txt"),)), ByteTokenizer(), RULE, tmp_path / "c")
    finally:
        unreadable.chmod(0o644)
    assert not isinstance(error.value, CacheWriteError) and "cache_dir" not in str(error.value)
    assert str(unreadable) in str(error.value) and "\n" not in str(error.value)


@pytest.mark.parametrize("where", ["planning", "reading"])
def test_an_oserror_for_a_corpus_file_passes_through_as_it_is(tmp_path, monkeypatch, where):
    """Whatever the reading code raises for a corpus file reaches the caller as it was raised, an OSError
    too: only the cache's own OSErrors are worded as the cache's (CacheWriteError)."""
    corpus = Corpus("text", (str(write_corpus(tmp_path / "corpus", files=3) / "*.txt"),))
    refused = PermissionError(errno.EACCES, "Permission denied", str(tmp_path / "corpus" / "1.txt"))
    if where == "planning":

        def units(self):
            raise refused

        monkeypatch.setattr(Corpus, "units", units)
    else:

        def read(unit):
            if unit.path == refused.filename:  # raised by the first next(): this is a generator
                raise refused
            yield from parts(unit)

        monkeypatch.setattr(shards, "parts", read)
    with pytest.raises(PermissionError) as error:
        prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=1)
    assert error.value is refused
    # a preparing process sends it back pickled: the carrier keeps the error whole
    carried = pickle.loads(pickle.dumps(shards._CorpusReadError(refused)))
    assert (carried.error.errno, carried.error.filename) == (errno.EACCES, refused.filename)


@pytest.mark.parametrize("num_proc", [1, 2])
def test_a_corpus_file_gone_after_planning_is_named_not_the_cache(tmp_path, monkeypatch, num_proc):
    """The same for a file that cannot be opened when its unit is read (moved away after the units were
    planned; for any user, root too), in this process or a preparing one."""
    corpus = Corpus("text", (str(write_corpus(tmp_path / "corpus", files=3) / "*.txt"),))
    gone = tmp_path / "moved" / "1.txt"
    planned = corpus.units()
    planned[1] = dataclasses.replace(planned[1], path=str(gone))
    monkeypatch.setattr(Corpus, "units", lambda self: planned)
    with pytest.raises(Exception) as error:  # noqa: PT011 - the reading code's own error passes through
        prepare(corpus, ByteTokenizer(), RULE, tmp_path / "cache", num_proc=num_proc)
    assert not isinstance(error.value, CacheWriteError) and "cache_dir" not in str(error.value)
    assert str(gone) in str(error.value) and "\n" not in str(error.value)
