"""The extractive question-answering DataModule, built by the ``squad`` data plugin
(``lightning_llm.data.squad`` reads the questions; ``lightning_llm.data.qa_windows`` makes the windows and
says what a batch holds)."""

from __future__ import annotations

from collections.abc import Callable

from lightning_llm.data.corpus import SPLITS
from lightning_llm.data.loading import STAGE_SPLITS, ReadSplitsDataModule
from lightning_llm.data.qa_windows import EncodedQuestion, QACollator, encode_question, training_items
from lightning_llm.data.settings import DataSettings
from lightning_llm.data.squad import QAExample, qa_fingerprint

__all__ = ["SquadDataModule"]


class SquadDataModule(ReadSplitsDataModule):
    """Batches of question windows for ``objective=span_qa`` (``QACollator`` lists what they hold): train
    batches of ``batch_size`` windows, evaluation batches of ``batch_size`` questions with all their
    windows."""

    drop_last_train = False  # the loss is summed and divided by the windows: a short last batch is exact

    def __init__(
        self,
        tokenizer: object,
        read_splits: Callable[[], dict[str, list[QAExample]]],
        max_question_tokens: int,
        stride: int,
        no_answer: bool,
        settings: DataSettings,
    ) -> None:
        super().__init__(settings, read_splits)
        self.tokenizer = tokenizer
        self.max_question_tokens = max_question_tokens
        self.stride = stride
        self.no_answer = no_answer
        self._datasets: dict[str, list[EncodedQuestion]] = {}  # a list is a map-style dataset

    def questions(self, split: str) -> list[QAExample]:
        return self.examples(split)

    def texts(self, split: str) -> list[str]:
        """Each passage of ``split`` once, then its questions (for tokenizer training)."""
        questions = self.questions(split)
        return [*dict.fromkeys(q.context for q in questions), *(q.question for q in questions)]

    def fingerprint(self) -> str:
        params = {"no_answer": self.no_answer}
        return qa_fingerprint({split: self.questions(split) for split in SPLITS}, params)

    def model_settings(self) -> dict[str, bool]:
        """The encoder needs its span head (start and end logits at every position)."""
        return {"span_head": True}

    def setup(self, stage: str | None = None) -> None:
        for split in STAGE_SPLITS.get(stage, SPLITS):
            if self.questions(split) and split not in self._datasets:
                encoded = [self._encode(example) for example in self.questions(split)]
                if split == "train":
                    encoded = [item for question in encoded for item in training_items(question)]
                self._datasets[split] = encoded
        self.check_train_size("question windows", "add questions")

    def _encode(self, example: QAExample) -> EncodedQuestion:
        limits = (self.block_size, self.max_question_tokens, self.stride)
        return encode_question(example, self.tokenizer, *limits)

    def collate_fn(self) -> QACollator:
        return QACollator(self.tokenizer.pad_id, self.no_answer)
