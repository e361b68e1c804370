"""Two runs started at the same instant on one fresh cache folder, as two jobs of a sweep would: both miss
the tokenizer and token caches, both build them, and the publishing protocol (first tokenizer wins, token
files renamed into place) leaves one consistent cache that both runs used.

Real ``python -m lightning_llm`` processes with the default byte-level BPE tokenizer (trained, so a miss
costs real work) and a tiny model.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from lightning_llm.testing import cli_command, cli_env
from tests.conftest import TINY

pytestmark = pytest.mark.slow  # subprocesses or training runs: the full tier (CI)

TIMEOUT = 300
RACES = 1  # a race left to chance; the forced one below meets the worst interleaving every time
SPLITS = ("train", "val", "test")
COMMAND = [
    *TINY,
    "tokenizer=byte_bpe",
    "tokenizer.vocab_size=300",
    "trainer.max_steps=2",
    "trainer.val_check_interval=2",
    "trainer.limit_val_batches=1",
    "trainer.limit_test_batches=1",
    "callbacks.samples.num_samples=0",
]
# What the data module logs when it maps the train split's prepared tokens.
TRAIN_TOKENS = re.compile(r"train split: (\d+) tokens in \d+ shards")


# Loaded as sitecustomize in both runs: once lightning_llm.tokenizers.cache is imported, its _publish waits
# until both processes have trained (a file per process in $RACE_BARRIER), so both publish the same entry.
BARRIER_BEFORE_PUBLISH = """
import importlib.util, os, sys, time
from importlib.abc import MetaPathFinder

def barrier():
    folder = os.environ["RACE_BARRIER"]
    open(os.path.join(folder, str(os.getpid())), "w").close()
    deadline = time.monotonic() + 120
    while len(os.listdir(folder)) < 2 and time.monotonic() < deadline:
        time.sleep(0.01)

class PatchPublish(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name != "lightning_llm.tokenizers.cache":
            return None
        sys.meta_path.remove(self)
        spec = importlib.util.find_spec(name)
        execute = spec.loader.exec_module

        def exec_module(module):
            execute(module)
            publish = module._publish

            def publish_after_barrier(tokenizer, path):
                barrier()
                return publish(tokenizer, path)

            module._publish = publish_after_barrier

        spec.loader.exec_module = exec_module
        return spec

sys.meta_path.insert(0, PatchPublish())
"""


def start(run_dir: Path, cache_dir: Path, **extra_env: str) -> subprocess.Popen:
    command = cli_command(*COMMAND, run_dir=run_dir, cache_dir=cache_dir)
    env = cli_env(**extra_env)
    return subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


def train_tokens(run_dir: Path) -> int:
    found = TRAIN_TOKENS.search((run_dir / "train.log").read_text())
    assert found, f"{run_dir / 'train.log'} does not say how many train tokens the run had"
    return int(found.group(1))


def only_child(folder: Path) -> Path:
    children = list(folder.iterdir())
    assert len(children) == 1, children
    return children[0]


@pytest.mark.parametrize("race", range(RACES))
def test_two_runs_racing_on_a_fresh_cache_share_one_cache(tmp_path: Path, race: int) -> None:
    cache = tmp_path / "cache"
    runs = [tmp_path / "run-a", tmp_path / "run-b"]
    processes = [start(run_dir, cache) for run_dir in runs]
    for process in processes:
        _, stderr = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, stderr[-3000:]

    assert sorted(path.name for path in cache.iterdir()) == ["tokenizers", "tokens"]
    # One tokenizer entry holding one file: the published one, no temp file beside it.
    tokenizer_file = only_child(only_child(cache / "tokenizers"))
    assert tokenizer_file.name == "tokenizer.json"
    cached_tokenizer = tokenizer_file.read_bytes()
    assert json.loads(cached_tokenizer)["model"]["vocab"]
    # Both runs used that very tokenizer.
    for run_dir in runs:
        assert (run_dir / "tokenizer.json").read_bytes() == cached_tokenizer

    # One prepared corpus: a manifest, one unit's split files and sidecar, no temp files, sizes matching.
    tokens = only_child(cache / "tokens")
    assert sorted(path.name for path in tokens.iterdir()) == ["manifest.json", "units"]
    files = sorted(path.name for path in (tokens / "units").iterdir())
    assert files == sorted([".prepare.lock", "000000.json", *(f"000000.{split}.bin" for split in SPLITS)])
    manifest = json.loads((tokens / "manifest.json").read_text())
    for split in SPLITS:
        path = tokens / "units" / f"000000.{split}.bin"
        assert path.stat().st_size == manifest["tokens"][split] * np.dtype(manifest["dtype"]).itemsize > 0
        assert int(np.fromfile(path, dtype=manifest["dtype"]).max()) < manifest["vocab_size"] == 300

    # Both runs read the same number of train tokens, the number the cache holds.
    assert [train_tokens(run_dir) for run_dir in runs] == [manifest["tokens"]["train"]] * 2
    for run_dir in runs:
        assert json.loads((run_dir / "summary.json").read_text())["step"] == 2


def test_two_runs_that_both_trained_the_tokenizer_publish_one(tmp_path: Path) -> None:
    """The tokenizer publish race forced: both runs train, then meet at a barrier, then publish at once. The
    first link wins; the other run loads the winner's file; both train on identical tokenizers."""
    (tmp_path / "hooks").mkdir()
    (tmp_path / "hooks" / "sitecustomize.py").write_text(BARRIER_BEFORE_PUBLISH)
    (tmp_path / "barrier").mkdir()
    env = {"PYTHONPATH": str(tmp_path / "hooks"), "RACE_BARRIER": str(tmp_path / "barrier")}
    cache, runs = tmp_path / "cache", [tmp_path / "run-a", tmp_path / "run-b"]
    processes = [start(run_dir, cache, **env) for run_dir in runs]
    for process in processes:
        _, stderr = process.communicate(timeout=TIMEOUT)
        assert process.returncode == 0, stderr[-3000:]

    assert len(list((tmp_path / "barrier").iterdir())) == 2  # both trained and reached the publish
    logs = [(run_dir / "train.log").read_text() for run_dir in runs]
    assert all("trained tokenizer" in log for log in logs)
    assert sum("another process cached it first" in log for log in logs) == 1
    tokenizer_file = only_child(only_child(cache / "tokenizers"))
    assert tokenizer_file.name == "tokenizer.json"
    for run_dir in runs:
        assert (run_dir / "tokenizer.json").read_bytes() == tokenizer_file.read_bytes()
