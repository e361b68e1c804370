import json
import logging
from collections import Counter

import pytest
import torch

from lightning_llm import registry
from lightning_llm.data.classification import (
    Example,
    LabelError,
    PadCollate,
    label_names,
    pydoc_topic_examples,
    split_examples,
)
from lightning_llm.data.classification_module import ClassificationDataModule
from lightning_llm.data.corpus import CorpusTooSmallError
from lightning_llm.data.sources import SourceError
from lightning_llm.tokenizers import CharTokenizer

WORDS = {"pos": ["good", "great", "fine", "nice"], "neg": ["bad", "awful", "poor", "sad"]}


@pytest.fixture(scope="module")
def tokenizer() -> CharTokenizer:
    tokenizer = CharTokenizer()
    tokenizer.train(["abcdefghijklmnopqrstuvwxyz .,\n"])
    return tokenizer


def toy_examples(n: int, seed: int = 0) -> list[dict]:
    """Distinct texts of 1..12 words from the label's word list."""
    records = []
    for i in range(n):
        label = "pos" if (i * 7 + seed) % 3 else "neg"
        words = WORDS[label]
        records.append(
            {"text": " ".join(words[(i + j) % 4] for j in range(1 + i % 12)) + f" {i:04d}", "label": label}
        )
    return records


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def build(tokenizer, paths, **params):
    return registry.build(
        "data", "classification", tokenizer=tokenizer, cache_dir="unused", paths=paths, **params
    )


# --------------------------------------------------------------------------- the pydoc topics default


@pytest.fixture(scope="module")
def pydoc_module(tokenizer):
    dm = registry.build(
        "data", "pydoc_topics", tokenizer=tokenizer, cache_dir="unused", block_size=64, batch_size=16
    )
    dm.setup("fit")
    return dm


def test_pydoc_topics_is_a_topic_classification_task(pydoc_module):
    dm = pydoc_module
    assert dm.num_classes == 8 and dm.labels == sorted(dm.labels)
    assert "compound" in dm.labels and "specialnames" in dm.labels  # the largest topics
    sizes = {split: len(dm.texts(split)) for split in ("train", "val", "test")}
    assert sizes["train"] > 1000 and 100 < sizes["val"] < 200 and 100 < sizes["test"] < 200
    texts = {split: set(dm.texts(split)) for split in sizes}
    assert not texts["train"] & texts["val"] and not texts["train"] & texts["test"]
    # the docstring's majority-class baseline: "compound", about 25%
    test_labels = Counter(example.label for example in dm.examples("test"))
    label, count = test_labels.most_common(1)[0]
    assert label == "compound" and 0.2 < count / sizes["test"] < 0.3


def test_pydoc_batches_start_with_cls_and_pad_dynamically(pydoc_module, tokenizer):
    batch = next(iter(pydoc_module.val_dataloader()))
    assert set(batch) == {"input_ids", "attention_mask", "labels"}
    input_ids, mask, labels = batch["input_ids"], batch["attention_mask"], batch["labels"]
    assert input_ids.shape[0] == labels.shape[0] == 16 and input_ids.shape == mask.shape
    assert input_ids.dtype == labels.dtype == torch.int64 and mask.dtype == torch.bool
    assert (input_ids[:, 0] == tokenizer.cls_id).all()
    assert input_ids.shape[1] == mask.sum(1).max() <= 64  # padded to the longest in the batch
    assert (input_ids[~mask] == tokenizer.pad_id).all() and (input_ids[mask] != tokenizer.pad_id).all()
    assert ((labels >= 0) & (labels < 8)).all()


def test_pydoc_split_is_deterministic_and_seeded(pydoc_module, tokenizer):
    again = registry.build(
        "data", "pydoc_topics", tokenizer=tokenizer, cache_dir="unused", block_size=64, batch_size=16
    )
    assert again.fingerprint() == pydoc_module.fingerprint()
    assert again.texts("val") == pydoc_module.texts("val")
    other = registry.build("data", "pydoc_topics", tokenizer=tokenizer, cache_dir="unused", split_seed=7)
    assert other.fingerprint() != pydoc_module.fingerprint() and other.texts("val") != again.texts("val")


def test_pydoc_topic_examples_drop_ambiguous_paragraphs():
    examples = pydoc_topic_examples(8)
    labels_of = {}
    for example in examples:
        labels_of.setdefault(example.text, set()).add(example.label)
    assert all(len(labels) == 1 for labels in labels_of.values())
    assert len(labels_of) == len(examples)  # each paragraph once
    assert len({example.label for example in pydoc_topic_examples(3)}) == 3
    with pytest.raises(ValueError, match=r"data.num_topics must be in \[2, \d+\]"):
        pydoc_topic_examples(1)


# --------------------------------------------------------------------------- files


@pytest.mark.parametrize("suffix", ["jsonl", "tsv", "csv"])
def test_file_formats_read_the_same_examples(tmp_path, tokenizer, suffix):
    records = toy_examples(40)
    path = tmp_path / f"train.{suffix}"
    if suffix == "jsonl":
        write_jsonl(path, records)
    else:
        sep = "\t" if suffix == "tsv" else ","
        lines = [f"id{sep}label{sep}text"] + [
            f"{i}{sep}{r['label']}{sep}{r['text']}" for i, r in enumerate(records)
        ]
        path.write_text("\n".join(lines) + "\n")
    dm = build(tokenizer, [str(path)], val_fraction=0.0, test_fraction=0.0)
    assert dm.texts("train") == [r["text"] for r in records]
    assert dm.labels == ["neg", "pos"] and dm.num_classes == 2
    assert [e.label for e in dm.examples("train")] == [r["label"] for r in records]


def test_csv_quoting_and_tsv_quotes_as_text(tmp_path, tokenizer):
    csv_path = tmp_path / "a.csv"
    csv_path.write_text('text,label\n"hello, world",pos\n"say ""hi""",neg\n')
    assert build(tokenizer, [str(csv_path)], val_fraction=0, test_fraction=0).texts("train") == [
        "hello, world",
        'say "hi"',
    ]
    tsv_path = tmp_path / "a.tsv"
    tsv_path.write_text('text\tlabel\n"quoted" start\tpos\nplain\tneg\n')
    assert (
        build(tokenizer, [str(tsv_path)], val_fraction=0, test_fraction=0).texts("train")[0]
        == '"quoted" start'
    )


def test_val_and_test_files_and_hash_split(tmp_path, tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", toy_examples(200))
    val = write_jsonl(tmp_path / "val.jsonl", toy_examples(10, seed=1))
    dm = build(tokenizer, [train], val_paths=[val], test_fraction=0.2)
    assert dm.texts("val") == [r["text"] for r in toy_examples(10, seed=1)]
    n_test, n_train = len(dm.texts("test")), len(dm.texts("train"))
    assert n_train + n_test == 200 and 20 < n_test < 60  # the val fraction is not taken from train
    both = build(tokenizer, [train], val_paths=[val], test_paths=[val])
    assert len(both.texts("train")) == 200
    hashed = build(tokenizer, [train])
    assert len(hashed.texts("val")) > 0 and len(hashed.texts("test")) > 0
    assert not set(hashed.texts("train")) & set(hashed.texts("val"))


def test_fraction_zero_gives_an_empty_loader(tmp_path, tokenizer):
    dm = build(
        tokenizer, [write_jsonl(tmp_path / "t.jsonl", toy_examples(30))], val_fraction=0, test_fraction=0
    )
    dm.setup("fit")
    assert dm.has_split("train") and not dm.has_split("val") and not dm.has_split("test")
    assert dm.val_dataloader() == [] and dm.test_dataloader() == []
    assert len(dm.train_dataloader()) == 1  # 30 examples, batch 32, drop_last=False


def test_the_labels_found_are_logged_once_so_a_misspelt_one_shows(tmp_path, tokenizer, caplog):
    caplog.set_level(logging.INFO, logger="lightning_llm.data.classification_module")
    records = [*toy_examples(40), {"text": "typo", "label": "Pos"}]
    dm = build(tokenizer, [write_jsonl(tmp_path / "t.jsonl", records)], val_fraction=0, test_fraction=0)
    dm.setup("fit")
    assert dm.num_classes == 3
    logged = [r.getMessage() for r in caplog.records if r.getMessage().startswith("labels")]
    assert logged == ["labels (3): Pos, neg, pos"]


def test_integer_labels_sort_numerically(tmp_path, tokenizer):
    records = [{"text": f"text {i}", "label": i % 11} for i in range(44)]
    path = write_jsonl(tmp_path / "t.jsonl", records)
    test = write_jsonl(tmp_path / "test.jsonl", records)  # a copy: a training file cannot be the test file
    dm = build(tokenizer, [path], val_fraction=0, test_paths=[test])
    assert dm.labels == [str(i) for i in range(11)]  # "10" last, so class index i is label i
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["labels"].tolist() == [i % 11 for i in range(32)]
    assert label_names([Example("a", "b", ""), Example("c", "10", "")]) == ["10", "b"]
    long = "9" * 5000  # past the digits Python reads: was "Exceeds the limit (4300 digits)", naming nothing
    assert label_names([Example("a", long, ""), Example("c", "10", "")]) == ["10", long]


def test_integer_labels_equal_in_value_have_one_order_whatever_the_string_hashing():
    # "1" and "01" (and "0" and "-0") tie numerically: a sort by int alone kept the set's iteration order,
    # which PYTHONHASHSEED changes; with eleven such pairs the old order matched by chance 1 time in 2048.
    pairs = [("0", "-0"), *((str(k), f"0{k}") for k in range(1, 11))]
    labels = [label for pair in pairs for label in pair]
    expected = ["-0", "0", *(label for k in range(1, 11) for label in (f"0{k}", str(k)))]
    assert label_names([Example("t", label, "") for label in labels]) == expected
    assert label_names([Example("t", label, "") for label in reversed(labels)]) == expected
    assert label_names([Example("t", label, "") for label in ["10", "2", "-1"]]) == ["-1", "2", "10"]


def test_an_unclosed_csv_quote_is_an_error_not_merged_rows(tmp_path, tokenizer):
    # a lenient reader joined the unclosed row with the next one: 4 data lines, 3 examples, no error
    path = tmp_path / "bad.csv"
    path.write_text('text,label\na,pos\n"good film,pos\n"bad film",neg\nc,pos\n')
    with pytest.raises(SourceError, match=r"bad\.csv:3-4: not valid CSV .*a quote opened and not closed\?"):
        build(tokenizer, [str(path)], val_fraction=0, test_fraction=0).texts("train")
    path.write_text("text,label\n" + "a,pos\n" * 3 + '"x' + "y" * (1 << 17) + ",neg\n")  # unclosed to the end
    with pytest.raises(SourceError, match=r"bad\.csv:5: not valid CSV \(unexpected end of data\): a quote"):
        build(tokenizer, [str(path)]).texts("train")
    path.write_text("text,label\n" + "a,pos\n" * 3 + '"x' + "y" * (1 << 17) + '",neg\n')  # a long document
    assert (
        max(map(len, build(tokenizer, [str(path)], val_fraction=0, test_fraction=0).texts("train"))) > 1 << 17
    )


def test_a_trained_models_labels_number_data_of_some_of_them(tmp_path, tokenizer):
    """evaluate adopts the model's label order (its checkpoint's data_settings): data of one label alone is
    numbered by it, not refused as too few labels nor renumbered from 0; a label it never learned is named."""
    path = write_jsonl(tmp_path / "c.jsonl", [{"text": f"cherry {i}", "label": "cherry"} for i in range(10)])
    dm = build(tokenizer, [path], val_fraction=0.2, test_fraction=0)
    dm.adopt_data_settings({"labels": ["apple", "berry", "cherry"]})
    assert dm.data_settings() == {"labels": ["apple", "berry", "cherry"]} and dm.model_settings() == {
        "num_classes": 3
    }
    dm.setup("fit")
    assert {int(label) for label in next(iter(dm.val_dataloader()))["labels"]} == {2}
    dm.adopt_data_settings({"labels": ["apple", "berry"]})
    with pytest.raises(
        SourceError, match=r"c\.jsonl:\d+: train label 'cherry' does not occur in the labels the model"
    ):
        dm.setup("fit")


def test_truncation_to_block_size(tmp_path, tokenizer):
    records = [{"text": "a" * 100, "label": "x"}, {"text": "b", "label": "y"}]
    path, test = write_jsonl(tmp_path / "t.jsonl", records), write_jsonl(tmp_path / "test.jsonl", records)
    dm = build(tokenizer, [path], block_size=16, val_fraction=0, test_paths=[test])
    dm.setup("test")
    batch = next(iter(dm.test_dataloader()))
    assert batch["input_ids"].shape == (2, 16)
    assert batch["attention_mask"].sum(1).tolist() == [16, 2]  # <cls> + 15 of the 100, and <cls> + 1


def test_shuffle_is_reproducible(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "t.jsonl", toy_examples(100))

    def order(seed):
        dm = build(tokenizer, [path], batch_size=8, val_fraction=0, test_fraction=0, shuffle_seed=seed)
        dm.setup("fit")
        return [batch["input_ids"][:, 1:4].tolist() for batch in dm.train_dataloader()]

    assert order(0) == order(0)
    assert order(0) != order(1)


def test_pad_collate():
    batch = PadCollate(pad_id=0)([(torch.tensor([5, 9, 9]), 1), (torch.tensor([5]), 0)])
    assert batch["input_ids"].tolist() == [[5, 9, 9], [5, 0, 0]]
    assert batch["attention_mask"].tolist() == [[True, True, True], [True, False, False]]
    assert batch["labels"].tolist() == [1, 0]


def test_registered_and_built_with_supplied_arguments(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "t.jsonl", toy_examples(20))
    dm = registry.build("data", "classification", tokenizer=tokenizer, cache_dir=str(tmp_path), paths=[path])
    assert isinstance(dm, ClassificationDataModule)
    assert isinstance(
        registry.build("data", "pydoc_topics", tokenizer=tokenizer, cache_dir="x"), ClassificationDataModule
    )
    params = [p.name for p in registry.get("data", "classification").parameters()]
    assert params[-5:] == ["paths", "text_field", "label_field", "val_paths", "test_paths"]  # after shared


# --------------------------------------------------------------------------- bad input


def test_val_label_missing_from_train_names_file_line_and_labels(tmp_path, tokenizer):
    train = write_jsonl(tmp_path / "train.jsonl", toy_examples(20))
    val = write_jsonl(
        tmp_path / "val.jsonl", [{"text": "ok", "label": "pos"}, {"text": "meh", "label": "neutral"}]
    )
    dm = build(tokenizer, [train], val_paths=[val])
    with pytest.raises(LabelError, match=r"val\.jsonl:2: val label 'neutral' .* valid labels: neg, pos"):
        dm.texts("train")


def test_a_missing_label_message_lists_at_most_twenty_labels(tmp_path, tokenizer):
    train = write_jsonl(
        tmp_path / "train.jsonl", [{"text": f"t {i}", "label": f"c{i:04d}"} for i in range(300)]
    )
    val = write_jsonl(tmp_path / "val.jsonl", [{"text": "ok", "label": "unseen"}])
    with pytest.raises(LabelError) as raised:
        build(tokenizer, [train], val_paths=[val], test_fraction=0).texts("train")
    message = str(raised.value)
    assert message.endswith("valid labels: " + ", ".join(f"c{i:04d}" for i in range(20)) + ", ... 280 more")
    assert "\n" not in message and len(message) < 400


def test_a_single_label_is_refused_and_a_head_the_labels_do_not_fit_too(tmp_path, tokenizer, make_cfg):
    one = write_jsonl(tmp_path / "one.jsonl", [{"text": f"text {i}", "label": "pos"} for i in range(20)])
    with pytest.raises(LabelError, match=r"one\.jsonl.*the train split has 1 label \(pos\); .* at least two"):
        build(tokenizer, [one]).texts("train")
    from lightning_llm import parts

    dm = build(tokenizer, [write_jsonl(tmp_path / "two.jsonl", toy_examples(20))])
    cfg = make_cfg("model=encoder", "objective=classification", "data=classification", "model.num_classes=3")
    with pytest.raises(
        ValueError, match=r"model.num_classes=3, but the data decides 2 .*leave model.num_classes"
    ):
        parts.model(cfg, tokenizer.vocab_size, dm)


@pytest.mark.parametrize(
    "name,content,message",
    [
        (
            "bad.jsonl",
            '{"text": "a", "label": "x"}\n{"text": "b", "label"\n',
            r"bad\.jsonl:2: not valid JSON",
        ),
        ("bad.jsonl", '{"text": "a", "label": "x"}\n{"label": "y"}\n', r"bad\.jsonl:2: no 'text' value"),
        (
            "bad.jsonl",
            '{"text": "a", "label": 1.5}\n',
            r"bad\.jsonl:1: 'label' must be a string or an integer",
        ),
        ("bad.jsonl", '{"text": "  ", "label": "x"}\n', r"bad\.jsonl:1: 'text' must be a non-empty string"),
        ("bad.jsonl", '["a", "x"]\n', r"bad\.jsonl:1: expected a JSON object"),
        ("bad.jsonl", "\n\n", r"bad\.jsonl: holds only whitespace"),
        (
            "bad.tsv",
            "sentence\tlabel\nhi\tx\n",
            r"bad\.tsv:1: no column 'text' in the header; columns: sentence, label",
        ),
        ("bad.csv", "text,label\nhi,x\nonly text\n", r"bad\.csv:3: no 'label' value"),
        ("bad.csv", "text,label\n", r"bad\.csv: holds no examples"),
        (
            "bad.csv",
            'text,label\na,pos\noops,"neg\nb,neg\nc,pos\n',
            r"bad\.csv:3-5: not valid CSV \(unexpected end of data\): a quote opened and not closed\?",
        ),
        (
            "bad.csv",
            'text,label\na,pos\noops,"neg\nb"\nc,pos\n',
            r"bad\.csv:3-4: the 'label' value runs over several lines: a quote opened and not closed\?",
        ),
        ("bad.tsv", "text\tlabel\na\tb\tpos\n", r"bad\.tsv:2: more fields than the 2 columns"),
        ("twice.csv", "text,label,label\nhi,1,2\n", r"twice\.csv:1: the header names the column 'label'"),
        ("bad.txt", "text\n", r"unsupported file type '\.txt'; use \.jsonl, \.tsv or \.csv"),
    ],
)
def test_bad_files_name_the_file_and_line(tmp_path, tokenizer, name, content, message):
    (tmp_path / name).write_text(content)
    dm = build(tokenizer, [str(tmp_path / name)])
    with pytest.raises(SourceError, match=message):
        dm.texts("train")


def test_missing_file_and_bad_parameters(tmp_path, tokenizer):
    with pytest.raises(FileNotFoundError, match="no such file"):
        build(tokenizer, [str(tmp_path / "absent.jsonl")]).texts("train")
    with pytest.raises(ValueError, match="data.paths must name at least one file"):
        build(tokenizer, [])
    with pytest.raises(ValueError, match="data.block_size must be >= 2"):
        build(tokenizer, ["x.jsonl"], block_size=1)
    with pytest.raises(ValueError, match="data.val_fraction must be in"):
        build(tokenizer, ["x.jsonl"], val_fraction=0.7)
    with pytest.raises(ValueError, match="unknown split 'dev'"):
        build(tokenizer, ["x.jsonl"]).texts("dev")


def test_too_few_examples_for_a_split(tmp_path, tokenizer):
    path = write_jsonl(tmp_path / "t.jsonl", toy_examples(3))
    with pytest.raises(CorpusTooSmallError, match="gave the val split none"):
        build(tokenizer, [path], val_fraction=0.01, test_fraction=0).texts("train")


def test_split_examples_keeps_equal_texts_together():
    train = [Example(f"text {i % 50}", "a", f"f:{i}") for i in range(500)]
    splits = split_examples(train, val_fraction=0.2, test_fraction=0.2, seed=0)
    seen = {split: {e.text for e in examples} for split, examples in splits.items()}
    assert not seen["train"] & seen["val"] and not seen["val"] & seen["test"]
