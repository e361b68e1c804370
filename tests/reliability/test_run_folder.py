"""One run per folder, one launch at a time, nothing of the user's touched, nothing lost on Ctrl-C: each rule
through the real command line."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from lightning_llm.callbacks.preemption import INTERRUPTED_EXIT_CODE
from lightning_llm.callbacks.run_summary import write_json
from lightning_llm.checkpoint import stored_step
from lightning_llm.run_folder import LOCK_FILE, remove_unfinished_checkpoints
from lightning_llm.testing import TINY, cli_command, cli_env, run_cli
from tests.reliability.test_bad_inputs import error_line, refused_before_hydra

pytestmark = pytest.mark.slow  # subprocesses or training runs: the full tier (CI)

TIMEOUT = 180
LONG = ["trainer.max_steps=100000", "trainer.val_check_interval=20", "callbacks.samples.num_samples=0"]


def launch(run_dir: Path, cache: Path, *overrides: str) -> subprocess.CompletedProcess:
    command = cli_command(*TINY, *overrides, run_dir=run_dir, cache_dir=cache)
    env = cli_env(HYDRA_FULL_ERROR="")
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=TIMEOUT)


def start(run_dir: Path, cache: Path, *overrides: str) -> subprocess.Popen:
    command = cli_command(*TINY, *LONG, *overrides, run_dir=run_dir, cache_dir=cache)
    env = cli_env(HYDRA_FULL_ERROR="")
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def wait_for(condition, process: subprocess.Popen, what: str, timeout: float = TIMEOUT) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert process.poll() is None, f"exited before {what}: {process.communicate()[1][-2000:]}"
        assert time.monotonic() < deadline, f"no {what} within {timeout} s"
        time.sleep(0.2)


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("finished")
    run_cli(run_dir=root / "run", cache_dir=root / "cache")
    return root / "run"


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


# --------------------------------------------------------------------------- one run per folder


def test_a_fresh_launch_into_a_run_is_refused_and_changes_nothing(finished, tmp_path) -> None:
    before = snapshot(finished)
    line = error_line(launch(finished, tmp_path / "cache"))
    assert f"hydra.run.dir={finished} already holds a run" in line and "ckpt_path=auto" in line, line
    assert snapshot(finished) == before  # .hydra/, tokenizer.json and the checkpoints are as they were


def test_a_finished_run_without_checkpoints_is_not_resumed_afresh(finished, tmp_path) -> None:
    """Its checkpoints deleted (to save disk), ckpt_path=auto found nothing to resume and trained the default
    config from scratch, overwriting summary.json, tokenizer.json and the overrides."""
    import shutil

    folder = tmp_path / "run"
    shutil.copytree(finished, folder)
    shutil.rmtree(folder / "checkpoints")
    before = snapshot(folder)
    line = refused_before_hydra(f"hydra.run.dir={folder}", "ckpt_path=auto", "trainer.max_steps=9")
    assert "holds a finished run (a finished run's summary.json) but no checkpoint to continue" in line, line
    assert snapshot(folder) == before


@pytest.mark.parametrize("resume", [False, True], ids=["fresh", "ckpt_path=auto"])
def test_a_folder_that_is_not_a_run_is_never_written_into(tmp_path, resume) -> None:
    folder = tmp_path / "project"
    (folder / "checkpoints" / "notes.partial").mkdir(parents=True)
    (folder / "checkpoints" / "notes.partial" / "draft.txt").write_text("mine")
    (folder / "README.md").write_text("my project")
    before = snapshot(folder)
    line = error_line(launch(folder, tmp_path / "cache", *(["ckpt_path=auto"] if resume else [])))
    assert "holds files that are not a lightning_llm run (README.md)" in line, line
    assert snapshot(folder) == before and sorted(os.listdir(folder)) == ["README.md", "checkpoints"]


def test_cleanup_touches_only_the_names_checkpoint_writers_give(tmp_path) -> None:
    checkpoints = tmp_path / "checkpoints"
    mine = [checkpoints / "notes.partial" / "a.txt", checkpoints / "x.tmp-1", tmp_path / "hpc_ckpt_notes.txt"]
    # named as the writers name unfinished work, but by no launch of this folder (pid 7 is not in its ledger)
    mine += [
        checkpoints / "thesis.ckpt.partial",
        checkpoints / "model.pt.tmp-7",
        checkpoints / "a.ckpt.deleting-7",
    ]
    leftovers = [
        checkpoints / "last.ckpt.tmp-123",
        checkpoints / "best-step000004.ckpt.partial-123" / "meta.pt",
    ]
    leftovers += [
        checkpoints / "last.ckpt.deleting-9" / "__0_0.distcp",
        tmp_path / "hpc_ckpt_2.ckpt.tmp-31337-0a1b2c3d",
    ]
    for path in mine + leftovers:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("x")
    remove_unfinished_checkpoints(tmp_path)
    assert all(path.exists() for path in mine + leftovers)  # no ledger: no launch wrote any of it
    (tmp_path / LOCK_FILE).write_text("".join(f"pid {pid} on host since now\n" for pid in (123, 9, 31337)))
    remove_unfinished_checkpoints(tmp_path)
    assert all(path.exists() for path in mine)
    assert not any(path.exists() for path in leftovers)
    names = ["a.ckpt.deleting-7", "model.pt.tmp-7", "notes.partial", "thesis.ckpt.partial", "x.tmp-1"]
    assert sorted(os.listdir(checkpoints)) == names


def test_a_folder_no_launch_claimed_or_holding_links_is_never_written_into(tmp_path) -> None:
    """Files named as a run names its own (a look-alike checkpoints/, tokenizer.json, samples.txt) are the
    user's unless a launch's ledger (.lock) says a run made the folder; a link is never followed."""
    lookalike = tmp_path / "lookalike"
    (lookalike / "checkpoints").mkdir(parents=True)
    (lookalike / "checkpoints" / "thesis.ckpt.partial").write_text("mine")
    (lookalike / "tokenizer.json").write_text("mine")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "notes.txt").write_text("mine")
    linked = tmp_path / "linked"
    linked.mkdir()
    (linked / "checkpoints").symlink_to(elsewhere)
    deeper = tmp_path / "deeper"  # Hydra rewrites .hydra/*.yaml in place: a link there overwrote notes.txt
    (deeper / ".hydra").mkdir(parents=True)
    (deeper / ".lock").write_text("")
    (deeper / ".hydra" / "config.yaml").symlink_to(elsewhere / "notes.txt")
    hard = tmp_path / "hard"  # Hydra opens .hydra/*.yaml to write: through a hard link, onto the user's file
    (hard / ".hydra").mkdir(parents=True)
    (hard / ".lock").write_text("")
    os.link(elsewhere / "notes.txt", hard / ".hydra" / "overrides.yaml")
    cases = (
        (lookalike, "which no launch of lightning_llm wrote"),
        (linked, "checkpoints is a link"),
        (deeper, ".hydra/config.yaml is a link"),
        (hard, ".hydra/overrides.yaml is a link"),
    )
    for folder, expected in cases:
        for resume in ([], ["ckpt_path=auto"]):
            before = snapshot(folder)
            run = [f"hydra.run.dir={folder}", f"paths.cache_dir={tmp_path / 'cache'}", *resume]
            line = refused_before_hydra(*TINY, *run)  # in this process: refused before Hydra starts
            assert expected in line and str(folder) in line, line
            assert snapshot(folder) == before
    assert sorted(os.listdir(elsewhere)) == ["notes.txt"]


def test_a_resume_its_checkpoint_refuses_leaves_the_folder_as_it_was(finished, tmp_path) -> None:
    """Another model's settings on resume: refused before Hydra rewrites .hydra/ (which then described a run
    the folder does not hold, and report listed it so), and a change of a setting decided by the data is
    left for the run itself."""
    before = snapshot(finished)
    run = [f"hydra.run.dir={finished}", f"paths.cache_dir={tmp_path / 'cache'}", "ckpt_path=auto"]
    line = refused_before_hydra(*TINY, *run, "model.n_layer=3")
    assert f"{finished}" in line and "holds another model: model.n_layer=" in line and "3 here" in line, line
    line = refused_before_hydra(*TINY, *run, "optim.weight_decay=0.5")
    assert "restores the state these settings made" in line and "optim.weight_decay" in line, line
    assert snapshot(finished) == before


def test_a_resume_the_run_refuses_puts_the_runs_config_record_back(finished, tmp_path) -> None:
    """Another tokenizer is found out only once Hydra has rewritten .hydra/ (its fingerprint needs the trained
    tokenizer): the refused launch's config stayed there, describing a run the folder does not hold."""
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(finished), str(run)], check=True)
    record = {path.name: path.read_bytes() for path in (run / ".hydra").iterdir()}
    line = error_line(launch(run, tmp_path / "cache", "ckpt_path=auto", "tokenizer=byte_bpe"))
    assert "was trained with another tokenizer" in line, line
    assert {path.name: path.read_bytes() for path in (run / ".hydra").iterdir()} == record


def test_all_checkpoints_unusable_is_an_error_naming_them(finished, tmp_path) -> None:
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(finished), str(run)], check=True)
    for path in (run / "checkpoints").iterdir():
        path.write_bytes(path.read_bytes()[:1000])  # truncated
    line = error_line(launch(run, tmp_path / "cache", "ckpt_path=auto"))
    assert "ckpt_path=auto: no checkpoint" in line and "last.ckpt: not a whole checkpoint file" in line, line
    assert (run / "summary.json").read_bytes() == (finished / "summary.json").read_bytes()


# --------------------------------------------------------------------------- one launch at a time


def test_a_second_live_launch_is_refused_and_a_dead_ones_lock_is_not(tmp_path) -> None:
    run, cache = tmp_path / "run", tmp_path / "cache"
    first = start(run, cache)
    try:
        wait_for(lambda: (run / "checkpoints" / "last.ckpt").exists(), first, "first checkpoint")
        line = error_line(launch(run, cache, "ckpt_path=auto"))
        assert f"run folder {run} is in use by pid {first.pid} on" in line, line
    finally:
        first.kill()  # SIGKILL: no cleanup; the kernel releases the lock, the file stays
        first.communicate()
    assert f"pid {first.pid}" in (run / LOCK_FILE).read_text()
    further = stored_step(run / "checkpoints" / "last.ckpt") + 10  # a max_steps already passed is refused
    resumed = launch(
        run, cache, "ckpt_path=auto", f"trainer.max_steps={further}", "trainer.val_check_interval=20"
    )
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert "resuming from" in resumed.stdout + resumed.stderr


# --------------------------------------------------------------------------- Ctrl-C


def test_ctrl_c_saves_a_checkpoint_and_a_second_one_aborts(tmp_path) -> None:
    run, cache = tmp_path / "run", tmp_path / "cache"
    process = start(run, cache)
    wait_for(lambda: (run / "checkpoints" / "last.ckpt").exists(), process, "first checkpoint")
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == INTERRUPTED_EXIT_CODE, stderr[-2000:]
    assert "Traceback" not in stderr and "interrupted (Ctrl-C) after step" in stdout
    step = int(stdout.split("interrupted (Ctrl-C) after step ")[1].split(";")[0])
    assert step > 20 and stored_step(run / "checkpoints" / "last.ckpt") == step  # beyond the first save

    again = start(run, cache, "ckpt_path=auto")
    wait_for(lambda: "resuming from" in (run / "train.log").read_text(), again, "resume")
    again.send_signal(signal.SIGINT)
    time.sleep(0.5)
    again.send_signal(signal.SIGINT)
    _, stderr = again.communicate(timeout=60)  # a second Ctrl-C does not wait for a save
    assert again.returncode != 0 and "Traceback" not in stderr


def test_ctrl_c_before_training_is_one_line(tmp_path) -> None:
    process = start(tmp_path / "run", tmp_path / "cache")
    wait_for(lambda: (tmp_path / "run" / ".hydra").exists(), process, "the run folder")
    process.send_signal(signal.SIGINT)
    stdout, stderr = process.communicate(timeout=TIMEOUT)
    assert process.returncode == INTERRUPTED_EXIT_CODE and "Traceback" not in stderr, stderr[-2000:]
    assert "error: interrupted (Ctrl-C) outside training" in stderr or "after step" in stdout, stderr[-500:]


# --------------------------------------------------------------------------- summary.json


def test_summary_json_is_strict(tmp_path) -> None:
    write_json(tmp_path / "summary.json", {"loss": math.nan, "nested": [math.inf, 1.5], "step": 3})

    def refuse(constant: str) -> None:
        raise AssertionError(f"non-standard JSON constant {constant}")

    data = json.loads((tmp_path / "summary.json").read_text(), parse_constant=refuse)
    assert data == {"loss": None, "nested": [None, 1.5], "step": 3}


def test_a_run_folder_that_cannot_be_made_is_one_line(tmp_path) -> None:
    folder = "/proc/lightning_llm/run"  # no process may create anything there, root included
    line = refused_before_hydra(*TINY, f"hydra.run.dir={folder}", f"paths.cache_dir={tmp_path / 'cache'}")
    assert f"run folder {folder}: cannot create it" in line, line


def test_a_report_of_one_run_written_into_it_does_not_stop_its_next_launch(tmp_path) -> None:
    """``python -m lightning_llm.report <run>`` writes its files into the run folder by default."""
    from lightning_llm.run_folder import foreign_entries

    for name in ("report.md", "report.csv", "loss_curves.png", ".report.json", "summary.json"):
        (tmp_path / name).write_text("x")
    (tmp_path / "notes.txt").write_text("mine")
    assert foreign_entries(tmp_path) == ["notes.txt"]
