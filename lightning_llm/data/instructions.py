"""Instruction tuning (supervised fine-tuning) of a decoder-only model: conversations rendered with a chat
template, the loss on the assistant's tokens only.

A record of a JSON Lines file is either ``{"prompt": ..., "response": ...}`` (one user turn and the answer)
or ``{"messages": [{"role": "system" | "user" | "assistant", "content": ...}, ...]}``. Each turn is rendered
with its role's template (``{content}`` marks where the text goes) and the pieces are tokenized one by one:
an assistant turn's text and the eos after it are targets, everything else (system and user turns, the
template's own words) is context whose labels are -100, so ``objective=causal_lm`` trains on the responses
alone and divides by their tokens. Sequences are cut to ``block_size + 1`` tokens; with ``pack`` whole
conversations are packed into sequences without ever splitting one (the boundaries are kept), else each is
its own sequence, padded per batch.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import NamedTuple, Protocol

import torch
from torch.nn.utils.rnn import pad_sequence

from lightning_llm.data.corpus import SPLITS, split_by_key
from lightning_llm.data.sources import SourceError, expand_paths, json_object, read_text_file
from lightning_llm.objectives.causal_lm import IGNORE_INDEX

__all__ = [
    "DEFAULT_TEMPLATE",
    "ROLES",
    "Conversation",
    "InstructionCollator",
    "TrainingSequence",
    "Turn",
    "check_template",
    "conversation_ids",
    "first_prompt",
    "read_conversations",
    "split_conversations",
    "to_sequences",
]

ROLES = ("system", "user", "assistant")
DEFAULT_TEMPLATE = {
    "system": "{content}\n\n",
    "user": "### Instruction:\n{content}\n\n",
    "assistant": "### Response:\n{content}",
}


class Turn(NamedTuple):
    role: str
    content: str


class Conversation(NamedTuple):
    turns: tuple[Turn, ...]


class InstructionTokenizer(Protocol):
    eos_id: int
    pad_id: int

    def encode(self, text: str) -> list[int]: ...


def check_template(template: dict[str, str]) -> None:
    """Every role has a template holding ``{content}`` exactly once."""
    for role in ROLES:
        text = template.get(role)
        if not isinstance(text, str) or text.count("{content}") != 1:
            raise ValueError(
                f"data.{role}_template must be a string holding {{content}} once (where the turn's text "
                f"goes), got {text!r}"
            )


# --------------------------------------------------------------------------- reading


def read_conversations(patterns: list[str], fields: tuple[str, str, str]) -> list[Conversation]:
    """The conversations of JSON Lines files; ``fields``: the prompt, response and messages keys."""
    conversations = []
    for path in expand_paths(patterns):
        for lineno, line in enumerate(read_text_file(path).split("\n"), start=1):
            if line.strip():
                conversations.append(_conversation(line, fields, f"{path}:{lineno}"))
    return conversations


def _conversation(line: str, fields: tuple[str, str, str], where: str) -> Conversation:
    prompt, response, messages = fields
    record = json_object(line, where, f"with '{prompt}' and '{response}', or '{messages}'")
    if record.get(messages) is not None:  # null: a table of both layouts (datasets' to_json) leaves it empty
        turns = record[messages]
        if not isinstance(turns, list) or not turns:
            raise SourceError(f"{where}: '{messages}' must be a non-empty list of {{role, content}} objects")
        return Conversation(tuple(_turn(turn, f"{where}: {messages}[{i}]") for i, turn in enumerate(turns)))
    missing = [key for key in (prompt, response) if record.get(key) is None]
    if missing:
        fields_present = ", ".join(record) or "(none)"
        raise SourceError(
            f"{where}: no '{missing[0]}' (and no '{messages}'); fields present: {fields_present} "
            "(set data.prompt_field / data.response_field / data.messages_field)"
        )
    for key in (prompt, response):
        if not isinstance(record[key], str):
            raise SourceError(f"{where}: field '{key}' holds {type(record[key]).__name__}, expected a string")
    return Conversation((Turn("user", record[prompt]), Turn("assistant", record[response])))


def _turn(turn: object, where: str) -> Turn:
    if not isinstance(turn, dict) or not isinstance(turn.get("content"), str):
        raise SourceError(f"{where}: expected an object with a string 'content' and a 'role'")
    role = turn.get("role")
    if role not in ROLES:
        raise SourceError(f"{where}: unknown role {role!r}; valid roles: {', '.join(ROLES)}")
    return Turn(role, turn["content"])


def split_conversations(
    conversations: Sequence[Conversation], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[Conversation]]:
    """Train/val/test by a stable hash of each conversation's first prompt, its first turn that is not the
    system's (the same prompt stays in one split, so no evaluation prompt is a training prompt; a system
    message that every conversation shares would put them all in one split)."""
    return split_by_key(
        conversations, first_prompt, val_fraction, test_fraction, seed, "conversations", "first prompts"
    )


def first_prompt(conversation: Conversation) -> str:
    """The first turn that is not the system's (the first turn when all are): what a conversation asks."""
    turns = conversation.turns
    return next((turn.content for turn in turns if turn.role != "system"), turns[0].content)


def conversations_fingerprint(splits: dict[str, list[Conversation]], template: dict[str, str]) -> str:
    digest = hashlib.sha256(json.dumps({"template": template}, sort_keys=True).encode())
    for split in SPLITS:
        digest.update(f"\0{split}\0{len(splits[split])}\0".encode())
        for conversation in splits[split]:
            digest.update(json.dumps(conversation.turns).encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------- tokens and targets


def render(conversation: Conversation, template: dict[str, str]) -> str:
    """The conversation as the template writes it (the text ``conversation_ids`` tokenizes piece by piece)."""
    return "".join(template[role].replace("{content}", content) for role, content in conversation.turns)


def conversation_ids(
    conversation: Conversation, template: dict[str, str], tokenizer: InstructionTokenizer
) -> tuple[list[int], list[bool]]:
    """The token ids of a rendered conversation and, per token, whether it is a target (an assistant's
    text and the eos that ends its turn)."""
    ids: list[int] = []
    targets: list[bool] = []
    for role, content in conversation.turns:
        before, after = template[role].split("{content}")
        answer = role == "assistant"
        for text, target in ((before, False), (content, answer), (after, False)):
            if text:
                piece = tokenizer.encode(text)
                ids += piece
                targets += [target] * len(piece)
        if answer:
            ids.append(tokenizer.eos_id)
            targets.append(True)
    return ids, targets


class TrainingSequence(NamedTuple):
    """One training sequence: ``input_ids`` and ``labels`` (-100 where there is no target), same length."""

    input_ids: list[int]
    labels: list[int]


def to_sequences(
    examples: list[tuple[list[int], list[bool]]], block_size: int, pack: bool
) -> tuple[list[TrainingSequence], int, int]:
    """Causal-LM sequences of at most ``block_size`` tokens (inputs, and labels shifted by one); how many
    conversations were cut to fit, and how many of those were left out because no target was left. With
    ``pack``, consecutive conversations share a sequence, never split."""
    cut = dropped = 0
    fitted = []
    for ids, targets in examples:
        if len(ids) > block_size + 1:
            ids, targets, cut = ids[: block_size + 1], targets[: block_size + 1], cut + 1
            if not any(targets[1:]):
                dropped += 1
                continue
        fitted.append((ids, targets))
    groups: list[list[tuple[list[int], list[bool]]]] = []
    size = 0
    for example in fitted:
        if pack and groups and size + len(example[0]) <= block_size + 1:
            groups[-1].append(example)
            size += len(example[0])
        else:
            groups.append([example])
            size = len(example[0])
    sequences = []
    for group in groups:
        ids = [token for example_ids, _ in group for token in example_ids]
        targets = [target for _, example_targets in group for target in example_targets]
        labels = [
            token if target else IGNORE_INDEX for token, target in zip(ids[1:], targets[1:], strict=True)
        ]
        sequences.append(TrainingSequence(ids[:-1], labels))
    return sequences, cut, dropped


@dataclass(frozen=True)
class InstructionCollator:
    """Right-pads a batch to its longest sequence: pad ids in the inputs, -100 in the labels."""

    pad_id: int

    def __call__(self, sequences: list[TrainingSequence]) -> dict[str, torch.Tensor]:
        inputs = [torch.tensor(s.input_ids, dtype=torch.long) for s in sequences]
        labels = [torch.tensor(s.labels, dtype=torch.long) for s in sequences]
        return {
            "input_ids": pad_sequence(inputs, batch_first=True, padding_value=self.pad_id),
            "labels": pad_sequence(labels, batch_first=True, padding_value=IGNORE_INDEX),
        }
