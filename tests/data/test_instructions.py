"""Instruction tuning data: the loss on the answers only, conversations packed whole, bad records named."""

from __future__ import annotations

import json

import pytest
import torch

from lightning_llm import registry
from lightning_llm.data.instructions import (
    DEFAULT_TEMPLATE,
    Conversation,
    InstructionCollator,
    Turn,
    conversation_ids,
    read_conversations,
    render,
    split_conversations,
    to_sequences,
)
from lightning_llm.data.sources import SourceError
from lightning_llm.objectives.causal_lm import IGNORE_INDEX, summed_cross_entropy
from tests.data.conftest import ByteTokenizer

FIELDS = ("prompt", "response", "messages")


def write_jsonl(path, records):
    path.write_text("".join(json.dumps(record) + "\n" for record in records))
    return path


def test_only_the_answers_and_their_eos_are_targets(tokenizer):
    conversation = Conversation(
        (Turn("system", "Be brief."), Turn("user", "Hi?"), Turn("assistant", "Hello."), Turn("user", "Bye?"),
         Turn("assistant", "Bye."))
    )  # fmt: skip
    ids, targets = conversation_ids(conversation, DEFAULT_TEMPLATE, tokenizer)
    rendered = "".join(DEFAULT_TEMPLATE[r].replace("{content}", c) for r, c in conversation.turns)
    assert render(conversation, DEFAULT_TEMPLATE) == rendered
    assert [i for i in ids if i != tokenizer.eos_id] == tokenizer.encode(rendered)  # the template, in order
    answers = [i for i, target in zip(ids, targets, strict=True) if target]
    eos = [tokenizer.eos_id]
    assert answers == tokenizer.encode("Hello.") + eos + tokenizer.encode("Bye.") + eos


def test_labels_are_the_next_target_token_and_prompts_get_no_gradient(tokenizer):
    from lightning_llm.models.gpt import GPT, GPTConfig

    conversations = [
        Conversation((Turn("user", f"Say {word}"), Turn("assistant", word)))
        for word in ("one", "three", "five")
    ]
    examples = [conversation_ids(c, DEFAULT_TEMPLATE, tokenizer) for c in conversations]
    sequences, cut, dropped = to_sequences(examples, block_size=64, pack=False)
    assert cut == dropped == 0 and len(sequences) == 3
    for (ids, targets), sequence in zip(examples, sequences, strict=True):
        assert sequence.input_ids == ids[:-1]
        assert sequence.labels == [
            i if t else IGNORE_INDEX for i, t in zip(ids[1:], targets[1:], strict=True)
        ]
    batch = InstructionCollator(pad_id=tokenizer.pad_id)(sequences)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=64))
    logits = model(batch["input_ids"])
    logits.retain_grad()
    loss, n_tokens = summed_cross_entropy(logits, batch["labels"])
    loss.backward()
    context = batch["labels"] == IGNORE_INDEX  # prompts, the template's words, padding
    assert n_tokens == sum(len(w) + 1 for w in ("one", "three", "five"))  # answer bytes + eos each
    assert logits.grad[context].abs().max() == 0 and logits.grad[~context].abs().sum() > 0


def test_packing_never_splits_a_conversation_and_cuts_what_cannot_fit(tokenizer):
    examples = [([7] * n, [False] * (n - 3) + [True] * 3) for n in (10, 12, 30, 5, 50)]
    examples.append(([7] * 40, [True] * 3 + [False] * 37))  # its answer survives the cut
    sequences, cut, dropped = to_sequences(examples, block_size=29, pack=True)
    lengths = [len(s.input_ids) + 1 for s in sequences]
    assert lengths == [22, 30, 5, 30] and (cut, dropped) == (2, 1)  # 10+12 | 30 | 5 | 40 cut; 50 left out
    unpacked, _, _ = to_sequences(examples, block_size=29, pack=False)
    assert len(unpacked) == 5


def test_prompt_response_and_messages_records_are_read(tmp_path):
    path = write_jsonl(
        tmp_path / "sft.jsonl",
        [{"prompt": "p", "response": "r"}, {"messages": [{"role": "user", "content": "u"},
                                                          {"role": "assistant", "content": "a"}]},
         # a table of both layouts (datasets' to_json) writes null where a record has no such field
         {"prompt": "p2", "response": "r2", "messages": None},
         {"prompt": None, "response": None, "messages": [{"role": "user", "content": "u2"},
                                                          {"role": "assistant", "content": "a2"}]}],
    )  # fmt: skip
    assert read_conversations([str(path)], FIELDS) == [
        Conversation((Turn("user", "p"), Turn("assistant", "r"))),
        Conversation((Turn("user", "u"), Turn("assistant", "a"))),
        Conversation((Turn("user", "p2"), Turn("assistant", "r2"))),
        Conversation((Turn("user", "u2"), Turn("assistant", "a2"))),
    ]


@pytest.mark.parametrize(
    ("record", "message"),
    [
        ({"messages": [{"role": "robot", "content": "x"}]}, "unknown role 'robot'; valid roles: system"),
        ({"prompt": "p"}, "no 'response' (and no 'messages'); fields present: prompt"),
        ({"prompt": "p", "response": 3}, "field 'response' holds int, expected a string"),
        ({"messages": []}, "'messages' must be a non-empty list"),
    ],
)  # fmt: skip
def test_bad_records_name_the_file_and_line(tmp_path, record, message):
    path = write_jsonl(tmp_path / "sft.jsonl", [{"prompt": "ok", "response": "ok"}, record])
    with pytest.raises(SourceError) as error:
        read_conversations([str(path)], FIELDS)
    assert str(error.value).startswith(f"{path}:2: ") and message in str(error.value)


def test_a_template_without_its_place_for_the_text_is_refused(tmp_path):
    with pytest.raises(ValueError, match=r"data.user_template must be a string holding \{content\} once"):
        registry.build(
            "data", "instructions", tokenizer=ByteTokenizer(), cache_dir=tmp_path, paths=["x.jsonl"],
            user_template="User says:",
        )  # fmt: skip


@pytest.mark.slow
def test_instruction_tuning_trains_on_the_answers(make_cfg, tmp_path):
    """A gpt fine-tuned on prompt/response pairs: the val loss is measured on the answers' tokens only."""
    from lightning_llm.train import train

    words = [f"word{i}" for i in range(300)]
    records = [{"prompt": f"Repeat {w} twice.", "response": f"{w} {w}"} for w in words]
    path = write_jsonl(tmp_path / "sft.jsonl", records)
    sizes = ["data.block_size=128", "model.block_size=128"]
    cfg = make_cfg("data=instructions", f"data.paths=[{path}]", *sizes, "trainer.max_steps=6")
    summary, objects = train(cfg, run_dir=tmp_path / "run")
    datamodule = objects["datamodule"]
    answers = sum(label != IGNORE_INDEX for s in datamodule._datasets["val"] for label in s.labels)
    assert summary["step"] == 6 and summary["val_tokens"] == answers
    val = datamodule.conversations("val")
    assert answers == sum(len(objects["tokenizer"].encode(c.turns[1].content)) + 1 for c in val)


def test_a_system_message_every_conversation_shares_does_not_decide_the_split():
    """The split hashes each conversation's first prompt, not its first turn: chat data with one system
    message for all would otherwise land in a single split."""
    conversations = [
        Conversation(
            (Turn("system", "You are helpful."), Turn("user", f"question {i}"), Turn("assistant", "ok"))
        )
        for i in range(300)
    ]
    splits = split_conversations(conversations, val_fraction=0.1, test_fraction=0.1, seed=0)
    assert all(len(splits[split]) > 10 for split in ("train", "val", "test")), {
        k: len(v) for k, v in splits.items()
    }


def test_conversations_sharing_one_prompt_are_told_why_adding_more_would_not_help():
    same = [Conversation((Turn("user", "hi"), Turn("assistant", f"answer {i}"))) for i in range(50)]
    with pytest.raises(ValueError, match=r"the 50 conversations share only 1 distinct first prompts"):
        split_conversations(same, val_fraction=0.1, test_fraction=0.1, seed=0)


def test_a_split_without_answers_is_refused_and_empty_answers_are_counted(tmp_path, caplog):
    from lightning_llm.tokenizers import CharTokenizer

    tokenizer = CharTokenizer()
    tokenizer.train(["abcdefghijklmnopqrstuvwxyz ?!0123456789"])

    def data(records):
        path = write_jsonl(tmp_path / "sft.jsonl", records)
        build = registry.build
        return build("data", "instructions", tokenizer=tokenizer, cache_dir=str(tmp_path), paths=[str(path)])

    questions = [{"messages": [{"role": "user", "content": f"question {i}"}]} for i in range(300)]
    with pytest.raises(
        ValueError, match=r"the train split has no answer to train on .* has an assistant turn"
    ):
        data(questions).setup("fit")
    blank = [{"prompt": f"question {i}", "response": "" if i % 2 else "yes"} for i in range(300)]
    data(blank).setup("fit")
    assert "conversations have an answer of empty text: it teaches only the end-of-text token" in caplog.text
    long = [{"prompt": f"a long question number {i}", "response": "yes"} for i in range(300)]
    path = write_jsonl(tmp_path / "long.jsonl", long)
    short = registry.build(
        "data", "instructions", tokenizer=tokenizer, cache_dir=str(tmp_path), paths=[str(path)], block_size=8
    )
    with pytest.raises(ValueError, match=r"every conversation of the \w+ split lost its whole answer to "):
        short.setup("fit")  # it said: lower data.batch_size or add conversations


def test_a_blank_answer_among_others_is_counted_too(tmp_path, caplog):
    """Empty answers are kept on purpose (they teach the end-of-text token), but never silently: one blank
    turn of a multi-turn conversation went uncounted."""

    def turns(i):
        first = "" if i < 3 else "a"
        return [{"role": "user", "content": f"q {i}"}, {"role": "assistant", "content": first},
                {"role": "user", "content": "and?"}, {"role": "assistant", "content": "b"}]  # fmt: skip

    records = [{"messages": turns(i)} for i in range(20)]
    path = write_jsonl(tmp_path / "sft.jsonl", records)
    dm = registry.build(
        "data", "instructions", tokenizer=ByteTokenizer(), cache_dir=str(tmp_path), paths=[str(path)],
        val_fraction=0, test_fraction=0, batch_size=2,
    )  # fmt: skip
    dm.setup("fit")
    assert "train split: 3 of 20 conversations have an answer of empty text" in caplog.text


def test_a_record_over_the_size_cap_is_refused_naming_it(tmp_path, monkeypatch):
    """A record is tokenized whole before it is cut to block_size (no prefix of its text is provably the
    prefix of its tokens), so its size is capped: one 40 MB prompt took 1 GB. The cap, made small here."""
    from lightning_llm.data import sources

    monkeypatch.setattr(sources, "MAX_RECORD_BYTES", 1000)
    records = [{"prompt": "ok", "response": "ok"}, {"prompt": "p" * 2000, "response": "r"}]
    path = write_jsonl(tmp_path / "sft.jsonl", records)
    with pytest.raises(SourceError) as error:
        read_conversations([str(path)], FIELDS)
    assert str(error.value).startswith(f"{path}:2: a record over 1000 bytes") and "\n" not in str(error.value)
