"""Train a tokenizer once per (recipe, corpus) and reuse it: a content-addressed cache on disk.

The cache entry for a tokenizer lives at ``<cache_dir>/tokenizers/<key>/tokenizer.json``, where ``key`` hashes
the plugin's ``spec()`` and the corpus fingerprint. Several processes (the ranks of one job, or jobs of a
sweep) may miss the cache together: each trains, and the first to publish its file wins, so all of them end
up with the same tokenizer and nobody ever reads a half-written file.

A cache folder that cannot be written (read-only, full, or a file in the way) fails with one line naming
``paths.cache_dir`` and the cause (``CacheWriteError``), before training where that can be known; the token
cache (``lightning_llm.data.shards``) reports the same way.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from lightning_llm.atomic import temporary_name
from lightning_llm.tokenizers.base import TOKENIZER_FILE, Tokenizer

__all__ = ["CacheWriteError", "cache_errors", "cache_key", "fit_or_load"]

log = logging.getLogger("lightning_llm.tokenizers")

# Errors a full disk gives: freeing space is then a remedy too.
_FULL = {errno.ENOSPC, errno.EDQUOT}


class CacheWriteError(ValueError):
    """The cache folder (``paths.cache_dir``) cannot be used: not writable, full, or a file in the way.

    A ValueError, like every bad setting: ``paths.cache_dir`` is the setting to change, and the CLI reports
    it as one ``error:`` line.
    """


@contextmanager
def cache_errors(cache_dir: str | Path, doing: str) -> Iterator[None]:
    """Turn an OSError raised while ``doing`` (e.g. "write the token cache") into a ``CacheWriteError``."""
    try:
        yield
    except OSError as error:
        raise CacheWriteError(_cache_message(cache_dir, doing, error)) from error


def _cache_message(cache_dir: str | Path, doing: str, error: OSError) -> str:
    cause = error.strerror or str(error) or type(error).__name__
    remedy = "free some space, choose another" if error.errno in _FULL else "choose another"
    remedy += " paths.cache_dir or set LIGHTNING_LLM_CACHE"
    return f"paths.cache_dir={cache_dir}: cannot {doing} ({cause}); {remedy}"


def fit_or_load(
    tokenizer: Tokenizer,
    texts: Callable[[], Iterable[str]],
    corpus_fingerprint: str,
    cache_dir: str | Path,
    settings: dict[str, Any] | None = None,
) -> Tokenizer:
    """``tokenizer``, trained on ``texts()`` or loaded from the cache entry of an identical earlier training.

    ``texts`` is called only when training is needed. A tokenizer that is already trained (``pretrained``)
    is returned as it is. The entry is keyed by the corpus, the tokenizer's class and ``spec()``, and the
    ``settings`` it was built with (the config's: a plugin's own ``spec`` may leave some out, and another
    plugin's tokenizer would then be loaded as this one).
    """
    if tokenizer.is_trained:
        log.info("tokenizer %r is already trained; not training it", tokenizer)
        return tokenizer
    path = (
        Path(cache_dir).expanduser()
        / "tokenizers"
        / cache_key(_identity(tokenizer, settings), corpus_fingerprint)
        / TOKENIZER_FILE
    )
    with cache_errors(cache_dir, "read the tokenizer cache"):
        cached = path.is_file()
    if cached:
        try:
            tokenizer.load(path)
        except ValueError as error:  # damaged (a disk error, an edit): trained again and replaced, as the
            # token caches are; the entry is the cache's own, named by the hash of what it was trained from
            log.warning("the cached tokenizer %s is unreadable (%s); training it again", path, error)
            os.replace(path, path.with_name(f"{path.name}.damaged-{os.getpid()}"))
        else:
            log.info("loaded tokenizer %r from the cache: %s", tokenizer, path)
            return tokenizer
    with cache_errors(cache_dir, "write the tokenizer cache"):
        path.parent.mkdir(parents=True, exist_ok=True)  # an unusable folder fails now, not after training
    start = time.perf_counter()
    tokenizer.train(texts())
    seconds = time.perf_counter() - start
    with cache_errors(cache_dir, "write the tokenizer cache"):
        published = _publish(tokenizer, path)
    log.info(
        "trained tokenizer %r in %.1f s; %s %s",
        tokenizer,
        seconds,
        "cached at" if published else "another process cached it first, now using",
        path,
    )
    return tokenizer


def cache_key(spec: dict, corpus_fingerprint: str) -> str:
    """SHA-256 of the tokenizer's spec and the corpus fingerprint: what determines a training's result."""
    payload = json.dumps({"spec": spec, "corpus": corpus_fingerprint}, sort_keys=True)
    return hashlib.sha256(payload.encode("utf-8")).hexdigest()


def _publish(tokenizer: Tokenizer, path: Path) -> bool:
    """Make ``tokenizer`` the cache entry at ``path``, unless another process got there first.

    Returns True if this process's file was published; otherwise loads the winner's file into ``tokenizer``,
    so that every process sharing the cache uses the very same tokenizer.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = tokenizer.save(temporary_name(path))
    try:
        os.link(temporary, path)  # atomic, and fails if the entry exists: the first writer wins
        return True
    except FileExistsError:
        tokenizer.load(path)
        return False
    except OSError:
        # Filesystems without hard links: an atomic replace instead (the last writer wins, with the
        # identical result, since training is deterministic).
        os.replace(temporary, path)
        return True
    finally:
        temporary.unlink(missing_ok=True)


def _identity(tokenizer: Tokenizer, settings: dict[str, Any] | None) -> dict[str, Any]:
    """What decides a trained tokenizer besides its corpus. The built-ins' ``spec`` holds their class's name
    and every setting, and keys them alone (their entries stay valid); a plugin's adds its class and the
    settings it was built with."""
    spec = tokenizer.spec()
    own = type(tokenizer).__module__.startswith("lightning_llm.")
    if own and (settings is None or all(spec.get(key) == value for key, value in settings.items())):
        return spec
    made_by = f"{type(tokenizer).__module__}.{type(tokenizer).__qualname__}"
    return {**spec, "class": made_by, **(settings or {})}
