"""Reading a corpus as streams on hostile input: bounded memory and work per block, one-line errors that
name the file (and line or offset)."""

import builtins
import json
import random
import tracemalloc

import pytest

from lightning_llm.data import corpus as corpus_module
from lightning_llm.data import streams
from lightning_llm.data.corpus import split_paragraphs
from lightning_llm.data.sources import SourceError, read_text_file
from lightning_llm.data.streams import Corpus, Unit, documents, parts


def whole_paragraphs(unit: Unit) -> list[tuple[str, str]]:
    """``(paragraph, key)`` for every paragraph of ``unit``, its parts joined."""
    found: list[list] = []
    for part in parts(unit):
        if part.continued:
            assert found and found[-1][1] == part.key
            found[-1][0] += part.text
        else:
            found.append([part.text, part.key])
    return [(text, key) for text, key in found]


@pytest.fixture
def small_parts(monkeypatch):
    """Blocks of 64 bytes, paragraphs held up to 600 characters, keys of 300."""
    monkeypatch.setattr(streams, "_BLOCK_BYTES", 64)
    monkeypatch.setattr(corpus_module, "SPLIT_KEY_CHARS", 300)
    monkeypatch.setattr(streams, "SPLIT_KEY_CHARS", 300)
    monkeypatch.setattr(streams, "PART_CHARS", 600)


class CountingOpen:
    """``open`` for the streams module, counting the bytes read through it."""

    def __init__(self) -> None:
        self.read = 0

    def __call__(self, *args, **kwargs):
        file = builtins.open(*args, **kwargs)  # noqa: SIM115 - closed by the wrapper
        counter = self

        class Counted:
            def __getattr__(self, name):
                return getattr(file, name)

            def __enter__(self):
                return self

            def __exit__(self, *exc):
                file.close()

            def read(self, *a):
                data = file.read(*a)
                counter.read += len(data)
                return data

            def readline(self, *a):
                data = file.readline(*a)
                counter.read += len(data)
                return data

        return Counted()


# --------------------------------------------------------------------------- a run of whitespace


@pytest.mark.parametrize(
    "layout",
    [
        "good paragraph\n{ws}hello world\n",  # on the paragraph: text follows
        "good paragraph{ws}\n\nnext one\n",  # at its end: a blank line follows
        "good paragraph\n\n{ws}indented\n",  # after a blank line: the next paragraph's indentation
        "{ws}first\n\nsecond",  # at the start of the file
        "good paragraph\n{ws}",  # at the end of the file
    ],
)
def test_a_long_run_of_whitespace_costs_bounded_memory_and_gives_the_same_paragraphs(
    tmp_path, small_parts, layout
):
    """A run of spaces with no blank line (a million in the probe) was copied and stripped on every block:
    quadratic time, and held whole. It is now held as a byte range, read again only if text follows it."""
    text = layout.format(ws=" " * 300_000)
    (tmp_path / "a.txt").write_text(text)
    (unit,) = Corpus("text", (str(tmp_path / "a.txt"),)).units()
    tracemalloc.start()
    try:
        for _ in parts(unit):
            pass
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 100_000, peak  # 300 kB of spaces: none held
    expected = split_paragraphs(text)
    got = whole_paragraphs(unit)
    assert [p for p, _ in got] == expected
    assert [k[:300] for _, k in got] == [p[:300] for p in expected]  # the split of each: its first 300 chars


PIECES = {
    "whitespace runs": [
        "word",
        "x",
        " ",
        "  ",
        "\t",
        "\n",
        "\n\n",
        " \n ",
        "\r\n",
        "\r",
        " " * 50,
        "\u3000",
        "naïve",
    ],
    "blank lines": [
        "word",
        "  indented",
        "\n",
        "\n\n",
        "\n  \n",
        "\r\n",
        "\r\n\r\n",
        "\r",
        " \t\n\n\n",
        "naïve ☕",
    ],
}


@pytest.mark.parametrize("kind", list(PIECES))
def test_paragraphs_read_in_blocks_are_those_of_the_whole_file(tmp_path, monkeypatch, kind):
    """Random text rich in whitespace (blank lines of spaces, several in a row, CR, CRLF, tabs, long runs,
    indentation) read in blocks of 1..40 bytes, one unit or many cut at blank lines, gives the paragraphs
    (and split keys) of the file read whole."""
    rng = random.Random(11)
    monkeypatch.setattr(corpus_module, "SPLIT_KEY_CHARS", 30)
    monkeypatch.setattr(streams, "SPLIT_KEY_CHARS", 30)
    monkeypatch.setattr(streams, "PART_CHARS", 60)
    for attempt in range(35):
        path = tmp_path / f"{attempt}.txt"
        path.write_bytes("".join(rng.choice(PIECES[kind]) for _ in range(250)).encode())
        monkeypatch.setattr(streams, "_BLOCK_BYTES", rng.randint(1, 40))
        try:
            whole = split_paragraphs(read_text_file(path))
        except SourceError:
            continue  # a blank file
        for unit_bytes in (10**9, rng.randint(5, 200)):
            units = Corpus("text", (str(path),), unit_bytes=unit_bytes).units()
            got = [pair for unit in units for pair in whole_paragraphs(unit)]
            assert [p for p, _ in got] == whole, (attempt, unit_bytes)
            assert [k[:30] for _, k in got] == [p[:30] for p in whole], (attempt, unit_bytes)


# --------------------------------------------------------------------------- JSON Lines


def test_json_lines_with_lone_cr_line_ends_are_read_a_block_at_a_time(tmp_path, monkeypatch):
    """Old Mac line ends: the file holds no \\n, and was read as one block (its size in memory); now a lone
    \\r ends a record as \\n does, so blocks stay small, and an error's line number counts them."""
    monkeypatch.setattr(streams, "_BLOCK_BYTES", 64)
    records = [json.dumps({"text": f"record {i}"}) for i in range(300)]
    (tmp_path / "a.jsonl").write_bytes("\r".join(records).encode() + b"\r")
    (unit,) = Corpus("jsonl", (str(tmp_path / "a.jsonl"),)).units()
    assert max(len(block) for _, block in streams._blocks(unit)) < 64 + 40
    assert list(documents(unit)) == [f"record {i}" for i in range(300)]
    records[149] = '{"text": oops}'  # line 150, after 100 CRLF line ends and 49 CR ones
    text = "\r\n".join(records[:100]) + "\r\n" + "\r".join(records[100:])
    (tmp_path / "a.jsonl").write_bytes(text.encode())
    (unit,) = Corpus("jsonl", (str(tmp_path / "a.jsonl"),)).units()
    with pytest.raises(SourceError, match=r"a\.jsonl:150: not valid JSON"):
        list(documents(unit))


def test_a_json_lines_record_over_the_cap_is_refused_before_it_is_held(tmp_path, monkeypatch):
    """A record is parsed whole, so its size is capped (MAX_RECORD_BYTES): a larger one is a one-line error
    naming the file and line and what to do, raised while the line is read, not after holding it."""
    monkeypatch.setattr(streams, "_BLOCK_BYTES", 64)
    monkeypatch.setattr(streams, "MAX_RECORD_BYTES", 1000)
    good = json.dumps({"text": "fine"}) + "\n"
    huge = json.dumps({"text": "x" * 200_000}) + "\n"
    (tmp_path / "a.jsonl").write_text(good * 2 + huge + good)
    (unit,) = Corpus("jsonl", (str(tmp_path / "a.jsonl"),)).units()
    counting = CountingOpen()
    monkeypatch.setattr(streams, "open", counting, raising=False)
    with pytest.raises(SourceError) as error:
        list(documents(unit))
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'a.jsonl'}:3: a record over ") and "\n" not in message
    assert "split it into smaller records" in message and "data=text" in message
    assert counting.read < 5_000  # not the 200 kB line
    monkeypatch.setattr(streams, "MAX_RECORD_BYTES", 300_000)  # under the cap: read whole, as before
    assert [len(d) for d in documents(unit)] == [4, 4, 200_000, 4]


def test_a_number_too_long_for_python_names_the_file_and_line(tmp_path):
    """json.loads refuses an integer of over 4300 digits with a ValueError of its own that named nothing."""
    lines = [json.dumps({"text": "fine"}), '{"text": "x", "id": ' + "7" * 5000 + "}"]
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n")
    (unit,) = Corpus("jsonl", (str(tmp_path / "a.jsonl"),)).units()
    with pytest.raises(SourceError, match=r"a\.jsonl:2: not readable JSON: a number of more than \d+ digits"):
        list(documents(unit))


# --------------------------------------------------------------------------- Parquet


def _parquet(tmp_path, values, **options):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    path = tmp_path / "d.parquet"
    pq.write_table(pa.table({"text": values, "n": list(range(len(values)))}), path, **options)
    return path


def batch_sizes(monkeypatch) -> list[int]:
    """The bytes of every batch that ParquetFile.iter_batches decodes from now on."""
    import pyarrow.parquet as pq

    seen: list[int] = []
    real = pq.ParquetFile.iter_batches

    def iter_batches(self, *args, **kwargs):
        for batch in real(self, *args, **kwargs):
            seen.append(batch.nbytes)
            yield batch

    monkeypatch.setattr(pq.ParquetFile, "iter_batches", iter_batches)
    return seen


def test_parquet_batches_are_bounded_by_bytes_not_rows(tmp_path, monkeypatch):
    """iter_batches(batch_size=1024) decoded 1024 rows whatever their size; a batch is now about
    _BATCH_BYTES of the column, by the row group's uncompressed size."""
    rng = random.Random(3)
    values = ["".join(rng.choices("abcdefgh", k=1000)) for _ in range(300)]
    path = _parquet(tmp_path, values, use_dictionary=False, compression="zstd")
    monkeypatch.setattr(streams, "_BATCH_BYTES", 20_000)
    seen = batch_sizes(monkeypatch)
    (unit,) = Corpus("parquet", (str(path),)).units()
    assert list(documents(unit)) == values
    assert len(seen) > 10 and max(seen) < 2 * 20_000, seen


def test_parquet_repeats_of_a_dictionary_are_decoded_a_bounded_batch_at_a_time(tmp_path, monkeypatch):
    """A dictionary-encoded column's uncompressed size understates it (300 copies of one 10 kB value, which
    zstd makes a tiny file): any row may be as large as the chunk, so batches are sized for that."""
    path = _parquet(tmp_path, ["y" * 10_000] * 300, use_dictionary=True, compression="zstd")
    monkeypatch.setattr(streams, "_BATCH_BYTES", 20_000)
    seen = batch_sizes(monkeypatch)
    (unit,) = Corpus("parquet", (str(path),)).units()
    tracemalloc.start()
    try:
        count = sum(1 for _ in documents(unit))
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert count == 300 and max(seen) < 2 * 20_000, seen  # 3 MB decoded at once before
    assert peak < 500_000, peak  # and as many strings made


def test_a_parquet_cell_over_the_cap_names_its_row(tmp_path, monkeypatch):
    path = _parquet(tmp_path, ["short", "z" * 5000, "short"])
    monkeypatch.setattr(streams, "MAX_RECORD_BYTES", 1000)
    (unit,) = Corpus("parquet", (str(path),)).units()
    with pytest.raises(
        SourceError, match=r"d\.parquet row 1: a record over 1000 bytes, .*holds 5000 bytes; split it into"
    ):
        list(documents(unit))


def test_parquet_nulls_and_non_strings_are_still_named(tmp_path):
    path = _parquet(tmp_path, ["fine", None])
    (unit,) = Corpus("parquet", (str(path),)).units()
    with pytest.raises(SourceError, match=r"d\.parquet row 1: expected a string, got NoneType"):
        list(documents(unit))
    (unit,) = Corpus("parquet", (str(path),), field="n").units()
    with pytest.raises(SourceError, match=r"d\.parquet row 0: expected a string, got int"):
        list(documents(unit))


# --------------------------------------------------------------------------- binary and unreadable files


def test_a_large_binary_file_is_refused_before_its_cut_points_are_scanned(tmp_path, monkeypatch):
    """Planning the units of a file over the unit size looks for a line end past each cut: through a
    (sparse) file of NUL bytes that is the whole file. Its start is checked first, and each scan stops at a
    NUL byte."""
    monkeypatch.setattr(streams, "_BLOCK_BYTES", 64)
    monkeypatch.setattr(streams, "_LINE_BYTES", 64)
    counting = CountingOpen()
    monkeypatch.setattr(streams, "open", counting, raising=False)
    with open(tmp_path / "zeros.txt", "wb") as file:
        file.truncate(200_000)
    with pytest.raises(
        SourceError, match=r"zeros\.txt: looks binary \(NUL byte at offset 0\); expected UTF-8"
    ):
        Corpus("text", (str(tmp_path / "zeros.txt"),), unit_bytes=1000).units()
    with open(tmp_path / "late.jsonl", "wb") as file:  # text, then a hole of NUL bytes
        file.write(b'{"text": "fine"}\n' * 100)
        file.truncate(200_000)
    counting.read = 0
    with pytest.raises(SourceError, match=r"late\.jsonl: looks binary \(NUL byte at offset \d+\)"):
        Corpus("jsonl", (str(tmp_path / "late.jsonl"),), unit_bytes=1000).units()
    assert counting.read < 5_000


def test_an_unreadable_corpus_file_is_one_line_naming_it(tmp_path, monkeypatch):
    """An OSError reading a corpus file (EACCES, a file gone) is a SourceError naming the file, in planning
    and in reading: a ValueError, never reported as the cache folder's, nor a traceback."""
    (tmp_path / "a.txt").write_text("words\n\n" * 400)

    def refused(path, *args, **kwargs):
        raise PermissionError(13, "Permission denied", str(path))

    for kind in ("text", "jsonl"):
        unit = Unit(kind, str(tmp_path / "a.txt"), 0, 2800, 2800, "text")
        with monkeypatch.context() as patch:
            patch.setattr(streams, "open", refused, raising=False)
            with pytest.raises(SourceError) as error:
                list(parts(unit))
            message = str(error.value)
            assert message.startswith(f"{tmp_path / 'a.txt'}: cannot be read (Permission denied)")
            assert "\n" not in message and "data.paths" in message
            with pytest.raises(SourceError, match=r"a\.txt: cannot be read \(Permission denied\)"):
                Corpus(kind, (str(tmp_path / "a.txt"),), unit_bytes=100).units()
    gone = Unit("text", str(tmp_path / "moved.txt"), 0, 10, 10)
    with pytest.raises(SourceError, match=r"moved\.txt: cannot be read \(No such file or directory\)"):
        list(parts(gone))
    (tmp_path / "folder").mkdir()
    with pytest.raises(SourceError, match=r"folder: cannot be read \(Is a directory\)"):
        list(parts(Unit("text", str(tmp_path / "folder"), 0, 10, 10)))
