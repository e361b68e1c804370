"""The causal-LM ``data`` plugins, one per kind of source, each building a ``TextDataModule``.

The module itself (``lightning_llm.data.text_module``) is imported when a plugin builds one: it needs
Lightning, which listing the plugins or composing a config should not load.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from lightning_llm.data.sources import (
    as_paths,
    pydoc_topics,
    read_jsonl_files,
    read_parquet_files,
    read_text_files,
)
from lightning_llm.data.token_cache import TokenizerLike
from lightning_llm.registry import register

if TYPE_CHECKING:
    from lightning_llm.data.text_module import TextDataModule

__all__ = ["jsonl_data", "parquet_data", "pydoc_data", "text_data"]


# -- the plugins: one per source, sharing the TextDataModule parameters


@register("data", "pydoc")
def pydoc_data(
    tokenizer: TokenizerLike,
    cache_dir: str | Path,
    block_size: int = 256,
    batch_size: int = 16,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    split_seed: int = 1234,
    num_workers: int = 0,
    shuffle_seed: int = 0,
) -> TextDataModule:
    """Python's bundled documentation (the pydoc topics, ~465k characters of English): no files needed.

    Args:
        block_size: tokens per training sequence (the context length the model trains at).
        batch_size: sequences per micro-batch on each device.
        val_fraction: share of paragraphs held out for validation, in [0, 0.5); 0 turns validation off.
        test_fraction: share of paragraphs held out for the final test, in [0, 0.5); 0 turns testing off.
        split_seed: seed of the paragraph-to-split hash; change it for a different split.
        num_workers: DataLoader worker processes (0 loads in the training process).
        shuffle_seed: seed of the training-order shuffle.
    """
    from lightning_llm.data.text_module import TextDataModule

    return TextDataModule(
        tokenizer,
        cache_dir,
        pydoc_topics,
        block_size=block_size,
        batch_size=batch_size,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        split_seed=split_seed,
        num_workers=num_workers,
        shuffle_seed=shuffle_seed,
    )


@register("data", "text")
def text_data(
    tokenizer: TokenizerLike,
    cache_dir: str | Path,
    paths: list[str],
    block_size: int = 256,
    batch_size: int = 16,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    split_seed: int = 1234,
    num_workers: int = 0,
    shuffle_seed: int = 0,
) -> TextDataModule:
    """UTF-8 text files, one document each, split into paragraphs at blank lines.

    Args:
        paths: files or globs (``~`` expanded, relative to the current directory), e.g. [books/*.txt].
        block_size: tokens per training sequence (the context length the model trains at).
        batch_size: sequences per micro-batch on each device.
        val_fraction: share of paragraphs held out for validation, in [0, 0.5); 0 turns validation off.
        test_fraction: share of paragraphs held out for the final test, in [0, 0.5); 0 turns testing off.
        split_seed: seed of the paragraph-to-split hash; change it for a different split.
        num_workers: DataLoader worker processes (0 loads in the training process).
        shuffle_seed: seed of the training-order shuffle.
    """
    from lightning_llm.data.text_module import TextDataModule

    return TextDataModule(
        tokenizer,
        cache_dir,
        functools.partial(read_text_files, as_paths("paths", paths)),
        block_size=block_size,
        batch_size=batch_size,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        split_seed=split_seed,
        num_workers=num_workers,
        shuffle_seed=shuffle_seed,
    )


@register("data", "jsonl")
def jsonl_data(
    tokenizer: TokenizerLike,
    cache_dir: str | Path,
    paths: list[str],
    field: str = "text",
    block_size: int = 256,
    batch_size: int = 16,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    split_seed: int = 1234,
    num_workers: int = 0,
    shuffle_seed: int = 0,
) -> TextDataModule:
    """JSON Lines files: one JSON object per line, its ``field`` holding one document.

    Args:
        paths: files or globs (``~`` expanded, relative to the current directory), e.g. [shards/*.jsonl].
        field: the key of each record that holds its text.
        block_size: tokens per training sequence (the context length the model trains at).
        batch_size: sequences per micro-batch on each device.
        val_fraction: share of paragraphs held out for validation, in [0, 0.5); 0 turns validation off.
        test_fraction: share of paragraphs held out for the final test, in [0, 0.5); 0 turns testing off.
        split_seed: seed of the paragraph-to-split hash; change it for a different split.
        num_workers: DataLoader worker processes (0 loads in the training process).
        shuffle_seed: seed of the training-order shuffle.
    """
    if not field:
        raise ValueError("data.field must name the JSON key that holds the text, e.g. data.field=text")
    from lightning_llm.data.text_module import TextDataModule

    return TextDataModule(
        tokenizer,
        cache_dir,
        functools.partial(read_jsonl_files, as_paths("paths", paths), field),
        block_size=block_size,
        batch_size=batch_size,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        split_seed=split_seed,
        num_workers=num_workers,
        shuffle_seed=shuffle_seed,
    )


@register("data", "parquet")
def parquet_data(
    tokenizer: TokenizerLike,
    cache_dir: str | Path,
    paths: list[str],
    column: str = "text",
    block_size: int = 256,
    batch_size: int = 16,
    val_fraction: float = 0.05,
    test_fraction: float = 0.05,
    split_seed: int = 1234,
    num_workers: int = 0,
    shuffle_seed: int = 0,
) -> TextDataModule:
    """Parquet files (needs ``pyarrow``): one document per row of a string column.

    Args:
        paths: files or globs (``~`` expanded, relative to the current directory), e.g. [shards/*.parquet].
        column: the string column that holds the text.
        block_size: tokens per training sequence (the context length the model trains at).
        batch_size: sequences per micro-batch on each device.
        val_fraction: share of paragraphs held out for validation, in [0, 0.5); 0 turns validation off.
        test_fraction: share of paragraphs held out for the final test, in [0, 0.5); 0 turns testing off.
        split_seed: seed of the paragraph-to-split hash; change it for a different split.
        num_workers: DataLoader worker processes (0 loads in the training process).
        shuffle_seed: seed of the training-order shuffle.
    """
    if not column:
        raise ValueError(
            "data.column must name the Parquet column that holds the text, e.g. data.column=text"
        )
    from lightning_llm.data.text_module import TextDataModule

    return TextDataModule(
        tokenizer,
        cache_dir,
        functools.partial(read_parquet_files, as_paths("paths", paths), column),
        block_size=block_size,
        batch_size=batch_size,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        split_seed=split_seed,
        num_workers=num_workers,
        shuffle_seed=shuffle_seed,
    )
