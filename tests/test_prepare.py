"""``python -m lightning_llm.prepare``: the tokens a run will use, prepared beforehand, in shards or at once,
and a prepare killed with -9 leaves nothing a run trusts."""

from __future__ import annotations

import json
import logging
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lightning_llm.data.shards import MANIFEST, read_manifest
from lightning_llm.prepare import main, prepare_corpus
from lightning_llm.testing import cli_env, run_cli

WORDS = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta", "theta", "iota", "kappa"]


def write_corpus(folder: Path, files: int, paragraphs: int) -> Path:
    rng = random.Random(0)
    folder.mkdir(parents=True, exist_ok=True)
    for index in range(files):
        text = "\n\n".join(" ".join(rng.choices(WORDS, k=20)) for _ in range(paragraphs))
        (folder / f"{index}.txt").write_text(text)
    return folder


def corpus_overrides(folder: Path, cache: Path) -> list[str]:
    return ["data=text", f"data.paths=[{folder}/*.txt]", "tokenizer=char", f"paths.cache_dir={cache}"]


def prepare_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "lightning_llm.prepare", *args]


def test_shards_of_the_corpus_prepared_apart_make_the_cache_a_run_uses(tmp_path, caplog):
    overrides = corpus_overrides(
        write_corpus(tmp_path / "corpus", files=3, paragraphs=100), tmp_path / "cache"
    )
    first = prepare_corpus([*overrides, "data.num_proc=1"], shard=(0, 2))
    assert first["complete"] is False and not (Path(first["cache"]) / MANIFEST).exists()
    second = prepare_corpus([*overrides, "data.num_proc=1"], shard=(1, 2))
    assert second["complete"] is True and second["units"] == 3 and second["cache"] == first["cache"]
    again = prepare_corpus(overrides)  # a training run's preparation finds it
    assert again == second


@pytest.mark.slow
def test_a_run_after_prepare_reads_no_corpus_text(tmp_path):
    corpus = write_corpus(tmp_path / "corpus", files=2, paragraphs=200)
    overrides = corpus_overrides(corpus, tmp_path / "cache")
    prepared = subprocess.run(prepare_command(*overrides), capture_output=True, text=True, env=cli_env())
    assert prepared.returncode == 0, prepared.stderr[-2000:]
    result = json.loads(prepared.stdout)
    for path in corpus.glob("*.txt"):  # not text any more, same size and time: only metadata is looked at
        before = path.stat()
        path.write_bytes(b"\xff" * before.st_size)
        os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    summary = run_cli(
        *overrides[:3], "trainer.max_steps=2", run_dir=tmp_path / "run", cache_dir=tmp_path / "cache"
    )
    assert summary["step"] == 2 and read_manifest(Path(result["cache"]))["tokens"] == result["tokens"]


@pytest.mark.slow
def test_a_prepare_killed_with_9_leaves_no_manifest_and_the_next_one_finishes(tmp_path):
    overrides = corpus_overrides(
        write_corpus(tmp_path / "corpus", files=6, paragraphs=6000), tmp_path / "cache"
    )
    process = subprocess.Popen(
        prepare_command(*overrides, "data.num_proc=1"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    deadline = time.monotonic() + 120
    while not list((tmp_path / "cache").glob("tokens/*/units/000000.json")):
        assert process.poll() is None, process.communicate()[1][-2000:]
        assert time.monotonic() < deadline, "no unit prepared within 120 s"
        time.sleep(0.05)
    process.send_signal(signal.SIGKILL)
    process.communicate()
    (folder,) = (tmp_path / "cache").glob("tokens/*")
    if (folder / MANIFEST).exists():
        pytest.skip("the prepare finished before it was killed")
    finished = subprocess.run(prepare_command(*overrides), capture_output=True, text=True, env=cli_env())
    assert finished.returncode == 0, finished.stderr[-2000:]
    fresh = prepare_corpus([*corpus_overrides(tmp_path / "corpus", tmp_path / "fresh")])
    assert json.loads(finished.stdout)["tokens"] == fresh["tokens"]


BAD_INPUTS = [
    (["--shard", "2/2"], "error: --shard 2/2: I must be in [0, N)"),
    (["--shard", "a"], "error: --shard a: expected I/N, e.g. 0/8"),
    (
        ["data=pydoc_topics"],
        "error: data=pydoc_topics is read whole by each run; there is nothing to prepare",
    ),
    (["data=text", "data.paths=[/no/such/*.txt]"], "error: no files match '/no/such/*.txt'"),
    (["--shard", "-1/2"], "error: --shard -1/2: I must be in [0, N)"),
    (
        ["tokenizr.vocab_size=3"],
        "error: tokenizr.vocab_size=3: no setting or group 'tokenizr'; did you mean tokenizer?",
    ),
    (["tokenizer.train_max_chars=0"], "error: tokenizer.train_max_chars=0: must be an integer >= 1"),
    (["tokenizer.train_max_chars=-5"], "error: tokenizer.train_max_chars=-5: must be an integer >= 1"),
    (["data=dataset", "data.paths=[/no/such/folder]"], "error: no such folder: '/no/such/folder'"),
    # paths that cannot be looked up (tracebacks before): ~ of no user here, a name over 255 bytes
    (["data=dataset", "data.paths=['~no_such_user_zq/ds']"], "error: data.paths=~no_such_user_zq/ds: its ~"),
    (["data=text", "data.paths=['~no_such_user_zq/a.txt']"], "error: data.paths=~no_such_user_zq/a.txt: its"),
    (["data=text", f"data.paths=[/tmp/{'a' * 300}.txt]"], "error: data.paths=/tmp/aaaaaaaa"),
    (["data=dataset", f"data.paths=[/tmp/{'a' * 300}]"], "error: data.paths=/tmp/aaaaaaaa"),
    # overrides after --shard are overrides still
    (["--shard", "0/2", "data=pydoc_topics"], "error: data=pydoc_topics is read whole by each run"),
]


@pytest.fixture
def log_level_kept():
    """``main`` sets the package logger to INFO, as a command should; the test process gets its level back."""
    logger = logging.getLogger("lightning_llm")
    level = logger.level
    yield
    logger.setLevel(level)


@pytest.mark.parametrize(("args", "message"), BAD_INPUTS)
def test_bad_input_is_one_line(tmp_path, args, message, capsys, log_level_kept):
    """Through the command's entry point in this process."""
    assert main([*args, f"paths.cache_dir={tmp_path}"]) == 2
    stderr = capsys.readouterr().err
    assert stderr.startswith(message) and stderr.count("\n") == 1, stderr[-2000:]


@pytest.mark.slow
def test_bad_input_is_one_line_on_stderr_of_the_real_command(tmp_path):
    args, message = BAD_INPUTS[3]
    result = subprocess.run(
        prepare_command(*args, f"paths.cache_dir={tmp_path}"), capture_output=True, text=True, env=cli_env()
    )
    assert result.returncode == 2 and result.stderr.startswith(message), result.stderr[-2000:]
    assert result.stderr.count("\n") == 1


@pytest.mark.slow  # three launches of the real command
def test_prepare_logs_what_a_run_logs_and_its_help_keeps_the_example_whole(tmp_path):
    overrides = corpus_overrides(
        write_corpus(tmp_path / "corpus", files=2, paragraphs=50), tmp_path / "cache"
    )
    result = subprocess.run(
        prepare_command(*overrides, "tokenizer.train_max_chars=500"),
        capture_output=True,
        text=True,
        env=cli_env(),
    )
    assert result.returncode == 0, result.stderr[-2000:]
    folder = json.loads(result.stdout)["cache"]
    for line in [
        "tokenizer training sample: 500 characters from 2 units (tokenizer.train_max_chars=500)",
        "trained tokenizer",
        f"preparing 2 of 2 units into {folder}",
        "prepared 2 of 2 units",
    ]:
        assert line in result.stderr, result.stderr[-2000:]
    again = subprocess.run(
        prepare_command(*overrides, "tokenizer.train_max_chars=500"),
        capture_output=True,
        text=True,
        env=cli_env(),
    )
    assert "loaded tokenizer" in again.stderr and "token cache hit" in again.stderr
    shown = subprocess.run(prepare_command("--help"), capture_output=True, text=True, env=cli_env()).stdout
    assert (
        "  python -m lightning_llm.prepare data=jsonl \"data.paths=['shards/*.jsonl']\" tokenizer=byte_bpe"
        in shown
    )


def test_a_corpus_with_no_text_is_refused_by_prepare_naming_its_paths(tmp_path, capsys, log_level_kept):
    """Records whose text is blank pass every per-record check; the corpus as a whole is refused, as a run
    would refuse it, not reported complete."""
    blank = tmp_path / "blank.jsonl"
    blank.write_text('{"text": "   "}\n{"text": "\\n"}\n')
    assert main(["data=jsonl", f"data.paths=[{blank}]", f"paths.cache_dir={tmp_path / 'cache'}"]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"error: the corpus (data.paths=['{blank}']) holds no text: every document is blank, or there are no "
        "rows or records"
    )
