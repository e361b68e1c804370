"""The built-in ``data`` plugins: one dataclass each, which is the plugin's config, building its DataModule.

``DataSettings`` (``lightning_llm.data.settings``) declares once what every plugin has (sequence length,
batch size, the split, the loaders); each plugin adds where its data comes from, and
``build(tokenizer, cache_dir)`` makes its ``LightningDataModule`` with itself as the settings:
``TextDataModule`` for language modelling, ``ClassificationDataModule``, ``InstructionDataModule`` for
instruction tuning, ``PairDataModule`` for sequence-to-sequence. Those classes are imported when a plugin
builds one: they need Lightning, which listing the plugins or composing a config should not load.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from lightning_llm.data.classification import pydoc_topic_examples, read_examples
from lightning_llm.data.corpus import SPLITS, warn_shared_texts
from lightning_llm.data.instructions import (
    DEFAULT_TEMPLATE,
    Conversation,
    check_template,
    first_prompt,
    read_conversations,
    split_conversations,
)
from lightning_llm.data.pairs import (
    check_reverse_words,
    file_splits,
    hashed_splits,
    read_pairs,
    reverse_words_corpus,
)
from lightning_llm.data.settings import ClassificationSettings, DataSettings, PairSettings
from lightning_llm.data.sources import as_paths, check_split_files, pydoc_topics, read_text_files
from lightning_llm.data.squad import QAExample, pydoc_questions, read_squad, split_questions
from lightning_llm.data.streams import Corpus
from lightning_llm.registry import register

if TYPE_CHECKING:
    from lightning_llm.data.classification_module import ClassificationDataModule
    from lightning_llm.data.instruction_module import InstructionDataModule
    from lightning_llm.data.pair_module import PairDataModule
    from lightning_llm.data.sentence_pair_module import SentencePairDataModule
    from lightning_llm.data.squad_module import SquadDataModule
    from lightning_llm.data.text_module import TextDataModule

__all__ = [
    "ClassificationFiles",
    "InstructionFiles",
    "JsonlData",
    "PairFiles",
    "ParquetData",
    "PydocData",
    "PydocTopics",
    "ReverseWords",
    "SavedDataset",
    "SentencePairs",
    "SquadFiles",
    "TextFiles",
]


R = TypeVar("R")
_SPLIT_KEYS = ("paths", "val_paths", "test_paths")


def _require(key: str, value: str, what: str) -> None:
    if not value:
        raise ValueError(f"data.{key} must name {what}, e.g. data.{key}=text")


def _distinct(settings: object, *keys: str) -> None:
    """Refuse two field settings naming one field: its value would be read as both (a label as the text)."""
    named: dict[str, str] = {}
    for key in keys:
        first = named.setdefault(getattr(settings, key), key)
        if first != key:
            raise ValueError(
                f"data.{first} and data.{key} both name the field '{getattr(settings, key)}'; "
                "each must name its own field"
            )


def _files_checked(settings: Any, read: Callable[[], R]) -> Callable[[], R]:
    """``read``, refusing first a file that ``settings``' paths and its val_paths or test_paths both name."""

    def checked() -> R:
        held_out = {"val_paths": settings.val_paths, "test_paths": settings.test_paths}
        check_split_files(settings.paths, held_out)
        return read()

    return checked


# --------------------------------------------------------------------------- language modelling


@dataclass(kw_only=True)
class _TextData(DataSettings):
    num_proc: int = 0  # processes that prepare (tokenize) the corpus on first use; 0: one per 4 cores

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.num_proc < 0:
            raise ValueError(f"data.num_proc must be >= 0 (0: one per 4 cores), got {self.num_proc}")

    def corpus(self) -> Corpus:
        raise NotImplementedError

    def build(self, tokenizer: Any, cache_dir: str | Path) -> TextDataModule:
        from lightning_llm.data.text_module import TextDataModule

        return TextDataModule(tokenizer, cache_dir, self.corpus(), self, num_proc=self.num_proc)


@register("data", "pydoc")
@dataclass(kw_only=True)
class PydocData(_TextData):
    """Python's bundled documentation (the pydoc topics, ~465k characters of English): no files needed."""

    def corpus(self) -> Corpus:
        return Corpus("pydoc")


@register("data", "text")
@dataclass(kw_only=True)
class TextFiles(_TextData):
    """UTF-8 text files, one document each, split into paragraphs at blank lines (read line by line)."""

    paths: list[str]  # files, globs or folders (every .txt under one; ~ expanded), e.g. [books/*.txt]

    def __post_init__(self) -> None:
        super().__post_init__()
        as_paths("paths", self.paths)

    def corpus(self) -> Corpus:
        return Corpus("text", tuple(as_paths("paths", self.paths)))


@register("data", "jsonl")
@dataclass(kw_only=True)
class JsonlData(_TextData):
    """JSON Lines files: one JSON object per line, its ``field`` holding one document (read record by
    record; each record goes whole to one split)."""

    paths: list[str]  # files, globs or folders (every .jsonl under one), e.g. [shards/*.jsonl]
    field: str = "text"  # the key of each record that holds its text

    def __post_init__(self) -> None:
        super().__post_init__()
        as_paths("paths", self.paths)
        _require("field", self.field, "the JSON key that holds the text")

    def corpus(self) -> Corpus:
        return Corpus("jsonl", tuple(as_paths("paths", self.paths)), self.field)


@register("data", "parquet")
@dataclass(kw_only=True)
class ParquetData(_TextData):
    """Parquet files (needs ``pyarrow``): one document per row of a string column, read row group by row
    group (each row goes whole to one split)."""

    paths: list[str]  # files, globs or folders (every .parquet under one: a Hub snapshot), e.g. [shards]
    column: str = "text"  # the string column that holds the text

    def __post_init__(self) -> None:
        super().__post_init__()
        as_paths("paths", self.paths)
        _require("column", self.column, "the Parquet column that holds the text")

    def corpus(self) -> Corpus:
        return Corpus("parquet", tuple(as_paths("paths", self.paths)), self.column)


@register("data", "dataset")
@dataclass(kw_only=True)
class SavedDataset(_TextData):
    """A Hugging Face ``datasets`` dataset written by ``save_to_disk`` (needs ``datasets``): one document
    per row of a string column, read in ranges of rows from its memory-mapped Arrow files."""

    paths: list[
        str
    ]  # folders written by save_to_disk (one split's folder of a DatasetDict), e.g. [wiki/train]
    column: str = "text"  # the string column that holds the text

    def __post_init__(self) -> None:
        super().__post_init__()
        as_paths("paths", self.paths)
        _require("column", self.column, "the dataset column that holds the text")

    def corpus(self) -> Corpus:
        return Corpus("dataset", tuple(as_paths("paths", self.paths)), self.column)


# --------------------------------------------------------------------------- classification


@dataclass(kw_only=True)
class _ClassificationData(ClassificationSettings):
    def readers(self) -> tuple[Any, Any, Any]:
        """The readers of the train examples, and of the val and test examples where files give them."""
        raise NotImplementedError

    def build(self, tokenizer: Any, cache_dir: str | Path) -> ClassificationDataModule:
        from lightning_llm.data.classification_module import ClassificationDataModule

        return ClassificationDataModule(tokenizer, *self.readers(), self)


@register("data", "pydoc_topics")
@dataclass(kw_only=True)
class PydocTopics(_ClassificationData):
    """Which pydoc topic a paragraph of Python's documentation comes from (no files needed).

    The task: each paragraph of the ``num_topics`` pydoc topics with the most paragraphs (on Python 3.11,
    for 8: compound, debugger, formatstrings, specialnames, string-methods, types, typesmapping, typesseq;
    ~1,440 paragraphs of ~175 characters), labelled by its topic; paragraphs shared by two topics are left
    out. Classes are imbalanced: the majority-class baseline (always "compound") scores about 25% accuracy
    and a macro-F1 of about 0.05 with the default 8 topics. The exact texts follow the Python version.
    """

    # How many topics (classes) to keep, the largest first; past about 30 a small topic may get no train
    # paragraph, which is an error naming it.
    num_topics: int = 8

    def readers(self) -> tuple[Any, Any, Any]:
        return functools.partial(pydoc_topic_examples, self.num_topics), None, None


@register("data", "classification")
@dataclass(kw_only=True)
class ClassificationFiles(_ClassificationData):
    """Labelled texts from .jsonl files (a text and a label field per line) or .tsv/.csv files (a header
    naming the text and label columns; .tsv unquoted, .csv with double-quote quoting). Without
    ``val_paths``/``test_paths`` the fractions of the training examples are held out by hash."""

    paths: list[str]  # training files or globs (~ expanded, relative to the current directory)
    text_field: str = "text"  # the field (JSON key or column) holding each example's text
    label_field: str = "label"  # the field holding each example's label (a string, or an integer in JSON)
    val_paths: list[str] | None = None  # validation files; null holds val_fraction of the training ones out
    test_paths: list[str] | None = None  # test files; null holds test_fraction of the training ones out

    def __post_init__(self) -> None:
        super().__post_init__()
        as_paths("paths", self.paths)
        _require("text_field", self.text_field, "the field that holds each example's text")
        _require("label_field", self.label_field, "the field that holds each example's label")
        _distinct(self, "text_field", "label_field")

    def readers(self) -> tuple[Any, Any, Any]:
        read = functools.partial(read_examples, text_field=self.text_field, label_field=self.label_field)
        val, test = (
            None if value is None else functools.partial(read, as_paths(key, value))
            for key, value in (("val_paths", self.val_paths), ("test_paths", self.test_paths))
        )
        # the train reader is called first: it refuses a training file named for val/test before any is read
        return _files_checked(self, functools.partial(read, as_paths("paths", self.paths))), val, test


# --------------------------------------------------------------------------- next-sentence prediction


@register("data", "sentence_pairs")
@dataclass(kw_only=True)
class SentencePairs(DataSettings):
    """Paragraph pairs for BERT's pretraining (``objective=masked_lm_nsp``): a paragraph and the next one of
    its document, or half of the time a paragraph of another document, as ``<cls> A <sep> B <sep>``.

    From UTF-8 text files (one document each, paragraphs at blank lines), or Python's bundled documentation
    (one document per topic) when ``paths`` is null."""

    min_block_size: ClassVar[int] = 4
    block_size: int = 128  # <cls> A <sep> B <sep> in at most this many tokens (the longer part is cut)
    batch_size: int = 32
    paths: list[str] | None = None  # text files or globs; null: the pydoc topics

    def build(self, tokenizer: Any, cache_dir: str | Path) -> SentencePairDataModule:
        from lightning_llm.data.sentence_pair_module import SentencePairDataModule

        if self.paths is None:
            return SentencePairDataModule(tokenizer, pydoc_topics, self)
        paths = as_paths("paths", self.paths)
        return SentencePairDataModule(tokenizer, functools.partial(read_text_files, paths), self)


# --------------------------------------------------------------------------- extractive question answering


@register("data", "squad")
@dataclass(kw_only=True)
class SquadFiles(DataSettings):
    """Questions whose answer is a span of a passage, for ``objective=span_qa``: SQuAD ``.json`` files or
    JSON Lines (context, question, answers with character offsets), or, when ``paths`` is null, cloze
    questions made from Python's bundled documentation. A passage longer than a window is read in windows
    sharing ``stride`` tokens. Without ``val_paths``/``test_paths`` the questions are split by a stable hash
    of their passage. BERT's SQuAD settings are block_size 384, max_question_tokens 64, stride 128."""

    min_block_size: ClassVar[int] = 8
    block_size: int = 128  # <cls> question <sep> passage window <sep> in this many tokens
    batch_size: int = 16  # windows per training batch; questions (with all their windows) when evaluating
    paths: list[str] | None = None  # SQuAD .json / .jsonl files or globs; null: questions made from pydoc
    val_paths: list[str] | None = None  # e.g. SQuAD's dev file; null holds val_fraction of paths out
    test_paths: list[str] | None = None  # null holds test_fraction of paths out
    max_question_tokens: int = 32  # longer questions are cut to this many tokens
    stride: int = 32  # tokens that consecutive windows of a long passage share
    # SQuAD 2.0: keep questions without an answer (the model learns to point at <cls> and may answer
    # nothing); false (SQuAD 1.1) refuses them, naming the record.
    no_answer: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        room = self.block_size - self.max_question_tokens - 3
        if self.max_question_tokens < 1 or room < 1:
            raise ValueError(
                f"data.max_question_tokens={self.max_question_tokens} must be >= 1 and leave passage "
                f"tokens in data.block_size={self.block_size} (with <cls> and two <sep>); lower it or raise "
                "data.block_size"
            )
        if not 0 <= self.stride < room:
            raise ValueError(
                f"data.stride={self.stride} must be in [0, {room}) (the passage tokens a window holds beside "
                f"a {self.max_question_tokens}-token question), so each window moves forward"
            )

    def build(self, tokenizer: Any, cache_dir: str | Path) -> SquadDataModule:
        from lightning_llm.data.squad_module import SquadDataModule

        def read_files(key: str, patterns: list[str] | None) -> list[QAExample]:
            return read_squad(as_paths(key, patterns), self.no_answer) if patterns else []

        def read() -> dict[str, list[QAExample]]:
            if self.paths is None:
                questions = pydoc_questions(pydoc_topics())
            else:
                questions = read_files("paths", self.paths)
            if not (self.val_paths or self.test_paths):
                return split_questions(questions, self.val_fraction, self.test_fraction, self.split_seed)
            val, test = read_files("val_paths", self.val_paths), read_files("test_paths", self.test_paths)
            splits = {"train": questions, "val": val, "test": test}
            warn_shared_texts(splits, lambda q: (q.question, q.context), "questions", "question and passage")
            return splits

        limits = (self.max_question_tokens, self.stride)
        return SquadDataModule(tokenizer, _files_checked(self, read), *limits, self.no_answer, self)


# --------------------------------------------------------------------------- instruction tuning


@register("data", "instructions")
@dataclass(kw_only=True)
class InstructionFiles(DataSettings):
    """Conversations for instruction tuning a gpt with ``objective=causal_lm``, the loss on the answers only.

    JSON Lines records ``{"prompt": ..., "response": ...}`` or ``{"messages": [{"role", "content"}, ...]}``
    (roles: system, user, assistant), rendered with the role templates below (``{content}`` is the turn's
    text). The assistant's text and the eos after it are the targets; the rest is context. Without
    ``val_paths``/``test_paths`` the conversations are split by a stable hash of their first turn."""

    min_block_size: ClassVar[int] = 2
    block_size: int = 512  # longest sequence in tokens; longer conversations are cut
    batch_size: int = 8
    paths: list[str]  # JSON Lines files or globs, e.g. [sft/train.jsonl]
    prompt_field: str = "prompt"  # the key of a one-turn record's prompt
    response_field: str = "response"  # the key of a one-turn record's answer
    messages_field: str = "messages"  # the key of a multi-turn record's list of {role, content}
    system_template: str = DEFAULT_TEMPLATE["system"]  # how a system turn is written; {content}: its text
    user_template: str = DEFAULT_TEMPLATE["user"]  # how a user turn is written
    assistant_template: str = DEFAULT_TEMPLATE[
        "assistant"
    ]  # how an answer is written (the text is the target)
    pack: bool = False  # several whole conversations per sequence (never split), instead of one, padded
    val_paths: list[str] | None = None  # validation files; null holds val_fraction of paths out
    test_paths: list[str] | None = None  # test files; null holds test_fraction of paths out

    def __post_init__(self) -> None:
        super().__post_init__()
        as_paths("paths", self.paths)
        for key in ("prompt_field", "response_field", "messages_field"):
            _require(key, getattr(self, key), "a JSON key")
        _distinct(self, "prompt_field", "response_field", "messages_field")
        check_template(self.template())

    def template(self) -> dict[str, str]:
        return {
            "system": self.system_template,
            "user": self.user_template,
            "assistant": self.assistant_template,
        }

    def build(self, tokenizer: Any, cache_dir: str | Path) -> InstructionDataModule:
        from lightning_llm.data.instruction_module import InstructionDataModule

        given = self.val_paths or self.test_paths
        read = _files_checked(self, self._read_files) if given else self._read_hashed
        return InstructionDataModule(tokenizer, read, self.template(), self.pack, self)

    def _read(self, key: str) -> list[Conversation]:
        fields = (self.prompt_field, self.response_field, self.messages_field)
        patterns = getattr(self, key)
        return read_conversations(as_paths(key, patterns), fields) if patterns else []

    def _read_hashed(self) -> dict[str, list[Conversation]]:
        conversations = self._read("paths")
        return split_conversations(conversations, self.val_fraction, self.test_fraction, self.split_seed)

    def _read_files(self) -> dict[str, list[Conversation]]:
        """Each split from its own files (none given: empty), warning of first prompts train has too."""
        splits = {split: self._read(key) for split, key in zip(SPLITS, _SPLIT_KEYS, strict=True)}
        warn_shared_texts(splits, first_prompt, "conversations", "first prompt")
        return splits


# --------------------------------------------------------------------------- sequence to sequence


@dataclass(kw_only=True)
class _PairData(PairSettings):
    def read_splits(self) -> Any:
        raise NotImplementedError

    def build(self, tokenizer: Any, cache_dir: str | Path) -> PairDataModule:
        from lightning_llm.data.pair_module import PairDataModule

        return PairDataModule(tokenizer, self.read_splits(), self)

    def _hashed(self, read: Any) -> Any:
        return hashed_splits(read, self.val_fraction, self.test_fraction, self.split_seed)


@register("data", "pairs")
@dataclass(kw_only=True)
class PairFiles(_PairData):
    """Source/target pairs from .jsonl files (one object per line) or .tsv/.csv files with a header row.

    Without val_paths/test_paths the pairs of ``paths`` are split by a stable hash of each source; with
    either, the files are the splits (train = paths) and the fractions are unused."""

    paths: list[str]  # files or globs (~ expanded, relative to the current directory), e.g. [data/train.tsv]
    source_field: str = "source"  # the JSON field or column holding the source text
    target_field: str = "target"  # the JSON field or column holding the target text
    val_paths: list[str] | None = None  # files of the validation split; null hash-splits paths instead
    test_paths: list[str] | None = None  # files of the test split; null hash-splits paths instead

    def __post_init__(self) -> None:
        super().__post_init__()
        as_paths("paths", self.paths)
        _require("source_field", self.source_field, "a JSON field or column")
        _require("target_field", self.target_field, "a JSON field or column")
        _distinct(self, "source_field", "target_field")

    def read_splits(self) -> Any:
        fields = (self.source_field, self.target_field)
        paths = as_paths("paths", self.paths)
        if self.val_paths or self.test_paths:
            val = as_paths("val_paths", self.val_paths) if self.val_paths else None
            test = as_paths("test_paths", self.test_paths) if self.test_paths else None
            return _files_checked(self, file_splits(paths, val, test, fields))
        return self._hashed(functools.partial(read_pairs, paths, *fields))


@register("data", "reverse_words")
@dataclass(kw_only=True)
class ReverseWords(_PairData):
    """Reverse the order of words: an embedded seq2seq task built from Python's bundled documentation.

    Each source is a run of ``min_words`` to ``max_words`` consecutive words of one pydoc paragraph; its
    target is the same words in reverse order ("a quick brown fox" -> "fox brown quick a"). The words are
    kept as they are, so the task is a pure transduction: it cannot be solved by copying (a copy of the source
    shares only unigrams with the target, so its 4-gram BLEU is near 0) and it needs attention over the
    whole source, which a model that learns it shows with a BLEU near 1. The pairs are a deterministic
    function of the settings (and of the Python version, whose documentation they come from)."""

    min_words: int = 3  # fewest words in a source
    max_words: int = 8  # most words in a source
    num_examples: int = 20000  # pairs over all splits (a seeded sample), or every run the corpus has if fewer
    seed: int = 0  # seed of the run lengths and of the sample

    def __post_init__(self) -> None:
        super().__post_init__()
        check_reverse_words(self.min_words, self.max_words, self.num_examples)

    def read_splits(self) -> Any:
        sizes = {"min_words": self.min_words, "max_words": self.max_words, "num_examples": self.num_examples}
        return self._hashed(functools.partial(reverse_words_corpus, **sizes, seed=self.seed))
