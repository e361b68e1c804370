"""Subword tokenizer plugins trained with Hugging Face ``tokenizers``: byte_bpe, bpe, wordpiece, unigram.

Each plugin is one recipe: a model, a pre-tokenizer, a decoder and a trainer. Training must be deterministic
(same texts, same fingerprint), and two of the upstream trainers are not, because they iterate hash maps
(huggingface/tokenizers#1794). The WordPiece and Unigram recipes therefore pin down what the trainers leave
to hash order; BPE without subword prefixes or suffixes is deterministic as it is.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from tokenizers import Regex, decoders, models, normalizers, pre_tokenizers, trainers
from tokenizers import Tokenizer as HFTokenizer
from tokenizers.trainers import Trainer

from lightning_llm.registry import register
from lightning_llm.tokenizers.base import SPECIAL_TOKENS, Tokenizer, check_vocab_size

__all__ = ["BPETokenizer", "ByteBPETokenizer", "UnigramTokenizer", "WordPieceTokenizer"]

# GPT-2's split: contractions, letter runs, digit runs and punctuation runs, each taking the space before
# it, and whitespace runs. Keeping spaces inside tokens is what lets decoding be a plain concatenation.
GPT2_SPLIT = r"""'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
WORDPIECE_PREFIX = "##"  # marks a piece that continues a word, as in BERT
UNIGRAM_SCORE_DECIMALS = 6  # scores agree across runs to ~1e-11; rounding removes that float noise
UNIGRAM_FALLBACK_STEP = 1e-4  # the score step upstream gives characters it re-adds after pruning


class HFTrainedTokenizer(Tokenizer):
    """A tokenizer whose recipe is a fresh backend plus a Hugging Face trainer (see ``_pipeline``)."""

    def _fit(self, texts: Iterable[str]) -> HFTokenizer:
        backend, trainer = self._pipeline()
        backend.train_from_iterator(texts, trainer=trainer)
        return backend

    def _pipeline(self) -> tuple[HFTokenizer, Trainer]:
        """An untrained backend (model, normalizer, pre-tokenizer, decoder) and the trainer for it."""
        raise NotImplementedError(f"{type(self).__name__} must define its tokenizers pipeline")


@register("tokenizer", "byte_bpe")
class ByteBPETokenizer(HFTrainedTokenizer):
    """GPT-2 style byte-level BPE: any text round-trips exactly and nothing is ever unknown.

    Text is split GPT-2's way and mapped to bytes; the base vocabulary is all 256 bytes, so the result has
    no ``<unk>`` in practice. The vocabulary can end up smaller than ``vocab_size`` on a small corpus.

    Args:
        vocab_size: Largest vocabulary size, counting the 7 special tokens and the 256 byte tokens.
        min_frequency: Fewest occurrences a pair of tokens needs to be merged into a new token.
    """

    name = "byte_bpe"

    def __init__(self, vocab_size: int = 4096, min_frequency: int = 2) -> None:
        base_size = len(SPECIAL_TOKENS) + len(pre_tokenizers.ByteLevel.alphabet())
        check_vocab_size(
            self.name, vocab_size, base_size, f"the {len(SPECIAL_TOKENS)} special tokens and 256 bytes"
        )
        _check_min_frequency(self.name, min_frequency)
        super().__init__(vocab_size=vocab_size, min_frequency=min_frequency)

    def _pipeline(self) -> tuple[HFTokenizer, Trainer]:
        backend = HFTokenizer(models.BPE())
        backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        backend.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=self.params["vocab_size"],
            min_frequency=self.params["min_frequency"],
            special_tokens=list(SPECIAL_TOKENS),
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # every byte, seen in training or not
            show_progress=False,
        )
        return backend, trainer


@register("tokenizer", "bpe")
class BPETokenizer(HFTrainedTokenizer):
    """Character-level BPE on a word/punctuation/whitespace split, with ``<unk>`` for unseen characters.

    Text is split GPT-2's way (each word or punctuation run keeps the space before it), and merges are learnt
    over characters rather than bytes. Text made of characters seen in training round-trips exactly;
    a character never seen becomes ``<unk>`` (and disappears on decoding).

    Args:
        vocab_size: Largest vocabulary size, counting the 7 special tokens and every training character.
        min_frequency: Fewest occurrences a pair of tokens needs to be merged into a new token.
    """

    name = "bpe"

    def __init__(self, vocab_size: int = 4096, min_frequency: int = 2) -> None:
        _check_vocab_size(self.name, vocab_size)
        _check_min_frequency(self.name, min_frequency)
        super().__init__(vocab_size=vocab_size, min_frequency=min_frequency)

    def _pipeline(self) -> tuple[HFTokenizer, Trainer]:
        backend = HFTokenizer(models.BPE(unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.Split(Regex(GPT2_SPLIT), behavior="isolated")
        backend.decoder = decoders.Fuse()  # spaces live inside the tokens, so joining is concatenation
        trainer = trainers.BpeTrainer(
            vocab_size=self.params["vocab_size"],
            min_frequency=self.params["min_frequency"],
            special_tokens=list(SPECIAL_TOKENS),
            show_progress=False,
        )
        return backend, trainer


@register("tokenizer", "wordpiece")
class WordPieceTokenizer(Tokenizer):
    """BERT-style WordPiece: words split on whitespace and punctuation, ``##`` marks a word's continuation.

    Decoding rejoins the pieces of each word and puts one space between words and punctuation marks, so a
    round trip keeps every non-space character but not the original spacing (BERT's tokenizer does the
    same). Characters never seen in training become ``<unk>``.

    Args:
        vocab_size: Largest vocabulary size, counting the 7 special tokens and every training character.
        min_frequency: Fewest occurrences a pair of pieces needs to be merged into a new piece.
        lowercase: Lowercase and strip accents before splitting, as the uncased BERT models do.
    """

    name = "wordpiece"

    def __init__(self, vocab_size: int = 4096, min_frequency: int = 2, lowercase: bool = False) -> None:
        _check_vocab_size(self.name, vocab_size)
        _check_min_frequency(self.name, min_frequency)
        super().__init__(vocab_size=vocab_size, min_frequency=min_frequency, lowercase=lowercase)

    def _fit(self, texts: Iterable[str]) -> HFTokenizer:
        documents = list(texts)  # read twice: once for the continuation alphabet, once to train
        backend = self._new_backend()
        # The trainer creates the "##c" tokens in hash-map order, and their ids break ties between equally
        # frequent merges, so training is not repeatable. Listing them first, as (temporary) special tokens
        # in sorted order, gives them fixed ids; they become ordinary vocabulary entries again afterwards.
        continuations = [WORDPIECE_PREFIX + char for char in sorted(_continuation_chars(backend, documents))]
        trainer = trainers.WordPieceTrainer(
            vocab_size=self.params["vocab_size"],
            min_frequency=self.params["min_frequency"],
            special_tokens=[*SPECIAL_TOKENS, *continuations],
            continuing_subword_prefix=WORDPIECE_PREFIX,
            show_progress=False,
        )
        backend.train_from_iterator(documents, trainer=trainer)
        return _drop_added_tokens(backend, keep=SPECIAL_TOKENS)

    def _new_backend(self) -> HFTokenizer:
        lowercase = self.params["lowercase"]
        backend = HFTokenizer(models.WordPiece(unk_token="<unk>", continuing_subword_prefix=WORDPIECE_PREFIX))
        backend.normalizer = normalizers.BertNormalizer(lowercase=lowercase, strip_accents=lowercase)
        backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
        # No cleanup: BERT's clean-up also rewrites words ("do not" -> "don't"), which a round trip must not.
        backend.decoder = decoders.WordPiece(prefix=WORDPIECE_PREFIX, cleanup=False)
        return backend


@register("tokenizer", "unigram")
class UnigramTokenizer(HFTrainedTokenizer):
    """SentencePiece-style Unigram language model over text with spaces marked by ``▁`` (Metaspace).

    Text made of characters seen in training round-trips exactly, except leading spaces of a document;
    a character never seen becomes ``<unk>``. ``<`` is always a token of its own.

    Args:
        vocab_size: Vocabulary size, counting the 7 special tokens and every training character.
        max_piece_length: Longest piece, in characters.
    """

    name = "unigram"

    def __init__(self, vocab_size: int = 4096, max_piece_length: int = 16) -> None:
        _check_vocab_size(self.name, vocab_size)
        if max_piece_length < 1:
            raise ValueError(
                f"tokenizer '{self.name}': max_piece_length must be at least 1, got {max_piece_length}"
            )
        super().__init__(vocab_size=vocab_size, max_piece_length=max_piece_length)

    def _fit(self, texts: Iterable[str]) -> HFTokenizer:
        return _canonical_unigram(super()._fit(texts))

    def _pipeline(self) -> tuple[HFTokenizer, Trainer]:
        backend = HFTokenizer(models.Unigram())
        # The special tokens are pieces of the model too, and Unigram would happily spell "<eos>" from
        # text; isolating "<" keeps any piece that starts with it out of reach, as punctuation splitting
        # does for the other plugins.
        backend.pre_tokenizer = pre_tokenizers.Sequence(
            [pre_tokenizers.Metaspace(), pre_tokenizers.Split("<", behavior="isolated")]
        )
        backend.decoder = decoders.Metaspace()
        trainer = trainers.UnigramTrainer(
            vocab_size=self.params["vocab_size"],
            max_piece_length=self.params["max_piece_length"],
            special_tokens=list(SPECIAL_TOKENS),
            unk_token="<unk>",
            show_progress=False,
        )
        return backend, trainer


def _check_vocab_size(plugin: str, vocab_size: int) -> None:
    minimum = len(SPECIAL_TOKENS) + 1
    check_vocab_size(plugin, vocab_size, minimum, f"the {len(SPECIAL_TOKENS)} special tokens and one more")


def _check_min_frequency(plugin: str, min_frequency: int) -> None:
    if min_frequency < 1:
        raise ValueError(f"tokenizer '{plugin}': min_frequency must be at least 1, got {min_frequency}")


def _continuation_chars(backend: HFTokenizer, texts: list[str]) -> set[str]:
    """Characters that occur after the first character of a word, as the backend normalizes and splits."""
    chars: set[str] = set()
    for text in texts:
        for word, _ in backend.pre_tokenizer.pre_tokenize_str(backend.normalizer.normalize_str(text)):
            chars.update(word[1:])
    return chars


def _drop_added_tokens(backend: HFTokenizer, keep: Iterable[str]) -> HFTokenizer:
    """``backend`` with every added token outside ``keep`` demoted to a plain vocabulary entry."""
    keep = set(keep)
    data = json.loads(backend.to_str())
    data["added_tokens"] = [token for token in data["added_tokens"] if token["content"] in keep]
    return HFTokenizer.from_str(json.dumps(data))


def _canonical_unigram(backend: HFTokenizer) -> HFTokenizer:
    """``backend`` with its Unigram pieces in a repeatable order and with repeatable scores.

    Upstream sums log-probabilities in hash order (noise around 1e-11), gives the characters it re-adds
    after pruning scores ``min + k * 1e-4`` in hash order, and sorts equal scores in hash order. The fix:
    re-add those characters in sorted order, round scores, and order pieces by (score, piece).
    """
    data = json.loads(backend.to_str())
    n_special = len(SPECIAL_TOKENS)  # the trainer puts them first; ids 0..6 must stay put
    special, pieces = data["model"]["vocab"][:n_special], data["model"]["vocab"][n_special:]
    pieces = _reorder_fallback_chars(pieces)
    pieces = [[piece, round(score, UNIGRAM_SCORE_DECIMALS)] for piece, score in pieces]
    pieces.sort(key=lambda entry: (-entry[1], entry[0]))
    data["model"]["vocab"] = special + pieces
    return HFTokenizer.from_str(json.dumps(data))


def _reorder_fallback_chars(pieces: list[list]) -> list[list]:
    """``pieces`` with the characters on the fallback ladder (``lowest + k * step``) in sorted order."""
    lowest = min(score for _, score in pieces)

    def on_ladder(piece: str, score: float) -> bool:
        rung = (score - lowest) / UNIGRAM_FALLBACK_STEP
        return len(piece) == 1 and abs(rung - round(rung)) < 1e-6

    ladder = sorted(piece for piece, score in pieces if on_ladder(piece, score))
    rescored = {piece: lowest + k * UNIGRAM_FALLBACK_STEP for k, piece in enumerate(ladder)}
    return [[piece, rescored.get(piece, score)] for piece, score in pieces]
