"""The ``pretrained`` tokenizer plugin: a ``tokenizer.json`` that already exists, used as it is."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from lightning_llm.registry import register
from lightning_llm.tokenizers.base import Tokenizer

__all__ = ["PretrainedTokenizer"]

log = logging.getLogger("lightning_llm.tokenizers")


@register("tokenizer", "pretrained")
class PretrainedTokenizer(Tokenizer):
    """A trained tokenizer read from a ``tokenizer.json`` (ours, or from any Hugging Face tokenizers).

    It is loaded when built, so a missing or malformed file fails at once, naming the path. Training is a
    no-op. A file that lacks some of the framework's special tokens gets them added (with a warning); their
    ids then differ from the usual 0..6, which the id properties report.

    Args:
        path: The ``tokenizer.json`` to load, or a folder holding one (relative to the working directory).
    """

    name = "pretrained"
    # The setting naming the file it loads (evaluate takes one for a Hugging Face folder that has none).
    file_setting = "path"

    def __init__(self, path: str) -> None:
        super().__init__(path=path)
        self.load(path)

    def train(self, texts: Iterable[str]) -> None:
        """Nothing to do: the tokenizer is already trained."""
        log.debug("pretrained tokenizer %s is already trained; not training it", self.params["path"])
