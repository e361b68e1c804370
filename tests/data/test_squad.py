import json
import re

import pytest

from lightning_llm.data.sources import SourceError, pydoc_topics
from lightning_llm.data.squad import first_sentence, pydoc_questions, read_squad, split_questions

CONTEXT = "The parser reads tokens. Python was created by Guido van Rossum in 1991."


def squad_json(path, qas, context=CONTEXT):
    document = {"version": "1.1", "data": [{"title": "t", "paragraphs": [{"context": context, "qas": qas}]}]}
    path.write_text(json.dumps(document))
    return path


def test_reads_squad_json_and_both_jsonl_answer_layouts(tmp_path):
    start = CONTEXT.index("Guido")
    qa = {
        "id": "q1",
        "question": "Who created Python?",
        "answers": [{"text": "Guido van Rossum", "answer_start": start}],
    }
    json_file = squad_json(tmp_path / "train.json", [qa])
    jsonl_file = tmp_path / "more.jsonl"
    records = [
        {
            "id": "q2",
            "context": CONTEXT,
            "question": "When?",
            "answers": {"text": ["1991"], "answer_start": [67]},
        },
        {"context": CONTEXT, "question": "Reads what?", "answers": [{"text": "tokens", "answer_start": 17}]},
    ]
    jsonl_file.write_text("\n".join(json.dumps(r) for r in records) + "\n")

    examples = read_squad([str(json_file), str(jsonl_file)])

    assert [e.id for e in examples[:2]] == ["q1", "q2"]
    assert examples[0].answers == ("Guido van Rossum",) and examples[0].starts == (start,)
    assert examples[1].answers == ("1991",) and CONTEXT[67:71] == "1991"
    assert examples[2].id == f"{jsonl_file}:2"  # no id: where it was read
    assert examples[0].source == f"{json_file}: data[0].paragraphs[0].qas[0]"


def test_an_answer_whose_offset_does_not_match_names_the_record_and_where_the_text_is(tmp_path):
    qa = {"id": "q1", "question": "Who?", "answers": [{"text": "Guido", "answer_start": 3}]}
    path = squad_json(tmp_path / "dev.json", [qa])
    with pytest.raises(SourceError) as err:
        read_squad([str(path)])
    message = str(err.value)
    assert f"{path}: data[0].paragraphs[0].qas[0]" in message and "answer_start=3" in message
    assert f"occurs at {CONTEXT.index('Guido')}" in message


def test_a_question_without_answer_is_refused_unless_no_answer_is_set(tmp_path):
    qa = {"id": "q1", "question": "Who wrote Perl?", "answers": [], "is_impossible": True}
    path = squad_json(tmp_path / "v2.json", [qa])
    with pytest.raises(SourceError, match="no answer.*data.no_answer=true"):
        read_squad([str(path)])
    (example,) = read_squad([str(path)], no_answer=True)
    assert example.answers == () and example.starts == ()


@pytest.mark.parametrize(
    "qa, message",
    [
        (
            {"question": "Who?", "answers": [{"text": "Guido", "answer_start": 48}], "is_impossible": True},
            "is_impossible",
        ),
        (
            {"question": "Who?", "answers": [{"text": "The", "answer_start": 0}], "is_impossible": "false"},
            "is_impossible must be true or false",
        ),
        ({"question": "", "answers": []}, "'question' must be a non-empty string"),
        ({"question": "Who?", "answers": [{"text": " ", "answer_start": 0}]}, "non-empty 'text'"),
        ({"question": "Who?", "answers": [{"text": "The", "answer_start": -1}]}, "answer_start' >= 0"),
        ({"question": "Who?", "answers": {"text": ["The"], "answer_start": []}}, "equally long"),
    ],
)
def test_malformed_questions_are_refused_with_the_record(tmp_path, qa, message):
    path = squad_json(tmp_path / "bad.json", [qa])
    with pytest.raises(SourceError, match=message) as err:
        read_squad([str(path)])
    assert "qas[0]" in str(err.value)


def test_other_files_and_layouts_are_refused(tmp_path):
    (tmp_path / "a.txt").write_text("hello")
    with pytest.raises(SourceError, match="unsupported file type '.txt'"):
        read_squad([str(tmp_path / "a.txt")])
    (tmp_path / "b.json").write_text('{"paragraphs": []}')
    with pytest.raises(SourceError, match='"data" list'):
        read_squad([str(tmp_path / "b.json")])
    (tmp_path / "c.json").write_text('{"question": "q"}\n{"question": "r"}\n')  # datasets' to_json default
    with pytest.raises(SourceError, match=r"Extra data at line 2\); one object a line is JSON Lines: name"):
        read_squad([str(tmp_path / "c.json")])


def test_pydoc_questions_are_cloze_sentences_with_the_answer_at_its_offset():
    examples = pydoc_questions(pydoc_topics())
    assert len(examples) > 3000
    for example in examples:
        (answer,), (start,) = example.answers, example.starts
        assert example.context[start : start + len(answer)] == answer
        assert re.search(r"\bwhat\b", example.question) and answer not in example.question.split()
    assert pydoc_questions(pydoc_topics()) == examples  # the same set on every machine


def test_questions_on_one_passage_share_a_split():
    examples = pydoc_questions(pydoc_topics())
    splits = split_questions(examples, 0.1, 0.1, 1234)
    passages = {split: {e.context for e in items} for split, items in splits.items()}
    assert not passages["train"] & passages["val"] and not passages["train"] & passages["test"]
    assert sum(map(len, splits.values())) == len(examples)


def test_first_sentence():
    assert first_sentence(CONTEXT) == "The parser reads tokens."
