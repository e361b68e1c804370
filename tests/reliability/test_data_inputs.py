"""Data and cache inputs through the real CLI: an unusable cache folder, an absurd vocabulary size and a
damaged token cache are refused with one ``error:`` line (exit 2, no traceback); runs with the val or test
split turned off, as the corpus-too-small error suggests, finish.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from lightning_llm.data.corpus import assign_split
from lightning_llm.testing import TINY, cli_command, cli_env
from tests.conftest import read_only_folder

pytestmark = pytest.mark.slow  # subprocesses or training runs: the full tier (CI)

TIMEOUT = 120
# TINY without its tokenizer, for rows that choose their own.
NO_TOKENIZER = [override for override in TINY if not override.startswith("tokenizer=")]


def run(
    run_dir: Path, cache_dir: Path, *overrides: str, base: list[str] = TINY
) -> subprocess.CompletedProcess:
    command = cli_command(*base, *overrides, run_dir=run_dir, cache_dir=cache_dir)
    env = cli_env(HYDRA_FULL_ERROR="")  # the user's view: messages, not tracebacks
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=TIMEOUT)


def last_line(result: subprocess.CompletedProcess, status: int) -> str:
    assert result.returncode == status, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, result.stdout[-3000:]
    return lines[-1]


def finished(result: subprocess.CompletedProcess) -> bool:
    """The run trained to its end (Lightning's line goes where the run's log lines go: stdout)."""
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr[-3000:]
    return "Trainer.fit` stopped: `max_steps=8` reached." in result.stdout


def error_line(result: subprocess.CompletedProcess) -> str:
    line = last_line(result, 2)
    assert line.startswith("error: ") and len(line) <= 300, line
    return line


@pytest.fixture(scope="module")
def built_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A cache folder holding the TINY run's tokenizer and token caches, from one good run."""
    folder = tmp_path_factory.mktemp("built")
    result = run(folder / "run", folder / "cache")
    assert result.returncode == 0, result.stderr[-3000:]
    return folder / "cache"


# ---- a cache folder that cannot be written


def test_a_cache_dir_under_a_regular_file_is_one_line(tmp_path: Path) -> None:
    """What a read-only folder does for everyone else, but root too: the folder cannot be created."""
    (tmp_path / "file").write_text("in the way")
    cache_dir = tmp_path / "file" / "cache"
    line = error_line(run(tmp_path / "run", cache_dir))
    assert line == (
        f"error: paths.cache_dir={cache_dir}: cannot write the tokenizer cache (Not a directory); "
        "choose another paths.cache_dir or set LIGHTNING_LLM_CACHE"
    )


def test_a_read_only_cache_dir_is_one_line(tmp_path: Path) -> None:
    cache_dir = read_only_folder(tmp_path / "cache")
    try:
        line = error_line(run(tmp_path / "run", cache_dir))
    finally:
        cache_dir.chmod(0o755)
    assert line.startswith(f"error: paths.cache_dir={cache_dir}: cannot write the tokenizer cache")
    assert "(Permission denied); choose another paths.cache_dir or set LIGHTNING_LLM_CACHE" in line


def test_a_token_cache_that_cannot_be_written_is_one_line(built_cache: Path, tmp_path: Path) -> None:
    """The tokenizer comes from the cache; writing the token cache fails (a file where its folder goes)."""
    cache_dir = tmp_path / "cache"
    shutil.copytree(built_cache / "tokenizers", cache_dir / "tokenizers")
    (cache_dir / "tokens").write_text("in the way")
    line = error_line(run(tmp_path / "run", cache_dir))
    assert line.startswith(
        f"error: paths.cache_dir={cache_dir}: cannot write the token cache (Not a directory)"
    )
    assert (cache_dir / "tokens").is_file()  # nothing written around it


@pytest.fixture
def full_disk(tmp_path: Path) -> Iterator[Path]:
    """A 300 KiB tmpfs: room for the tokenizer, not for the token cache (skipped where mounting is not
    allowed)."""
    folder = tmp_path / "full"
    folder.mkdir()
    mount = ["mount", "-t", "tmpfs", "-o", "size=300k", "tmpfs", str(folder)]
    if shutil.which("mount") is None or subprocess.run(mount, capture_output=True).returncode != 0:
        pytest.skip("cannot mount a small tmpfs here (needs root)")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


def test_a_full_disk_is_one_line_and_leaves_no_token_file(full_disk: Path, tmp_path: Path) -> None:
    cache_dir = full_disk / "cache"
    line = error_line(run(tmp_path / "run", cache_dir))
    assert line == (
        f"error: paths.cache_dir={cache_dir}: cannot write the token cache (No space left on device); "
        "free some space, choose another paths.cache_dir or set LIGHTNING_LLM_CACHE"
    )
    files = sorted(path.name for path in cache_dir.rglob("*") if path.is_file())
    assert files in (["tokenizer.json"], [".prepare.lock", "tokenizer.json"])  # the lock holds no tokens


# ---- a vocabulary size no tokenizer can have


@pytest.mark.parametrize("tokenizer", ["byte_bpe", "wordpiece"])  # tests/tokenizers has every plugin
def test_an_absurd_vocab_size_is_one_line_before_any_work(tokenizer: str, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    result = run(
        tmp_path / "run",
        cache_dir,
        f"tokenizer={tokenizer}",
        "tokenizer.vocab_size=1000000000000",
        base=NO_TOKENIZER,
    )
    line = error_line(result)
    assert line.startswith(
        f"error: tokenizer.vocab_size=1000000000000 is out of range for tokenizer '{tokenizer}'"
    )
    assert line.endswith("and at most 2097152")
    assert not cache_dir.exists()  # refused before the corpus was read or anything cached


# ---- a damaged token cache


def test_a_token_cache_with_ids_outside_the_vocabulary_is_one_line(built_cache: Path, tmp_path: Path) -> None:
    cache_dir = tmp_path / "cache"
    shutil.copytree(built_cache, cache_dir)
    (train_bin,) = cache_dir.glob("tokens/*/units/000000.train.bin")
    tokens = np.fromfile(train_bin, dtype=np.uint16)
    tokens[::97] = 60_000  # far past the char tokenizer's ~100 ids; the file keeps its size
    tokens.tofile(train_bin)
    line = error_line(run(tmp_path / "run", cache_dir))
    assert line.startswith(
        f"error: token cache {train_bin.parent.parent} holds id 60000, outside this tokenizer's vocab_size="
    )
    assert line.endswith("delete it and run again to rebuild it")


# ---- splits turned off


def one_paragraph_in_train() -> str:
    """A corpus of one paragraph (no blank line) that the default split puts in train."""
    for words in range(200, 400):
        text = " ".join(f"word{i % 37}" for i in range(words))
        if assign_split(text, val_fraction=0.05, test_fraction=0.05, seed=1234) == "train":
            return text
    raise AssertionError("no paragraph went to train")


def test_the_corpus_too_small_advice_gives_a_run_that_finishes(tmp_path: Path) -> None:
    corpus = tmp_path / "one_paragraph.txt"
    corpus.write_text(one_paragraph_in_train())
    data = ["data=text", f"data.paths=[{corpus}]"]
    line = error_line(run(tmp_path / "refused", tmp_path / "cache", *data))
    assert "gave the val split none" in line and "set data.val_fraction=0" in line
    off = ["data.val_fraction=0", "data.test_fraction=0"]
    result = run(tmp_path / "run", tmp_path / "cache", *data, *off)
    assert finished(result)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["step"] == 8 and summary.get("val_loss") is None and summary.get("test_loss") is None


@pytest.mark.parametrize("split", ["val", "test"])
def test_a_run_with_a_split_turned_off_finishes(split: str, tmp_path: Path) -> None:
    result = run(tmp_path / "run", tmp_path / "cache", f"data.{split}_fraction=0")
    assert finished(result)
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    other = {"val": "test", "test": "val"}[split]
    assert summary["step"] == 8 and summary.get(f"{split}_loss") is None
    assert isinstance(summary[f"{other}_loss"], float)  # the other split is still evaluated
    assert summary["not_evaluated"] == {split: f"the data has no {split} split"}
    checkpoints = sorted(path.name for path in (tmp_path / "run" / "checkpoints").iterdir())
    assert "last.ckpt" in checkpoints  # without validation, checkpoints keep its rhythm: nothing is lost
