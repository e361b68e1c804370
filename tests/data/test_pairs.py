import csv
import json

import pytest
import torch

from lightning_llm import registry
from lightning_llm.data import DatasetTooSmallError, SourceError
from lightning_llm.data.datamodule import ReverseWords
from lightning_llm.data.pair_module import PairDataModule
from lightning_llm.data.pairs import (
    IGNORE_INDEX,
    Pair,
    read_pairs,
    reverse_words,
    reverse_words_pairs,
    split_pairs,
)
from lightning_llm.data.settings import PairSettings

PAIRS = [
    Pair("the cat sat", "sat cat the"),
    Pair("a b", "b a"),
    Pair("hello, world", 'she said "hi"'),
    Pair("x", ""),
    Pair("one two three four", "four three two one"),
]
READABLE = [pair for pair in PAIRS if pair.target]  # a file's blank target is refused; a module takes one


@pytest.fixture
def tokenizer(make_tokenizer):
    """The byte stand-in tokenizer (pad 0, eos 3) with a bos id."""
    tok = make_tokenizer()
    tok.bos_id = 2
    return tok


@pytest.fixture(scope="module")
def reverse_module():
    """The default reverse_words module (every pair built and split once per module)."""
    dm = registry.build("data", "reverse_words", tokenizer=None, cache_dir="unused")
    dm.texts("train")
    return dm


def module_of(tokenizer, splits, **params):
    dm = PairDataModule(tokenizer, lambda: splits, PairSettings(**params))
    dm.setup()
    return dm


def write_jsonl(path, pairs, source="source", target="target"):
    path.write_text("".join(json.dumps({source: p.source, target: p.target}) + "\n" for p in pairs))
    return path


def write_table(path, pairs, delimiter):
    rows = [["id", "source", "target"], *([str(i), p.source, p.target] for i, p in enumerate(pairs))]
    if delimiter == "\t":  # TSV: no quoting at all, quotes are text
        path.write_text("".join("\t".join(row) + "\n" for row in rows), encoding="utf-8")
    else:
        with open(path, "w", newline="", encoding="utf-8") as file:
            csv.writer(file).writerows(rows)
    return path


# --------------------------------------------------------------------------- reverse_words


def test_reverse_words_targets_are_the_source_words_reversed(reverse_module):
    for split in ("train", "val", "test"):
        pairs = reverse_module.pairs(split)
        assert pairs, split
        for pair in pairs:
            words = pair.source.split()
            assert pair.target.split() == words[::-1]
            assert 3 <= len(words) <= 8
            assert all(any(c.isalpha() for c in word) for word in words)
    assert reverse_words("a  quick\nbrown fox") == "fox brown quick a"


def test_reverse_words_is_deterministic_with_the_requested_size(reverse_module):
    again = registry.build("data", "reverse_words", tokenizer=None, cache_dir="unused")
    assert again.fingerprint() == reverse_module.fingerprint()
    assert again.pairs("val") == reverse_module.pairs("val")
    assert sum(len(reverse_module.pairs(split)) for split in ("train", "val", "test")) == 20000
    other_seed = registry.build("data", "reverse_words", tokenizer=None, cache_dir="unused", seed=1)
    assert other_seed.fingerprint() != reverse_module.fingerprint()


def test_reverse_words_splits_are_disjoint_and_sized_by_fraction(reverse_module):
    sources = {split: {p.source for p in reverse_module.pairs(split)} for split in ("train", "val", "test")}
    assert not sources["train"] & sources["val"]
    assert not sources["train"] & sources["test"]
    assert not sources["val"] & sources["test"]
    for split in ("val", "test"):
        assert 0.04 < len(reverse_module.pairs(split)) / 20000 < 0.06, split


def test_reverse_words_pairs_takes_all_runs_when_fewer_than_asked():
    documents = ["one two three four five\n\nsix seven eight", "nine ten"]  # "nine ten" is too short
    pairs = reverse_words_pairs(documents, min_words=2, max_words=2, num_examples=1000)
    assert [p.source for p in pairs] == [
        "one two", "two three", "three four", "four five", "six seven", "seven eight", "nine ten",
    ]  # fmt: skip
    assert len(reverse_words_pairs(documents, min_words=2, max_words=2, num_examples=3)) == 3
    with pytest.raises(ValueError, match="min_words <= data.max_words"):
        reverse_words_pairs(documents, min_words=4, max_words=3)


def test_reverse_words_texts_hold_sources_and_targets(reverse_module):
    texts = reverse_module.texts("val")
    pairs = reverse_module.pairs("val")
    assert texts[:4] == [pairs[0].source, pairs[0].target, pairs[1].source, pairs[1].target]
    assert len(texts) == 2 * len(pairs)


def test_reverse_words_is_the_registered_plugin_and_validates_early():
    plugin = registry.get("data", "reverse_words")
    assert plugin.target is ReverseWords
    assert {p.name for p in plugin.parameters()} >= {"min_words", "max_words", "num_examples", "block_size"}
    with pytest.raises(ValueError, match="num_examples"):
        registry.build("data", "reverse_words", tokenizer=None, cache_dir="unused", num_examples=0)


# --------------------------------------------------------------------------- reading pair files


@pytest.mark.parametrize("suffix", ["jsonl", "tsv", "csv"])
def test_each_file_format_reads_the_same_pairs(tmp_path, suffix):
    path = tmp_path / f"pairs.{suffix}"
    if suffix == "jsonl":
        write_jsonl(path, READABLE)
    else:
        write_table(path, READABLE, "\t" if suffix == "tsv" else ",")
    assert read_pairs([str(path)]) == READABLE


def test_csv_quoted_fields_may_hold_commas_and_newlines(tmp_path):
    path = tmp_path / "pairs.csv"
    path.write_text('target,source\n"b, a","a,\nb"\n\n"d","c"\n')
    assert read_pairs([str(path)]) == [Pair("a,\nb", "b, a"), Pair("c", "d")]


def test_custom_field_names_and_globs(tmp_path):
    write_jsonl(tmp_path / "a.jsonl", READABLE[:2], source="en", target="fr")
    write_jsonl(tmp_path / "b.jsonl", READABLE[2:], source="en", target="fr")
    assert read_pairs([str(tmp_path / "*.jsonl")], source_field="en", target_field="fr") == READABLE


def test_a_jsonl_line_without_the_field_names_file_line_and_fields(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text('{"source": "a", "target": "b"}\n{"src": "a", "target": "b"}\n')
    with pytest.raises(SourceError, match=r"bad\.jsonl:2: no field 'source'; fields present: src, target"):
        read_pairs([str(path)])


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"source": "a", "target": 3}\n', r"bad\.jsonl:1: field 'target' holds int"),
        ('{"source": "a", "target": null}\n', r"bad\.jsonl:1: field 'target' holds NoneType"),
        ('{"source": "a", "target": "b"\n', r"bad\.jsonl:1: not valid JSON"),
        ('["a", "b"]\n', r"bad\.jsonl:1: expected a JSON object"),
        ('{"source": "  ", "target": "b"}\n', r"bad\.jsonl:1: the source \('source'\) is blank"),
        ('{"source": "a", "target": ""}\n', r"bad\.jsonl:1: the target \('target'\) is blank"),
    ],
)
def test_bad_jsonl_records(tmp_path, content, message):
    path = tmp_path / "bad.jsonl"
    path.write_text(content)
    with pytest.raises(SourceError, match=message):
        read_pairs([str(path)])


def test_a_table_without_the_column_lists_the_columns(tmp_path):
    path = tmp_path / "bad.tsv"
    path.write_text("src\ttarget\na\tb\n")
    with pytest.raises(
        SourceError, match=r"bad\.tsv:1: the header has no column 'source'; columns present: src"
    ):
        read_pairs([str(path)])


def test_a_short_table_row_names_its_line(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("source,target\na,b\nc\n")
    with pytest.raises(SourceError, match=r"bad\.csv:3: no field 'target'; fields present: source"):
        read_pairs([str(path)])


def test_a_table_reads_long_documents_and_refuses_an_unclosed_quote(tmp_path):
    """The same strict reader as classification's: a quoted text over csv's 128 KiB limit is a document (it
    was a traceback), and an unclosed quote is an error naming its lines (it swallowed the rows after it)."""
    path = tmp_path / "pairs.csv"
    long = "a " * (1 << 17)
    path.write_text(f'source,target\nx,y\n"{long}",z\n')
    assert read_pairs([str(path)]) == [Pair("x", "y"), Pair(long, "z")]
    path.write_text('source,target\nx,y\n"open,z\n' + "u,v\n" * 5)
    with pytest.raises(SourceError, match=r"pairs\.csv:3-8: not valid CSV \(unexpected end of data\)"):
        read_pairs([str(path)])


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [  # each was read silently: a target cut at the unquoted comma or tab, or the last copy of a column
        ("cut.csv", "source,target\nx y,y, x\n", r"cut\.csv:2: more fields than the 2 columns of the header"),
        ("cut.tsv", 'source\ttarget\n"a\tb"\tc\n', r"cut\.tsv:2: more fields .* tab must be removed"),
        ("twice.csv", "source,target,target\nS,T1,T2\n", r"twice\.csv:1: the header names the column"),
    ],
)
def test_a_table_row_or_header_that_would_lose_text_is_refused(tmp_path, name, content, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(SourceError, match=message):
        read_pairs([str(tmp_path / name)])


def test_empty_cells_past_the_header_are_a_spreadsheets_trailing_commas(tmp_path):
    (tmp_path / "sheet.csv").write_text("source,target,,\nx,y,,\nu,v\n")
    assert read_pairs([str(tmp_path / "sheet.csv")]) == [Pair("x", "y"), Pair("u", "v")]


@pytest.mark.parametrize(
    ("name", "content", "error", "message"),
    [
        ("empty.jsonl", "", SourceError, "file is empty"),
        ("blank.jsonl", "\n\n", SourceError, "holds only whitespace"),
        ("header.csv", "source,target\n", SourceError, "holds no pairs"),
        ("pairs.txt", "a\tb\n", SourceError, r"unsupported pairs file type '\.txt'; use one of: \.jsonl"),
    ],
)
def test_unusable_files(tmp_path, name, content, error, message):
    (tmp_path / name).write_text(content)
    with pytest.raises(error, match=message):
        read_pairs([str(tmp_path / name)])


def test_a_missing_file_fails_on_first_use_not_at_construction(tmp_path, tokenizer):
    dm = registry.build(
        "data", "pairs", tokenizer=tokenizer, cache_dir=tmp_path, paths=[str(tmp_path / "nope.jsonl")]
    )
    with pytest.raises(FileNotFoundError, match="no such file"):
        dm.texts("train")


# --------------------------------------------------------------------------- splits


def test_hash_split_is_disjoint_by_source_and_stable(tmp_path, tokenizer):
    pairs = [Pair(f"source {i}", f"target {i}") for i in range(400)] + [Pair("source 7", "another target")]
    path = write_jsonl(tmp_path / "pairs.jsonl", pairs)
    dm = registry.build(
        "data", "pairs", tokenizer=tokenizer, cache_dir=tmp_path, paths=[str(path)], val_fraction=0.1
    )
    splits = {split: dm.pairs(split) for split in ("train", "val", "test")}
    assert sorted(p for s in splits.values() for p in s) == sorted(pairs)
    sources = {split: {p.source for p in s} for split, s in splits.items()}
    assert not (sources["train"] & sources["val"] or sources["train"] & sources["test"])
    assert all(p.source in sources[split] for split in splits for p in splits[split])
    again = registry.build(
        "data", "pairs", tokenizer=tokenizer, cache_dir=tmp_path, paths=[str(path)], val_fraction=0.1
    )
    assert again.fingerprint() == dm.fingerprint()
    assert split_pairs(pairs, val_fraction=0.1, seed=1234)["val"] == splits["val"]


def test_explicit_split_files_replace_the_hash_split(tmp_path, tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", READABLE * 3)
    val = write_jsonl(tmp_path / "val.jsonl", [Pair("new source", "y"), Pair("other source", "z")])
    dm = registry.build(
        "data",
        "pairs",
        tokenizer=tokenizer,
        cache_dir=tmp_path,
        paths=[str(train)],
        val_paths=[str(val)],
        batch_size=2,
    )
    assert dm.pairs("train") == READABLE * 3
    assert dm.pairs("val") == [Pair("new source", "y"), Pair("other source", "z")]
    assert dm.pairs("test") == []
    dm.setup()
    assert dm.has_split("val") and not dm.has_split("test")
    assert dm.test_dataloader() == []  # no test files: Lightning runs no test loop
    assert len(dm.val_dataloader()) == 1


def test_too_few_pairs_for_the_split_or_the_batch(tmp_path, tokenizer):
    with pytest.raises(ValueError, match="gave the val split none"):
        split_pairs(PAIRS[:1], val_fraction=0.1, test_fraction=0.0)
    with pytest.raises(DatasetTooSmallError, match="train split has 5 pairs, fewer than data.batch_size=8"):
        module_of(tokenizer, {"train": PAIRS, "val": [], "test": []}, batch_size=8)


def test_fingerprint_changes_with_any_pair(tokenizer):
    one = PairDataModule(tokenizer, lambda: {"train": PAIRS, "val": [], "test": []})
    other = PairDataModule(tokenizer, lambda: {"train": [*PAIRS[:-1], Pair("x", "y")], "val": [], "test": []})
    moved = PairDataModule(tokenizer, lambda: {"train": PAIRS[:-1], "val": PAIRS[-1:], "test": []})
    assert len({one.fingerprint(), other.fingerprint(), moved.fingerprint()}) == 3


# --------------------------------------------------------------------------- batches


def test_batch_layout_matches_the_seq2seq_contract(tokenizer):
    dm = module_of(tokenizer, {"train": PAIRS, "val": PAIRS, "test": []}, batch_size=5)
    batch = next(iter(dm.val_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "decoder_input_ids", "labels", "target_text"}
    assert batch["target_text"] == [p.target for p in PAIRS]
    longest_source = max(len(p.source.encode()) for p in PAIRS)
    longest_target = max(len(p.target.encode()) for p in PAIRS) + 1
    assert batch["input_ids"].shape == batch["attention_mask"].shape == (5, longest_source)
    assert batch["decoder_input_ids"].shape == batch["labels"].shape == (5, longest_target)
    assert batch["attention_mask"].dtype == torch.bool
    assert (
        batch["input_ids"].dtype == batch["decoder_input_ids"].dtype == batch["labels"].dtype == torch.int64
    )
    for row, pair in enumerate(PAIRS):
        source, target = tokenizer.encode(pair.source), tokenizer.encode(pair.target)
        s, t = len(source), len(target)
        assert batch["input_ids"][row, :s].tolist() == source  # no bos on the source
        assert batch["attention_mask"][row].tolist() == [True] * s + [False] * (longest_source - s)
        assert (batch["input_ids"][row, s:] == tokenizer.pad_id).all()
        assert batch["decoder_input_ids"][row, : t + 1].tolist() == [tokenizer.bos_id, *target]
        assert (batch["decoder_input_ids"][row, t + 1 :] == tokenizer.pad_id).all()
        assert batch["labels"][row, : t + 1].tolist() == [*target, tokenizer.eos_id]
        assert (batch["labels"][row, t + 1 :] == IGNORE_INDEX).all()


def test_padding_is_per_batch(tokenizer):
    pairs = [Pair("a", "b"), Pair("c", "d"), Pair("a much longer source", "a much longer target")]
    dm = module_of(tokenizer, {"train": pairs, "val": pairs, "test": []}, batch_size=2)
    first, second = list(dm.val_dataloader())
    assert first["input_ids"].shape == (2, 1) and first["labels"].shape == (2, 2)
    assert second["input_ids"].shape == (1, 20) and second["labels"].shape == (1, 21)


def test_long_pairs_are_truncated_to_block_size(tokenizer):
    pairs = [Pair("s" * 50, "t" * 50)] * 2
    dm = module_of(tokenizer, {"train": pairs, "val": [], "test": []}, batch_size=2, block_size=16)
    batch = next(iter(dm.train_dataloader()))
    assert batch["input_ids"].shape == (2, 16)
    assert batch["decoder_input_ids"].shape == batch["labels"].shape == (2, 16)
    assert batch["labels"][0, -1] == tokenizer.eos_id
    assert batch["target_text"] == ["t" * 50] * 2  # the reference stays whole


def test_training_order_is_seeded(tokenizer):
    pairs = [Pair(f"source {i}", f"target {i}") for i in range(64)]
    splits = {"train": pairs, "val": [], "test": []}

    def order(seed):
        dm = module_of(tokenizer, splits, batch_size=8, shuffle_seed=seed)
        return [text for batch in dm.train_dataloader() for text in batch["target_text"]]

    assert order(0) == order(0)
    assert order(0) != order(1)
    assert sorted(order(0)) == sorted(p.target for p in pairs)


def test_setup_tokenizes_only_the_splits_a_stage_needs(tokenizer):
    dm = PairDataModule(
        tokenizer, lambda: {"train": PAIRS, "val": PAIRS, "test": PAIRS}, PairSettings(batch_size=2)
    )
    dm.setup("fit")
    assert len(dm.val_dataloader()) == 3
    with pytest.raises(RuntimeError, match="test split is not set up"):
        dm.test_dataloader()
    dm.setup("test")
    assert len(dm.test_dataloader()) == 3


def test_reverse_words_batches_with_a_real_tokenizer(reverse_module):
    from lightning_llm.tokenizers import CharTokenizer

    tokenizer = CharTokenizer()
    tokenizer.train(reverse_module.texts("train"))
    dm = registry.build(
        "data",
        "reverse_words",
        tokenizer=tokenizer,
        cache_dir="unused",
        num_examples=300,
        batch_size=16,
        block_size=128,
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    decoded = [tokenizer.decode(row[row != IGNORE_INDEX]) for row in batch["labels"]]
    assert decoded == batch["target_text"]
    sources = [tokenizer.decode(row) for row in batch["input_ids"]]
    assert [reverse_words(source) for source in sources] == batch["target_text"]
