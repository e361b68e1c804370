"""Whether a tokenizer trained elsewhere can represent the text a run trains on.

A ``tokenizer.json`` whose model has no unknown token and no byte fallback drops every character it has no
token for: a run would train on what is left (a corpus turned into a few thousand tokens of the letters the
file knows) without a word. Where a run uses a tokenizer it did not train itself (``tokenizer=pretrained``,
``model.init_from``), the characters of a sample of the train split that encode to no token (or only to the
unknown one) are counted, once per tokenizer and corpus (a marker in the cache).
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Callable, Iterable
from pathlib import Path

from lightning_llm.atomic import write_text
from lightning_llm.tokenizers.base import Tokenizer
from lightning_llm.tokenizers.cache import cache_key

__all__ = ["LOST_REFUSED", "LOST_WARNED", "SAMPLE_CHARS", "TokenizerCoverageError", "check_coverage", "lost"]

log = logging.getLogger("lightning_llm.tokenizers")

LOST_WARNED, LOST_REFUSED = 0.01, 0.2  # shares of the sample's visible characters
SAMPLE_CHARS = 200_000  # characters of the train split encoded for the check


class TokenizerCoverageError(ValueError):
    """A tokenizer that cannot represent a large share of the text it is to train on."""


def lost(tokenizer: Tokenizer, texts: Iterable[str]) -> tuple[int, Counter[str]]:
    """(visible characters of ``texts``, each one that encodes to no token but the unknown one -> its count).
    Each distinct character is encoded on its own: where a model drops characters, the offsets of the tokens
    it keeps no longer say which ones were dropped."""
    backend = tokenizer.backend
    unknown_tokens = {getattr(backend.model, "unk_token", None), tokenizer.roles.get("<unk>")}
    unknown = {backend.token_to_id(token) for token in unknown_tokens if token} - {None}
    counts = Counter(ch for text in texts for ch in text if not ch.isspace())
    chars = list(counts)
    encodings = backend.encode_batch(chars, add_special_tokens=False)
    missing = Counter(
        {
            ch: counts[ch]
            for ch, encoding in zip(chars, encodings, strict=True)
            if set(encoding.ids) <= unknown
        }
    )
    return sum(counts.values()), missing


def check_coverage(
    tokenizer: Tokenizer, texts: Callable[[], Iterable[str]], corpus: str, cache_dir: str | Path, source: str
) -> None:
    """Refuse ``tokenizer`` (read from ``source``) when it cannot represent ``LOST_REFUSED`` of a sample of
    ``texts()`` (the train split, ``corpus`` its fingerprint), warn from ``LOST_WARNED``."""
    marker = (
        Path(cache_dir).expanduser()
        / "tokenizers"
        / "coverage"
        / cache_key({"tokenizer": tokenizer.fingerprint()}, corpus)
    )
    if marker.is_file():
        return
    visible, missing = lost(tokenizer, _first_chars(texts(), SAMPLE_CHARS))
    share = sum(missing.values()) / visible if visible else 0.0
    shown = ", ".join(repr(ch) for ch, _ in missing.most_common(8))
    if share >= LOST_REFUSED:
        raise TokenizerCoverageError(
            f"the tokenizer {source} has no token for {share:.0%} of the train text's characters (e.g. "
            f"{shown}) and no unknown token or byte fallback for them; a run would train on what is left. "
            "Use a tokenizer made for this text, or train one (e.g. tokenizer=byte_bpe)"
        )
    if share >= LOST_WARNED:
        log.warning(
            "the tokenizer %s cannot represent %.1f%% of the train text (e.g. %s)", source, 100 * share, shown
        )
    try:
        marker.parent.mkdir(parents=True, exist_ok=True)
        write_text(marker, f"{share:.6f}\n")
    except OSError:  # a read-only cache: checked again next time
        pass


def _first_chars(texts: Iterable[str], budget: int) -> list[str]:
    sample = []
    for text in texts:
        sample.append(text[:budget])
        budget -= len(sample[-1])
        if budget <= 0:
            break
    return sample
