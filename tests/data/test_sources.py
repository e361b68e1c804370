import importlib.util
import json
import os
from pathlib import Path

import pytest

from lightning_llm.data.sources import (
    SourceError,
    expand_paths,
    pydoc_topics,
    read_jsonl_files,
    read_parquet_files,
    read_text_files,
)

HAS_PYARROW = importlib.util.find_spec("pyarrow") is not None


def write_jsonl(path, lines):
    path.write_text("\n".join(lines) + "\n")
    return path


def test_pydoc_topics_are_sorted_english_documents():
    from pydoc_data.topics import topics

    docs = pydoc_topics()
    assert len(docs) == len(topics) > 50
    assert docs[0] == topics[min(topics)]
    assert sum(map(len, docs)) > 300_000


def test_text_glob_reads_matching_files_in_sorted_order(tmp_path, monkeypatch):
    (tmp_path / "b.txt").write_text("bee")
    (tmp_path / "a.txt").write_text("ay\r\nline two")
    (tmp_path / "c.md").write_text("not matched")
    monkeypatch.chdir(tmp_path)
    assert read_text_files(["*.txt"]) == ["ay\nline two", "bee"]  # CRLF normalised


def test_paths_keep_given_order_and_expand_home(tmp_path, monkeypatch):
    (tmp_path / "a.txt").write_text("ay")
    (tmp_path / "b.txt").write_text("bee")
    monkeypatch.setenv("HOME", str(tmp_path))
    assert read_text_files(["~/b.txt", "~/a.txt"]) == ["bee", "ay"]


def test_glob_matching_nothing_names_the_pattern(tmp_path):
    pattern = str(tmp_path / "*.txt")
    with pytest.raises(FileNotFoundError, match=r"no files match '.*\*\.txt'"):
        expand_paths([pattern])


def test_missing_file_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.txt': no such file"):
        read_text_files([str(tmp_path / "missing.txt")])


def test_a_folder_is_refused_by_a_reader_of_named_files_and_read_by_one_of_a_format(tmp_path):
    (tmp_path / "a.txt").write_text("ay")
    (tmp_path / "b.md").write_text("not text of this reader")
    with pytest.raises(FileNotFoundError, match="is a folder; this data reads files"):
        expand_paths([str(tmp_path)])
    assert read_text_files([str(tmp_path)]) == ["ay"]  # .txt files under it, as data=text reads a folder
    (tmp_path / "SHOUT.TXT").write_text("bee")  # a suffix in capitals (a Windows or DOS name) is read too
    assert read_text_files([str(tmp_path)]) == ["bee", "ay"]


def test_a_file_that_cannot_be_read_is_one_source_error(tmp_path, monkeypatch):
    path = tmp_path / "secret.txt"
    path.write_text("hidden")

    def refuse(self):
        raise PermissionError(13, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", refuse)
    with pytest.raises(SourceError, match=r"secret\.txt: cannot be read \(Permission denied\)"):
        read_text_files([str(path)])


def test_a_path_that_cannot_be_looked_up_is_named(tmp_path, monkeypatch):
    with pytest.raises(FileNotFoundError, match="'~no_such_user_zq/x.txt': its ~ names no home folder"):
        expand_paths(["~no_such_user_zq/x.txt"])
    long_name = str(tmp_path / ("a" * 300 + ".txt"))
    with pytest.raises(FileNotFoundError, match=r"cannot be read \(File name too long\)"):
        expand_paths([long_name], suffixes=(".txt",))
    with pytest.raises(FileNotFoundError, match=r"cannot be read \(File name too long\)"):
        expand_paths([long_name])


def test_a_file_named_with_glob_characters_is_read_and_an_ambiguous_name_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    Path("reviews[1].txt").write_text("the file named so")
    assert read_text_files(["reviews[1].txt"]) == ["the file named so"]
    Path("reviews1.txt").write_text("another file the glob matches")
    with pytest.raises(FileNotFoundError, match=r"names a file, and read as a glob it matches reviews1\.txt"):
        read_text_files(["reviews[1].txt"])
    assert read_text_files(["reviews[[]1].txt"]) == ["the file named so"]  # the escape the message gives
    assert read_text_files(["reviews[0-9].txt"]) == ["another file the glob matches"]


@pytest.mark.parametrize("empty", ["", " "])
def test_an_empty_path_is_an_error_not_the_current_folder(tmp_path, monkeypatch, empty):
    """``data.paths=['$CORPUS']`` with the variable unset: never every file under the current folder."""
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "a.parquet").write_text("x")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(FileNotFoundError, match="an empty path in the data paths"):
        expand_paths([empty], suffixes=(".parquet",))


def test_no_paths_is_an_error():
    with pytest.raises(FileNotFoundError, match="no input paths"):
        expand_paths([])


def test_an_empty_or_whitespace_file_is_an_error_saying_which(tmp_path):
    (tmp_path / "empty.txt").write_text("")
    with pytest.raises(SourceError, match=r"empty\.txt: file is empty"):
        read_text_files([str(tmp_path / "empty.txt")])
    (tmp_path / "blank.txt").write_text("  \n\n\u3000\n")
    with pytest.raises(SourceError, match=r"blank\.txt: holds only whitespace"):
        read_text_files([str(tmp_path / "blank.txt")])


def test_non_utf8_file_names_file_and_offset(tmp_path):
    (tmp_path / "latin1.txt").write_bytes("hello café".encode("latin-1"))
    with pytest.raises(SourceError, match=r"latin1\.txt: not UTF-8 text \(byte 0xe9 at offset 9\)"):
        read_text_files([str(tmp_path / "latin1.txt")])


def test_binary_file_names_file_and_offset(tmp_path):
    (tmp_path / "blob.txt").write_bytes(b"abc\x00\x01\x02")
    with pytest.raises(SourceError, match=r"blob\.txt: looks binary \(NUL byte at offset 3\)"):
        read_text_files([str(tmp_path / "blob.txt")])


def test_jsonl_reads_the_field_and_skips_blank_lines(tmp_path):
    write_jsonl(
        tmp_path / "a.jsonl",
        [json.dumps({"text": "one", "id": 1}), "", json.dumps({"text": "two\u2028still two"})],
    )
    write_jsonl(tmp_path / "b.jsonl", [json.dumps({"body": "three", "text": "ignored"})])
    assert read_jsonl_files([str(tmp_path / "a.jsonl")]) == ["one", "two\u2028still two"]
    assert read_jsonl_files([str(tmp_path / "b.jsonl")], field="body") == ["three"]


def test_jsonl_bad_line_names_file_and_line(tmp_path):
    path = write_jsonl(tmp_path / "bad.jsonl", [json.dumps({"text": "fine"}), "{not json"])
    with pytest.raises(SourceError, match=r"bad\.jsonl:2: not valid JSON"):
        read_jsonl_files([str(path)])


def test_jsonl_missing_field_lists_the_fields_present(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [json.dumps({"body": "x", "id": 1})])
    with pytest.raises(SourceError, match=r"f\.jsonl:1: no field 'text'; fields present: body, id"):
        read_jsonl_files([str(path)])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("[1, 2]", "got list"),
        ('{"text": 5}', "holds int"),
        ('{"text": "half a pair \\ud800 here"}', r"holds a lone surrogate \(\\ud800 at character 12\)"),
    ],
)
def test_jsonl_wrong_types_are_errors(tmp_path, line, message):
    path = write_jsonl(tmp_path / "t.jsonl", [line])
    with pytest.raises(SourceError, match=rf"t\.jsonl:1: .*{message}"):
        read_jsonl_files([str(path)])


@pytest.mark.skipif(not HAS_PYARROW, reason="pyarrow not installed")
def test_parquet_reads_the_column(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"text": ["one", "two"], "id": [1, 2]}), tmp_path / "d.parquet")
    assert read_parquet_files([str(tmp_path / "d.parquet")]) == ["one", "two"]
    with pytest.raises(SourceError, match="no column 'body'; columns present: text, id"):
        read_parquet_files([str(tmp_path / "d.parquet")], column="body")


@pytest.mark.skipif(HAS_PYARROW, reason="pyarrow is installed")
def test_parquet_without_pyarrow_says_how_to_install(tmp_path):
    with pytest.raises(ImportError, match="pip install pyarrow"):
        read_parquet_files([str(tmp_path / "d.parquet")])


def test_json_nested_too_deeply_is_one_line_naming_the_line(tmp_path):
    path = write_jsonl(
        tmp_path / "deep.jsonl", ['{"text": "ok"}', '{"text": "x", "m": ' + "[" * 5000 + "]" * 5000 + "}"]
    )
    with pytest.raises(SourceError, match=r"deep\.jsonl:2: JSON nested too deeply"):
        read_jsonl_files([str(path)], "text")


def test_what_is_there_instead_of_a_file_is_named(tmp_path):
    """A FIFO would block the reader, a link loop never resolve: each is named for what it is."""
    os.mkfifo(tmp_path / "fifo.txt")
    (tmp_path / "loop.txt").symlink_to(tmp_path / "loop.txt")
    (tmp_path / "dangling.txt").symlink_to(tmp_path / "gone.txt")
    for name, expected in (
        ("fifo.txt", "not a regular file"),
        ("loop.txt", "cannot be read"),
        ("dangling.txt", "a link to a missing file"),
    ):
        with pytest.raises(FileNotFoundError, match=f"{name}': {expected}"):
            read_text_files([str(tmp_path / name)])


def test_a_byte_order_mark_is_not_text(tmp_path):
    (tmp_path / "a.txt").write_bytes("\ufeffhello".encode())
    (tmp_path / "a.jsonl").write_bytes('\ufeff{"text": "hi"}\n'.encode())
    assert read_text_files([str(tmp_path / "a.txt")]) == ["hello"]
    assert read_jsonl_files([str(tmp_path / "a.jsonl")], "text") == ["hi"]


def test_a_number_too_long_for_python_is_one_line_naming_the_line(tmp_path):
    """json.loads refuses an integer of over 4300 digits (sys.get_int_max_str_digits) with a ValueError that
    named no file, in any field, used or not: now the file and line, and what to do."""
    from lightning_llm.data.sources import json_object

    huge = "9" * 5000
    path = write_jsonl(tmp_path / "big.jsonl", ['{"text": "ok"}', '{"text": "x", "id": ' + huge + "}"])
    with pytest.raises(
        SourceError, match=r"big\.jsonl:2: not readable JSON: a number of more than \d+ digits"
    ):
        read_jsonl_files([str(path)], "text")
    with pytest.raises(SourceError, match=r"^f\.jsonl:7: .* write it as a string or drop the field$"):
        json_object('{"label": -' + huge + "}", "f.jsonl:7")  # the classification and SQuAD readers' parser


def test_a_json_record_over_the_cap_is_refused_before_it_is_parsed(monkeypatch):
    from lightning_llm.data import sources

    monkeypatch.setattr(sources, "MAX_RECORD_BYTES", 1000)
    assert sources.json_object('{"text": "' + "é" * 400 + '"}', "f.jsonl:1") == {
        "text": "é" * 400
    }  # 800 bytes
    with pytest.raises(
        SourceError, match=r"^f\.jsonl:2: a record over 1000 bytes, .*; split it into smaller"
    ):
        sources.json_object('{"text": "' + "é" * 600 + '"}', "f.jsonl:2")


def test_a_folder_skips_hidden_files_and_folders_as_a_glob_does(tmp_path, monkeypatch):
    # a folder walk read .venv/.../*.dist-info files and .ipynb_checkpoints copies: data counted twice
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "train.jsonl").write_text('{"text": "a"}\n')
    for hidden in (".ipynb_checkpoints/train-checkpoint.jsonl", ".venv/lib/x.dist-info/t.jsonl", ".h.jsonl"):
        (tmp_path / hidden).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / hidden).write_text('{"text": "a"}\n')
    monkeypatch.chdir(tmp_path)
    assert expand_paths(["."], suffixes=(".jsonl",)) == [Path("data/train.jsonl")]
    assert expand_paths(["**/*.jsonl"]) == expand_paths(["./"], suffixes=(".jsonl",))
    assert expand_paths([".venv"], suffixes=(".jsonl",))  # a hidden folder named itself is read
