"""Tokenize each split once into a flat file of token ids that every later run memory-maps.

Layout under ``cache_dir``::

    tokens/<key>/<split>.bin    the ids of all texts back to back, each text followed by eos_id
    tokens/<key>/<split>.json   sidecar: dtype, n_tokens, fingerprints; written LAST, so it marks completion

``key`` hashes the corpus fingerprint (texts + split parameters) and the tokenizer fingerprint, so a change
to either gets a fresh folder and a stale cache is never read. Both files are written under a temporary
name and renamed into place (``os.replace`` is atomic), so several processes building the same cache at once
(one per node, say) all succeed with identical bytes and a reader never sees a half-written file; a write
that fails (a read-only or full ``paths.cache_dir``) leaves no file a later run would trust, and says so in
one line (``CacheWriteError``).

Texts are encoded in pieces of bounded size (``lightning_llm.tokenizers.pieces``), so one huge line costs no
more memory than many short ones. Opening a file checks that its ids fit the tokenizer's vocabulary: a file
damaged or written by another tokenizer is refused (``TokenCacheError``) instead of failing deep in a model.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import time
from pathlib import Path
from typing import Protocol

import numpy as np

from lightning_llm.atomic import atomic_write
from lightning_llm.tokenizers.cache import cache_errors
from lightning_llm.tokenizers.pieces import MAX_BATCH_CHARS, MAX_PIECE_CHARS, Piece, piece_batches

__all__ = [
    "TokenCacheError",
    "TokenizerLike",
    "cache_key",
    "ensure_token_cache",
    "open_tokens",
    "token_cache_path",
    "token_dtype",
]

log = logging.getLogger(__name__)

_FORMAT_VERSION = 1
_CHUNK_CHARS = MAX_BATCH_CHARS  # text per encode_batch call: enough to keep Rust threads busy, bounded memory
_PIECE_CHARS = MAX_PIECE_CHARS  # longest piece of a text per encode_batch input
_SCAN_TOKENS = 1 << 26  # ids checked per step when a file is opened (a bounded slice of the mapping)


class TokenCacheError(ValueError):
    """A token file that cannot be right for the tokenizer: damaged, truncated, or another tokenizer's."""


class TokenizerLike(Protocol):
    """The part of a tokenizer the cache uses."""

    vocab_size: int
    eos_id: int

    def encode_batch(self, texts: list[str]) -> list[list[int]]: ...

    def fingerprint(self) -> str: ...


def token_dtype(vocab_size: int) -> np.dtype:
    """The narrowest unsigned dtype that holds every id: uint16 halves the file size of small vocabularies."""
    return np.dtype(np.uint16) if vocab_size <= 2**16 else np.dtype(np.uint32)


def cache_key(corpus_fingerprint: str, tokenizer_fingerprint: str) -> str:
    return hashlib.sha256(f"{corpus_fingerprint}\0{tokenizer_fingerprint}".encode()).hexdigest()[:24]


def token_cache_path(
    cache_dir: str | Path, split: str, corpus_fingerprint: str, tokenizer_fingerprint: str
) -> Path:
    key = cache_key(corpus_fingerprint, tokenizer_fingerprint)
    return Path(cache_dir).expanduser() / "tokens" / key / f"{split}.bin"


def ensure_token_cache(
    texts: list[str], tokenizer: TokenizerLike, *, cache_dir: str | Path, split: str, corpus_fingerprint: str
) -> Path:
    """The token file of ``split``, tokenizing ``texts`` only when no complete matching cache exists."""
    if not texts:
        raise ValueError(f"no texts to tokenize for the {split} split")
    meta = _expected_meta(tokenizer, split, corpus_fingerprint)
    path = token_cache_path(cache_dir, split, corpus_fingerprint, meta["tokenizer_fingerprint"])
    cached = _complete_meta(path, meta)
    if cached is not None:
        log.info("token cache hit: %s split, %s tokens at %s", split, cached["n_tokens"], path)
        return path
    start = time.perf_counter()
    with cache_errors(cache_dir, "write the token cache"):
        n_tokens = _write_tokens(texts, tokenizer, path, np.dtype(meta["dtype"]))
        with atomic_write(_sidecar(path)) as f:  # last: only now does the cache count as complete
            f.write(json.dumps({**meta, "n_tokens": n_tokens}, indent=2).encode())
    seconds = time.perf_counter() - start
    log.info(
        "tokenized %s split: %s texts -> %s tokens in %.1fs -> %s", split, len(texts), n_tokens, seconds, path
    )
    return path


def open_tokens(path: str | Path, vocab_size: int | None = None) -> np.memmap:
    """The ids in a completed token file, memory-mapped read-only (pages load on demand, shared by all).

    Every id is checked to be below ``vocab_size`` (default: the one the sidecar records), so a damaged file
    fails here, naming itself, rather than as an index error in an embedding. The check reads the file once,
    at memory speed; a sidecar cannot vouch for bytes changed after it was written.
    """
    path = Path(path)
    try:
        meta = json.loads(_sidecar(path).read_text())
    except FileNotFoundError:
        raise FileNotFoundError(
            f"{path}: token cache is incomplete (no {_sidecar(path).name}); build it with prepare_data()"
        ) from None
    dtype, n_tokens = np.dtype(meta["dtype"]), meta["n_tokens"]
    if path.stat().st_size != n_tokens * dtype.itemsize:
        raise TokenCacheError(
            f"token cache {path} is damaged ({path.stat().st_size} bytes, its sidecar says {n_tokens} "
            f"{dtype.name} ids); delete it and run again to rebuild it"
        )
    tokens = np.memmap(path, dtype=dtype, mode="r", shape=(n_tokens,))
    _check_ids(tokens, path, meta["vocab_size"] if vocab_size is None else vocab_size)
    return tokens


def _expected_meta(tokenizer: TokenizerLike, split: str, corpus_fingerprint: str) -> dict:
    return {
        "format": _FORMAT_VERSION,
        "split": split,
        "dtype": token_dtype(tokenizer.vocab_size).name,
        "vocab_size": tokenizer.vocab_size,
        "eos_id": tokenizer.eos_id,
        "tokenizer_fingerprint": tokenizer.fingerprint(),
        "corpus_fingerprint": corpus_fingerprint,
    }


def _sidecar(path: Path) -> Path:
    return path.with_suffix(".json")


def _complete_meta(path: Path, expected: dict) -> dict | None:
    """The sidecar of a complete cache that matches ``expected``, else None (missing, partial or stale)."""
    try:
        meta = json.loads(_sidecar(path).read_text())
        size = path.stat().st_size
    except (OSError, ValueError):  # no sidecar yet, no .bin, or a sidecar that is not JSON
        return None
    if not isinstance(meta, dict) or any(meta.get(key) != value for key, value in expected.items()):
        return None
    if (
        not isinstance(meta.get("n_tokens"), int)
        or size != meta["n_tokens"] * np.dtype(meta["dtype"]).itemsize
    ):
        return None
    return meta


def _check_ids(tokens: np.ndarray, path: Path, vocab_size: int) -> None:
    """Refuse a token file holding an id the tokenizer does not have."""
    high = max(
        (int(tokens[i : i + _SCAN_TOKENS].max()) for i in range(0, len(tokens), _SCAN_TOKENS)), default=0
    )
    if high >= vocab_size:
        raise TokenCacheError(
            f"token cache {path} holds id {high}, outside this tokenizer's vocab_size={vocab_size} (damaged, "
            "or written by another tokenizer); delete it and run again to rebuild it"
        )


def _write_tokens(texts: list[str], tokenizer: TokenizerLike, path: Path, dtype: np.dtype) -> int:
    """Encode ``texts`` batch by batch straight into ``path``; returns the number of tokens written."""
    path.parent.mkdir(parents=True, exist_ok=True)
    n_tokens = 0
    with atomic_write(path) as f:
        for batch in piece_batches(texts, _PIECE_CHARS, _CHUNK_CHARS):
            ids = _encode(batch, tokenizer).astype(dtype)
            f.write(ids.tobytes())
            n_tokens += ids.size
    return n_tokens


def _encode(pieces: list[Piece], tokenizer: TokenizerLike) -> np.ndarray:
    """The ids of ``pieces``, eos after each text's last piece, as one int64 array checked against the
    vocabulary."""
    encoded = tokenizer.encode_batch([piece.text for piece in pieces])
    eos, none = (tokenizer.eos_id,), ()
    ends = [eos if piece.last else none for piece in pieces]
    count = sum(len(ids) + len(end) for ids, end in zip(encoded, ends, strict=True))
    flat = np.fromiter(
        itertools.chain.from_iterable(
            itertools.chain(ids, end) for ids, end in zip(encoded, ends, strict=True)
        ),
        np.int64,
        count,
    )
    if flat.size == 0:  # a batch of pieces that encode to nothing (whitespace a tokenizer drops)
        return flat
    low, high = int(flat.min()), int(flat.max())
    if low < 0 or high >= tokenizer.vocab_size:  # would silently wrap around in uint16
        bad = low if low < 0 else high
        raise ValueError(f"tokenizer produced id {bad}, outside [0, vocab_size={tokenizer.vocab_size})")
    return flat
