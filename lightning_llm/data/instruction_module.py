"""The instruction-tuning DataModule, built by the ``instructions`` data plugin (``lightning_llm.data.
instructions`` reads the conversations and says which tokens are targets)."""

from __future__ import annotations

import logging
from collections.abc import Callable

from lightning_llm.data.corpus import SPLITS
from lightning_llm.data.instructions import (
    Conversation,
    InstructionCollator,
    TrainingSequence,
    conversation_ids,
    conversations_fingerprint,
    render,
    to_sequences,
)
from lightning_llm.data.loading import STAGE_SPLITS, ReadSplitsDataModule
from lightning_llm.data.settings import DataSettings

__all__ = ["InstructionDataModule"]

log = logging.getLogger(__name__)


class InstructionDataModule(ReadSplitsDataModule):
    """Batches of ``{"input_ids", "labels"}`` (B, T) for ``objective=causal_lm``: labels are the next token
    where it is part of an assistant's answer, -100 elsewhere (prompts, templates, padding)."""

    def __init__(
        self,
        tokenizer: object,
        read_splits: Callable[[], dict[str, list[Conversation]]],
        template: dict[str, str],
        pack: bool,
        settings: DataSettings,
    ) -> None:
        super().__init__(settings, read_splits)
        self.tokenizer = tokenizer
        self.template = template
        self.pack = pack
        self._datasets: dict[str, list[TrainingSequence]] = {}  # a list is a map-style dataset

    def conversations(self, split: str) -> list[Conversation]:
        return self.examples(split)

    def texts(self, split: str) -> list[str]:
        """Every conversation of ``split`` as the template renders it (for tokenizer training, when the
        tokenizer is not pretrained: it then knows the template's own characters too)."""
        return [render(conversation, self.template) for conversation in self.conversations(split)]

    def fingerprint(self) -> str:
        return conversations_fingerprint({s: self.conversations(s) for s in SPLITS}, self.template)

    def setup(self, stage: str | None = None) -> None:
        for split in STAGE_SPLITS.get(stage, SPLITS):
            if self.conversations(split) and split not in self._datasets:
                examples = [
                    conversation_ids(c, self.template, self.tokenizer) for c in self.conversations(split)
                ]
                sequences, cut, dropped = to_sequences(examples, self.block_size, self.pack)
                if cut:
                    log.warning(
                        "%s split: %d conversations are longer than data.block_size=%d tokens and were cut; "
                        "%d of them lost their whole answer and are left out",
                        split,
                        cut,
                        self.block_size,
                        dropped,
                    )
                if examples and not sequences and dropped:  # "add conversations" would not help
                    raise ValueError(
                        f"data: every conversation of the {split} split lost its whole answer to "
                        f"data.block_size={self.block_size} tokens, so none is left; raise data.block_size"
                    )
                empty = sum(_has_blank_answer(c) for c in self.conversations(split))
                if empty:  # kept on purpose (a turn may rightly say nothing), but never silently
                    log.warning(
                        "%s split: %d of %d conversations have an answer of empty text: it teaches only the "
                        "end-of-text token",
                        split,
                        empty,
                        len(examples),
                    )
                targets = sum(label != -100 for s in sequences for label in s.labels)
                log.info("%s split: %d sequences, %d target tokens", split, len(sequences), targets)
                if sequences and not targets:  # nothing to learn or score: a loss of 0 or nan, silently
                    raise ValueError(
                        f"data: the {split} split has no answer to train on or score: none of its "
                        f"{len(examples)} conversations has an assistant turn (a response)"
                    )
                self._datasets[split] = sequences
        self.check_train_size("sequences", "add conversations")

    def collate_fn(self) -> InstructionCollator:
        return InstructionCollator(self.tokenizer.pad_id)


def _has_blank_answer(conversation: Conversation) -> bool:
    """Whether an assistant turn of ``conversation`` is blank (only whitespace)."""
    return any(turn.role == "assistant" and not turn.content.strip() for turn in conversation.turns)
