import pytest
import torch

from lightning_llm.data.qa_windows import QACollator, encode_question, training_items
from lightning_llm.data.squad import QAExample
from lightning_llm.tokenizers import ByteBPETokenizer, CharTokenizer

PASSAGE = (
    " ".join(f"word{i}" for i in range(60)) + " the answer is here. " + " ".join(f"w{i}" for i in range(40))
)


@pytest.fixture(scope="module")
def tokenizer() -> CharTokenizer:
    tokenizer = CharTokenizer()
    tokenizer.train([PASSAGE + "?QWhich"])
    return tokenizer


def example(answer: str = "answer is here", context: str = PASSAGE) -> QAExample:
    return QAExample("q", "Which?", context, (answer,), (context.index(answer),), "test")


def test_a_long_passage_is_read_in_windows_sharing_stride_tokens_and_reaching_its_end(tokenizer):
    question = encode_question(example(), tokenizer, block_size=64, max_question_tokens=8, stride=16)
    room = 64 - len("Which?") - 3
    assert len(question.offsets) == len(PASSAGE)  # one token per character
    starts = [w.context_start for w in question.windows]
    assert starts == list(range(0, starts[-1] + 1, room - 16))  # each window moves room - stride tokens
    assert starts[-1] + room >= len(PASSAGE) > starts[-2] + room  # the last one reaches the end, only it
    for window in question.windows:
        assert window.input_ids[0] == tokenizer.cls_id and window.input_ids[-1] == tokenizer.sep_id
        assert window.input_ids[window.first - 1] == tokenizer.sep_id and len(window.input_ids) <= 64


def test_windows_holding_the_whole_answer_point_at_it_the_others_at_cls(tokenizer):
    question = encode_question(example(), tokenizer, block_size=64, max_question_tokens=8, stride=16)
    begin = PASSAGE.index("answer is here")
    pointed = 0
    for window in question.windows:
        passage_range = range(
            window.context_start, window.context_start + len(window.input_ids) - window.first - 1
        )
        inside = begin in passage_range and begin + len("answer is here") - 1 in passage_range
        if inside:
            pointed += 1
            text = tokenizer.decode(window.input_ids[window.start : window.end + 1])
            assert text == "answer is here"
        else:
            assert (window.start, window.end) == (0, 0)
    assert pointed >= 1


def test_the_batch_maps_every_passage_token_back_to_its_characters(tokenizer):
    bpe = ByteBPETokenizer(vocab_size=300)
    bpe.train([PASSAGE] * 3)
    items = [
        encode_question(example(), bpe, block_size=48, max_question_tokens=8, stride=8),
        encode_question(example("word3"), bpe, block_size=48, max_question_tokens=8, stride=8),
    ]
    batch = QACollator(bpe.pad_id, no_answer=False)(items)
    rows = sum(len(item.windows) for item in items)
    assert batch["input_ids"].shape[0] == rows == batch["labels"].shape[0] == len(batch["question_of_row"])
    assert batch["question_of_row"].tolist() == [0] * len(items[0].windows) + [1] * len(items[1].windows)
    for r in range(rows):
        ids, offsets = batch["input_ids"][r], batch["offsets"][r]
        passage = offsets[:, 0] >= 0
        first = int(passage.nonzero()[0])
        # segment 1 is the passage and its closing <sep>; padding is masked out
        assert batch["token_type_ids"][r].tolist() == [0] * first + [1] * (
            int(batch["attention_mask"][r].sum()) - first
        ) + [0] * int((~batch["attention_mask"][r]).sum())
        text = "".join(PASSAGE[a:b] for a, b in offsets[passage].tolist())
        assert text == bpe.decode(ids[passage].tolist())
        start, end = batch["labels"][r].tolist()
        if start:
            answer = PASSAGE[offsets[start, 0] : offsets[end, 1]].strip()
            assert answer == items[batch["question_of_row"][r]].example.answers[0]
    assert batch["answers"] == [["answer is here"], ["word3"]] and batch["contexts"] == [PASSAGE, PASSAGE]


def test_training_items_are_single_windows(tokenizer):
    question = encode_question(example(), tokenizer, block_size=64, max_question_tokens=8, stride=16)
    items = training_items(question)
    assert [item.windows for item in items] == [[w] for w in question.windows]
    batch = QACollator(tokenizer.pad_id, no_answer=False)(items[:2])
    assert batch["input_ids"].shape[0] == 2 and batch["question_of_row"].tolist() == [0, 1]


def test_an_unanswerable_question_points_every_window_at_cls(tokenizer):
    unanswerable = QAExample("q", "Which?", PASSAGE, (), (), "test")
    question = encode_question(unanswerable, tokenizer, block_size=64, max_question_tokens=8, stride=16)
    assert {(w.start, w.end) for w in question.windows} == {(0, 0)}
    batch = QACollator(tokenizer.pad_id, no_answer=True)([question])
    assert batch["answers"] == [[]] and batch["no_answer"] is True
    assert torch.equal(batch["labels"], torch.zeros(len(question.windows), 2, dtype=torch.int64))
