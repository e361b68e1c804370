"""Bad inputs are refused clearly: one table, each row run through the real CLI.

Every row must exit non-zero with one short ``error:`` line (the last of stderr, no traceback) that names the
key or file and what would be valid, and leave nothing ``ckpt_path=auto`` would resume from. Rows the CLI
catches by checking the composed config (``BEFORE_HYDRA``) leave no run folder at all; the others are found
inside the run, before training or at its first step, and leave the run folder without a checkpoint.
"""

from __future__ import annotations

import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import torch

from lightning_llm import cli
from lightning_llm.run_folder import resume_path
from lightning_llm.testing import TINY, cli_command, cli_env

pytestmark = pytest.mark.slow  # subprocesses or training runs: the full tier (CI)

TIMEOUT = 120
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@dataclass(frozen=True)
class Bad:
    overrides: tuple[str, ...]  # {data} is the folder of the files made by the `data` fixture
    expected: tuple[str, ...]  # fragments of the error line: the key or file, and what would be valid
    before_hydra: bool = False  # refused by the CLI's check of the composed config: no run folder at all


def bad(*overrides: str, expect: tuple[str, ...], before_hydra: bool = False):
    return Bad(overrides, expect, before_hydra)


def text_file(name: str, *overrides: str, expect: tuple[str, ...]) -> Bad:
    return bad("data=text", f"data.paths=[{{data}}/{name}]", *overrides, expect=expect)


CASES = {
    # ---- config: names, keys, types, values
    "unknown-model-name": bad(
        "model=gtp",
        expect=("unknown model 'gtp'", "valid model names: decoder, encoder, gpt"),
        before_hydra=True,
    ),
    "unknown-key": bad(
        "optim.lrr=1", expect=("optim.lrr", "has no parameter 'lrr'", "did you mean 'lr'"), before_hydra=True
    ),
    "wrong-type": bad("optim.lr=abc", expect=("optim.lr='abc' is not a valid float",), before_hydra=True),
    "negative-lr": bad("optim.lr=-1", expect=("optim.lr", "> 0")),
    "block-size-over-model-positions": bad(
        "data.block_size=64", expect=("data.block_size=64", "model.block_size=32", "lower data.block_size")
    ),
    "n_embd-not-divisible-by-n_head": bad(  # the model's dataclass checks run at composition
        "model.n_embd=30", "model.n_head=4", expect=("model.n_embd=30", "model.n_head=4"), before_hydra=True
    ),
    "data-batch-size-zero": bad(
        "data.batch_size=0", expect=("data.batch_size must be > 0", "got 0"), before_hydra=True
    ),
    "objective-does-not-fit-model": bad(
        "model=gpt",
        "objective=masked_lm",
        expect=("objective=masked_lm does not fit model=gpt", "supports: causal_lm"),
        before_hydra=True,
    ),
    # ---- data files
    "missing-data-file": text_file("nothing.txt", expect=("{data}/nothing.txt", "no such file")),
    "empty-data-file": text_file("empty.txt", expect=("{data}/empty.txt", "empty")),
    "binary-data-file": text_file("binary.txt", expect=("{data}/binary.txt", "binary", "UTF-8")),
    "non-utf8-data-file": text_file("latin1.txt", expect=("{data}/latin1.txt", "not UTF-8")),
    "corpus-shorter-than-one-block": text_file(
        "short.txt",
        "data.val_fraction=0",
        "data.test_fraction=0",
        expect=("train split has", "block_size + 1 = 33", "lower data.block_size"),
    ),
    "corpus-too-small-for-a-val-split": text_file("short.txt", expect=("val split", "data.val_fraction")),
    "jsonl-line-without-the-field": bad(
        "data=jsonl",
        "data.paths=[{data}/nofield.jsonl]",
        expect=("{data}/nofield.jsonl:2", "no field 'text'", "fields present: body", "data.field"),
    ),
    # ---- the machine
    "devices-more-than-cores": bad(
        f"trainer.devices={CORES + 2}",
        expect=(f"trainer.devices={CORES + 2}: this machine has {CORES} CPU cores", f"from 1 to {CORES}"),
    ),
    "gpu-accelerator-without-gpu": bad(
        "trainer.accelerator=gpu",
        expect=("trainer.accelerator=gpu", "no CUDA GPU", "trainer.accelerator=cpu"),
    ),
    "fp16-mixed-on-cpu": bad(
        "trainer.precision=16-mixed",
        expect=("trainer.precision=16-mixed needs a GPU", "bf16-mixed", "32-true"),
    ),
    # ---- code where only names and data belong
    "_target_-in-an-override": bad(
        "+model._target_=os.system",
        expect=("model._target_", "registry name only", "refused"),
        before_hydra=True,
    ),
    "_target_-in-a-checkpoint-config": bad(
        "ckpt_path={data}/target.ckpt", expect=("{data}/target.ckpt", "config.model._target_", "refused")
    ),
    "pickled-code-in-a-checkpoint": bad(
        "ckpt_path={data}/code.ckpt", expect=("{data}/code.ckpt", "pickled code", "weights_only=True")
    ),
}
NO_GPU_ONLY = {"gpu-accelerator-without-gpu"}


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bad files, once for the table."""
    folder = tmp_path_factory.mktemp("bad_data")
    (folder / "empty.txt").write_bytes(b"")
    (folder / "binary.txt").write_bytes(b"PK\x03\x04" + bytes(range(256)) * 8)
    (folder / "latin1.txt").write_bytes(("caf\xe9 au lait. " * 40 + "\n\n").encode("latin-1") * 20)
    (folder / "short.txt").write_text("Hi there.\n")
    lines = [{"text": "A line of text long enough. " * 20}, {"body": "no text field here"}]
    (folder / "nofield.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    torch.save({"state_dict": {}, "global_step": 4, "callback": os.getcwd}, folder / "code.ckpt")
    config = {"model": {"name": "gpt", "_target_": "os.system"}}
    torch.save({"state_dict": {}, "global_step": 4, "config": config}, folder / "target.ckpt")
    return folder


def run_cli(run_dir: Path, cache_dir: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = cli_command(*TINY, *overrides, run_dir=run_dir, cache_dir=cache_dir)
    env = cli_env(HYDRA_FULL_ERROR="")  # the user's view: messages, not tracebacks
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=TIMEOUT)


def refused_before_hydra(*args: str) -> str:
    """The error line of ``python -m lightning_llm <args>`` for input the CLI refuses before Hydra starts, run
    in this process through the CLI's entry point (``cli.main``): it must exit with one line, no traceback."""
    with pytest.raises(SystemExit) as refused:
        cli.main(list(args))
    assert refused.value.code == 2  # EXIT_BAD_INPUT, as every command exits for bad input
    line = refused.value.line
    assert line.startswith("error: ") and "\n" not in line, line
    return line


def error_line(result: subprocess.CompletedProcess) -> str:
    assert result.returncode != 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines and lines[-1].startswith("error: "), result.stderr[-3000:]
    return lines[-1]


def assert_nothing_to_resume(run_dir: Path) -> None:
    """``ckpt_path=auto`` in this folder would start fresh."""
    assert resume_path("auto", run_dir, sharded_strategy=False) is None
    assert not any((run_dir / "checkpoints").glob("*")) and not any(run_dir.glob("hpc_ckpt_*"))


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(
            case,
            id=name,
            marks=[pytest.mark.skipif(torch.cuda.is_available(), reason="a GPU is here")]
            if name in NO_GPU_ONLY
            else [],
        )
        for name, case in CASES.items()
    ],
)
def test_bad_input_is_refused_with_one_clear_line(case: Bad, data: Path, tmp_path: Path) -> None:
    run_dir = tmp_path / "run"
    overrides = [override.replace("{data}", str(data)) for override in case.overrides]
    if case.before_hydra:  # no process needed to show it: the same entry point, in this process
        line = refused_before_hydra(*TINY, *overrides, f"hydra.run.dir={run_dir}")
    else:
        line = error_line(run_cli(run_dir, tmp_path / "cache", *overrides))
    for fragment in case.expected:
        assert fragment.replace("{data}", str(data)) in line, line
    assert len(line) <= 300, f"not short: {line}"
    if case.before_hydra:
        assert not run_dir.exists()  # refused before Hydra made the run folder
    else:
        assert_nothing_to_resume(run_dir)


def test_a_later_auto_resume_in_the_failed_runs_folder_starts_fresh(tmp_path: Path) -> None:
    """A run that failed at its first steps (the tokenizer saved, the loss diverged) leaves nothing
    ``ckpt_path=auto`` resumes from: fixing the input and resuming trains from step 0."""
    run_dir, cache = tmp_path / "run", tmp_path / "cache"
    line = error_line(run_cli(run_dir, cache, "optim.lr=1e30"))  # diverges: the NaN guard stops it
    assert "non-finite loss or gradients" in line and "last good checkpoint: none yet" in line, line
    assert (run_dir / "tokenizer.json").is_file()  # it got that far
    assert_nothing_to_resume(run_dir)
    fixed = run_cli(run_dir, cache, "ckpt_path=auto")
    assert fixed.returncode == 0, fixed.stderr[-3000:]
    assert "resuming from" not in fixed.stdout + fixed.stderr
    assert json.loads((run_dir / "summary.json").read_text())["step"] == 8
