"""``python -m lightning_llm.prepare [--shard I/N] [overrides]``: prepare a corpus's tokens before training.

The overrides are a training run's (``data=jsonl 'data.paths=[...]' tokenizer=byte_bpe ...``): the tokenizer
is trained on its sample of the train split (or found in the cache) and the corpus is tokenized into the
token cache that the run will find (``lightning_llm.data.shards``), with ``data.num_proc`` processes. A
training run does the same on first use; preparing first keeps the GPUs from waiting on it, and
``--shard I/N`` splits it over N jobs on a shared ``paths.cache_dir`` (SLURM array tasks 0..N-1: the same
command with ``--shard $SLURM_ARRAY_TASK_ID/$SLURM_ARRAY_TASK_COUNT``): each prepares every N-th unit of the
corpus, and the job that finds every unit done writes the manifest. Logs to stderr what a training run logs
(the tokenizer's sample and where it is cached, units prepared of the total, the cache folder); prints one
JSON object; bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from collections.abc import Sequence
from typing import Any

from lightning_llm.errors import EXIT_BAD_INPUT, ArgumentParser, ctrl_c_exits

__all__ = ["build_parser", "main", "prepare_corpus"]


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        shard = int(index), int(count)
    except ValueError:
        raise ValueError(f"--shard {text}: expected I/N, e.g. 0/8") from None
    if not 0 <= shard[0] < shard[1]:
        raise ValueError(f"--shard {text}: I must be in [0, N)")
    return shard


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m lightning_llm.prepare",
        formatter_class=argparse.RawDescriptionHelpFormatter,  # the example stays one command line
        description="Train the tokenizer (if needed) and tokenize a corpus into the token cache that a\n"
        "training run with the same overrides uses.",
        epilog="example:\n  python -m lightning_llm.prepare data=jsonl \"data.paths=['shards/*.jsonl']\" "
        "tokenizer=byte_bpe data.num_proc=16",
    )
    parser.add_argument(
        "--shard", metavar="I/N", help="prepare every N-th unit from the I-th (one of N jobs)"
    )
    parser.add_argument("overrides", nargs="*", help="a training run's config overrides")
    return parser


def prepare_corpus(overrides: Sequence[str] = (), shard: tuple[int, int] | None = None) -> dict[str, Any]:
    from lightning_llm import cli, config, parts, plugins, registry
    from lightning_llm.data.shards import prepare
    from lightning_llm.data.streams import Corpus

    plugins.load()
    config.store_schemas()
    overrides = [*overrides, *cli.plugin_defaults(list(overrides))]
    cfg = cli.compose_config(overrides)  # an unknown name gets its did-you-mean there
    config.check(cfg)
    data_class = registry.get("data", cfg.data.name).config_class()
    if data_class is not None and not callable(getattr(data_class, "corpus", None)):  # before any work
        raise ValueError(f"data={cfg.data.name} is read whole by each run; there is nothing to prepare")
    tokenizer, datamodule = parts.tokenizer_and_data(cfg)
    if not isinstance(getattr(datamodule, "corpus", None), Corpus):
        raise ValueError(f"data={cfg.data.name} is read whole by each run; there is nothing to prepare")
    folder, manifest = prepare(
        datamodule.corpus,
        tokenizer,
        datamodule.rule,
        cfg.paths.cache_dir,
        num_proc=datamodule.num_proc,
        shard=shard,
    )
    if manifest is None:
        return {"cache": str(folder), "complete": False, "shard": f"{shard[0]}/{shard[1]}"}
    datamodule.check_split_counts(manifest)  # a corpus a run would refuse is refused here too
    return {
        "cache": str(folder),
        "complete": True,
        "tokens": manifest["tokens"],
        "units": len(manifest["units"]),
    }


def _shard_as_one_argument(argv: list[str]) -> list[str]:
    """``--shard -1/2`` as ``--shard=-1/2``: argparse would take ``-1/2`` for an option and say only
    "expected one argument"; joined, the value reaches ``_shard``, which says what is wrong with it."""
    for index, arg in enumerate(argv[:-1]):
        if arg == "--shard" and argv[index + 1].startswith("-") and argv[index + 1][1:2].isdigit():
            return [*argv[:index], f"--shard={argv[index + 1]}", *argv[index + 2 :]]
    return argv


def _log_to_stderr() -> None:
    """INFO lines on stderr, as a training run shows them, unless the caller set up logging already."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO,
            stream=sys.stderr,
            format="[%(asctime)s][%(name)s][%(levelname)s] - %(message)s",
        )
    logging.getLogger("lightning_llm").setLevel(logging.INFO)


@ctrl_c_exits
def main(argv: Sequence[str] | None = None) -> int:
    from lightning_llm.config import ConfigError
    from lightning_llm.registry import PluginError

    argv = _shard_as_one_argument(list(sys.argv[1:] if argv is None else argv))
    args = build_parser().parse_intermixed_args(argv)  # overrides before and after --shard
    _log_to_stderr()
    try:
        shard = _shard(args.shard) if args.shard else None
        result = prepare_corpus(args.overrides, shard)
    except (FileNotFoundError, ValueError, ConfigError, PluginError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
