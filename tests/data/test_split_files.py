"""What every plugin whose splits may come from files (data.val_paths / data.test_paths) shares: a training
file named again for evaluation is refused, exact duplicates across splits are counted in a warning, and two
field settings naming one field are refused."""

from __future__ import annotations

import json
import logging

import pytest

from lightning_llm import registry
from lightning_llm.data.sources import SourceError, check_split_files

CONTEXT = "The parser reads tokens. Python was created by Guido van Rossum in 1991."


def classification(i: int) -> dict:
    return {"text": f"text number {i}", "label": "pos" if i % 2 else "neg"}


def pair(i: int) -> dict:
    return {"source": f"source {i}", "target": f"target {i}"}


def instruction(i: int) -> dict:
    return {"prompt": f"question {i}", "response": f"answer {i}"}


def question(i: int) -> dict:
    start = CONTEXT.index("Guido")
    return {"id": str(i), "question": f"Who created Python? ({i})", "context": CONTEXT,
            "answers": {"text": ["Guido van Rossum"], "answer_start": [start]}}  # fmt: skip


# plugin -> (a record maker, the files' suffix, how the module lists a split's items)
PLUGINS = {
    "classification": (classification, "jsonl", lambda dm, split: dm.examples(split)),
    "pairs": (pair, "jsonl", lambda dm, split: dm.pairs(split)),
    "instructions": (instruction, "jsonl", lambda dm, split: dm.conversations(split)),
    "squad": (question, "jsonl", lambda dm, split: dm.questions(split)),
}


def write(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return str(path)


def build(plugin, paths, **params):
    return registry.build("data", plugin, tokenizer=None, cache_dir="unused", paths=paths, **params)


def test_check_split_files_compares_real_paths_and_allows_one_dev_file_for_val_and_test(tmp_path):
    (tmp_path / "train.jsonl").write_text("{}\n")
    (tmp_path / "dev.jsonl").write_text("{}\n")
    (tmp_path / "link.jsonl").symlink_to(tmp_path / "train.jsonl")
    train = [str(tmp_path / "train.jsonl")]
    with pytest.raises(SourceError, match=r"train\.jsonl: named by both data\.paths and data\.val_paths; "):
        check_split_files(train, {"val_paths": [str(tmp_path / "t*.jsonl")]})
    with pytest.raises(SourceError) as error:
        check_split_files(train, {"val_paths": None, "test_paths": [str(tmp_path / "link.jsonl")]})
    message = str(error.value)
    assert message.startswith(f"{tmp_path / 'link.jsonl'} (the file {(tmp_path / 'train.jsonl').resolve()}")
    assert "named by both data.paths and data.test_paths" in message
    dev = [str(tmp_path / "dev.jsonl")]
    check_split_files(train, {"val_paths": dev, "test_paths": dev})  # a dev set scored twice leaks nothing


@pytest.mark.parametrize("plugin", PLUGINS)
@pytest.mark.parametrize("key", ["val_paths", "test_paths"])
def test_a_training_file_named_again_for_evaluation_is_refused(tmp_path, plugin, key):
    """It was read silently: the run scored the model on examples it trained on."""
    make, suffix, items = PLUGINS[plugin]
    train = write(tmp_path / f"train.{suffix}", [make(i) for i in range(40)])
    (tmp_path / f"again.{suffix}").symlink_to(train)
    for held_out in (str(tmp_path / f"t*.{suffix}"), str(tmp_path / f"again.{suffix}")):
        dm = build(plugin, [train], **{key: [held_out]})
        with pytest.raises(SourceError, match=rf"named by both data\.paths and data\.{key}; a training file"):
            items(dm, "train")


@pytest.mark.parametrize("plugin", PLUGINS)
def test_texts_train_shares_with_an_evaluation_file_are_counted_in_a_warning(tmp_path, plugin, caplog):
    make, suffix, items = PLUGINS[plugin]
    train = write(tmp_path / f"train.{suffix}", [make(i) for i in range(40)])
    val = write(tmp_path / f"val.{suffix}", [make(i) for i in range(37, 45)])  # 3 of 8 are train's
    test = write(tmp_path / f"test.{suffix}", [make(i) for i in range(100, 110)])
    caplog.set_level(logging.WARNING)
    dm = build(plugin, [train], val_paths=[val], test_paths=[test])
    assert len(items(dm, "val")) == 8  # kept: real datasets hold a few duplicates
    shared = [r.getMessage() for r in caplog.records if "the train split has too" in r.getMessage()]
    assert len(shared) == 1 and shared[0].startswith("val split: 3 of its 8 "), shared


@pytest.mark.parametrize(
    ("plugin", "params", "message"),
    [
        ("classification", {"text_field": "label"}, "data.text_field and data.label_field both name 'label'"),
        ("classification", {"label_field": "text"}, "data.text_field and data.label_field both name 'text'"),
        ("pairs", {"target_field": "source"}, "data.source_field and data.target_field both name 'source'"),
        ("instructions", {"response_field": "prompt"}, "data.prompt_field and data.response_field both"),
        ("instructions", {"messages_field": "response"}, "data.response_field and data.messages_field both"),
    ],
)
def test_two_field_settings_naming_one_field_are_refused_at_construction(plugin, params, message):
    """``text_field == label_field`` trained on the label as the input."""
    with pytest.raises(ValueError, match=message.replace(" both name ", " both name the field ")):
        build(plugin, ["never-read.jsonl"], **params)
