"""The ``char`` tokenizer plugin: one token per character, for tiny models and quick experiments."""

from __future__ import annotations

from collections.abc import Iterable

from tokenizers import Regex, decoders, models, pre_tokenizers
from tokenizers import Tokenizer as HFTokenizer

from lightning_llm.registry import register
from lightning_llm.tokenizers.base import SPECIAL_TOKENS, Tokenizer

__all__ = ["CharTokenizer"]

ANY_CHAR = r"[\s\S]"  # unlike ".", also matches newlines, whatever the regex flavour's defaults


@register("tokenizer", "char")
class CharTokenizer(Tokenizer):
    """Character-level tokenizer: the special tokens, then every distinct training character, sorted.

    Text made of characters seen in training round-trips exactly (spaces and newlines included); any other
    character becomes ``<unk>``. A character here is a Unicode code point, so an accent written as a separate
    combining mark is its own token. It has no parameters: the training text decides the vocabulary.
    """

    name = "char"

    def __init__(self) -> None:
        super().__init__()

    def _fit(self, texts: Iterable[str]) -> HFTokenizer:
        chars: set[str] = set()
        for text in texts:
            chars.update(text)
        vocab = {token: i for i, token in enumerate([*SPECIAL_TOKENS, *sorted(chars)])}
        backend = HFTokenizer(models.WordLevel(vocab, unk_token="<unk>"))
        backend.pre_tokenizer = pre_tokenizers.Split(Regex(ANY_CHAR), behavior="isolated")
        backend.decoder = decoders.Fuse()  # join characters without separators
        backend.add_special_tokens(list(SPECIAL_TOKENS))
        return backend
