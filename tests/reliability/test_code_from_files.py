"""No file and no config runs code: a crafted sharded checkpoint (DCP's ``.metadata`` is a pickle) and
``_target_`` or logging factories under ``hydra.*`` are refused on every path that reads them, through the
real command lines. Each payload would create a marker file; the tests check that it never appears."""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from lightning_llm.checkpoint import DCP_METADATA, META_FILE, latest_checkpoint, read_metadata
from lightning_llm.testing import TINY, cli_command, cli_env, run_cli
from tests.reliability.test_bad_inputs import error_line, refused_before_hydra

pytestmark = pytest.mark.slow  # subprocesses or training runs: the full tier (CI)

TIMEOUT = 180
PLANTED_STEP = 10**6  # higher than any real checkpoint's: picked first by step, were it usable


class Payload:
    """Unpickling it runs ``touch <marker>``."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.fixture(scope="module")
def trained(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real 8-step run (its checkpoints are files: one process)."""
    root = tmp_path_factory.mktemp("trained")
    run_cli(run_dir=root / "run", cache_dir=root / "cache")
    return root / "run"


def plant(folder: Path, run: Path, marker: Path) -> Path:
    """A sharded checkpoint folder as FSDP writes one, claiming a huge step, whose DCP index is a payload."""
    folder.mkdir(parents=True)
    meta = dict(read_metadata(run / "checkpoints" / "last.ckpt"))
    meta.pop("state_dict", None)
    torch.save({**meta, "global_step": PLANTED_STEP}, folder / META_FILE)
    (folder / DCP_METADATA).write_bytes(pickle.dumps(Payload(marker)))
    (folder / "__0_0.distcp").write_bytes(b"")
    return folder


@pytest.fixture
def crafted(tmp_path: Path, trained: Path) -> tuple[Path, Path]:
    """A crafted checkpoint in a folder laid out as a run (a real tokenizer beside it), and its marker."""
    marker, other = tmp_path / "PWNED", tmp_path / "other"
    ckpt = plant(other / "checkpoints" / "crafted.ckpt", trained, marker)
    (other / "tokenizer.json").write_bytes((trained / "tokenizer.json").read_bytes())
    return ckpt, marker


def command(module: str, *args: str) -> subprocess.CompletedProcess:
    env = cli_env(HYDRA_FULL_ERROR="")
    return subprocess.run(
        [sys.executable, "-m", module, *args], capture_output=True, text=True, env=env, timeout=TIMEOUT
    )


def train_cli(run_dir: Path, cache: Path, *overrides: str) -> subprocess.CompletedProcess:
    env = cli_env(HYDRA_FULL_ERROR="")
    argv = cli_command(*TINY, *overrides, run_dir=run_dir, cache_dir=cache)
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=TIMEOUT)


# --------------------------------------------------------------------------- a crafted sharded checkpoint


@pytest.mark.parametrize(
    "argv",
    [
        ("lightning_llm.generate", "{ckpt}", "--prompt", "The", "--max-new-tokens", "4"),
        ("lightning_llm.checkpoint", "consolidate", "{ckpt}"),
    ],
    ids=["generate", "consolidate"],
)
def test_commands_refuse_a_crafted_sharded_checkpoint(crafted, argv) -> None:
    ckpt, marker = crafted
    line = error_line(command(*(arg.replace("{ckpt}", str(ckpt)) for arg in argv)))
    assert str(ckpt) in line and "pickled code" in line, line
    assert not marker.exists()


def test_a_sharded_checkpoint_with_a_damaged_index_is_one_line(crafted) -> None:
    ckpt, _ = crafted
    (ckpt / DCP_METADATA).write_bytes(b"\x80\x04garbage")
    line = error_line(command("lightning_llm.generate", str(ckpt), "--prompt", "The"))
    assert f"{ckpt} is not a readable sharded checkpoint: its .metadata is damaged" in line, line


@pytest.mark.parametrize(
    "overrides",
    [
        ("model.init_from={ckpt}",),
        ("ckpt_path={ckpt}",),
        ("ckpt_path={ckpt}", "trainer.strategy=fsdp", "trainer.devices=2"),
    ],
    ids=["init_from", "ckpt_path-one-device", "ckpt_path-fsdp"],
)
def test_training_refuses_a_crafted_sharded_checkpoint(crafted, tmp_path, overrides) -> None:
    ckpt, marker = crafted
    given = [override.replace("{ckpt}", str(ckpt)) for override in overrides]
    line = error_line(train_cli(tmp_path / "run", tmp_path / "cache", *given))
    assert str(ckpt) in line, line
    if "trainer.strategy=fsdp" in overrides or "model.init_from" in overrides[0]:
        assert "pickled code" in line, line
    else:  # one device cannot resume a sharded checkpoint: refused before its index is read
        assert "sharded (FSDP) checkpoint" in line and "trainer.strategy=fsdp" in line, line
    assert not marker.exists()


def test_a_planted_checkpoint_is_passed_over_by_auto_resume_and_generate(trained, tmp_path) -> None:
    """Planted in a run's checkpoints/ with the highest step, it is never read past its index: auto-resume
    and ``generate <run folder>`` warn about it by name and use the run's own latest checkpoint."""
    run = tmp_path / "run"
    subprocess.run(["cp", "-r", str(trained), str(run)], check=True)
    (run / ".lock").unlink(missing_ok=True)
    marker = tmp_path / "PWNED"
    planted = plant(run / "checkpoints" / "zzz.ckpt", trained, marker)
    assert latest_checkpoint(run / "checkpoints") == run / "checkpoints" / "last.ckpt"

    generated = command("lightning_llm.generate", str(run), "--prompt", "The", "--max-new-tokens", "4")
    assert generated.returncode == 0, generated.stderr[-2000:]
    assert f"passing over {planted}: its .metadata holds pickled code" in generated.stderr

    resumed = train_cli(run, tmp_path / "cache", "ckpt_path=auto", "trainer.max_steps=10")
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    assert f"passing over {planted}" in resumed.stdout + resumed.stderr
    assert "resuming from" in resumed.stdout + resumed.stderr
    assert not marker.exists()


# --------------------------------------------------------------------------- code named in the hydra node


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (
            ["+hydra.callbacks.x._target_=torch.load", "+hydra.callbacks.x.f={marker}"],
            "hydra.callbacks.x._target_",
        ),
        (["hydra.launcher._target_=os.system"], "hydra.launcher._target_=os.system"),
        (
            ["hydra.job_logging.handlers.console.class=logging.config.fileConfig"],
            "a log handler, formatter or filter is one of logging.StreamHandler",
        ),
        (["hydra.job_logging.handlers.console.stream=ext://os.system"], "only ext://sys.stdout"),
        (["--experimental-rerun", "{marker}"], "--experimental-rerun unpickles a file"),
        (["--config-name", "evil"], "--config-name=evil: the primary config is lightning_llm's"),
        (["-cd", "{presets}", "experiment=evil"], "hydra.callbacks.evil._target_=os.system"),
        (["data.paths=[~/corpus/*.txt]"], "cannot parse the override 'data.paths=[~/corpus/*.txt]' at '~'"),
        # What the unresolved node does not show: a resolver or a reference that builds the code later.
        (
            ["+hydra.callbacks.x='${oc.decode:\"{_target_: os.system, command: touch {marker}}\"}'"],
            "hydra.callbacks.x=${oc.decode:",
        ),
        (["-cd", "{presets}", "experiment=decoded"], "an interpolation here could bring in code"),
        (
            [
                "+hydra.job.env_set.S=ext://os.system",
                "hydra.job_logging.handlers.console.stream=${hydra.job.env_set.S}",
            ],
            "hydra.job_logging.handlers.console.stream=${hydra.job.env_set.S}: an interpolation",
        ),
        (
            ["hydra.job_logging.handlers.console.class=logging.handlers.QueueHandler"],
            "a log handler, formatter or filter is one of",
        ),
        # Code run by the job's environment or by Hydra's search path
        (
            ["+hydra.job.env_set.PYTHONPATH={presets}"],
            "hydra.job.env_set.PYTHONPATH: only the thread, device",
        ),
        (["+hydra.job.env_set.BROWSER=sh"], "hydra.job.env_set.BROWSER: only the thread, device"),
        (["hydra.searchpath=[pkg://antigravity]"], "'pkg://antigravity' is not a folder"),
        (["--cfg", "job", "hydra.searchpath=[pkg://antigravity]"], "'pkg://antigravity' is not a folder"),
        # Files Hydra writes outside the run folder
        (["hydra.output_subdir={presets}"], "hydra.output_subdir="),
        (["hydra.output_subdir=../x"], "give a relative path without '.' or '..'"),
        (["task_name=../../notes"], "task_name='../../notes': a name for the run's log file"),
        (["hydra.job_logging.handlers.file.filename={marker}"], "a log handler cannot write elsewhere"),
        (["+hydra.job_logging.handlers.file.mode=w"], "log files are appended to (mode a), never truncated"),
        # Bypasses of the above: a sweep's own hydra node, logging's setattr, other handlers, folders
        (
            ["-m", "++hydra.sweeper={params:{++hydra.job.env_set.LD_PRELOAD:{presets}/evil.so}}"],
            "hydra.sweeper.params.++hydra.job.env_set.LD_PRELOAD: a sweep varies the run's settings",
        ),
        (["++hydra.job_logging.handlers.file={.:{baseFilename:{marker}}}"], "logging's '.' (attributes set"),
        (
            ["hydra.job_logging.handlers.console.class=logging.handlers.SysLogHandler"],
            "a log handler, formatter",
        ),
        (["+hydra.job.env_set.NCCL_NET_PLUGIN={presets}/evil.so"], "hydra.job.env_set.NCCL_NET_PLUGIN: only"),
        (["-m", "hydra.sweep.dir={presets}${oc.env:HOME,''}"], "only ${now:...} may be interpolated in it"),
        (["hydra.output_subdir=."], "give a relative path without '.' or '..'"),
        (["-m", "hydra.sweep.subdir=../../x"], "hydra.sweep.subdir=../../x: each job's folder is inside"),
        (
            ["-m", "hydra/launcher=submitit_local", "hydra.launcher.submitit_folder={presets}/%j"],
            "a launcher's folders stay where it puts them",
        ),
    ],
    ids=[
        "callback",
        "launcher",
        "logging-class",
        "logging-ext",
        "rerun",
        "config-name",
        "config-dir",
        "syntax",
        "decoded-callback",
        "decoded-in-a-preset",
        "interpolated-stream",
        "queue-handler",
        "env-pythonpath",
        "env-browser",
        "searchpath-pkg",
        "searchpath-pkg-cfg",
        "output-subdir-absolute",
        "output-subdir-up",
        "task-name-path",
        "log-file-elsewhere",
        "log-file-truncated",
        "sweeper-params-hydra",
        "logging-setattr",
        "logging-network-handler",
        "env-plugin-path",
        "run-dir-interpolated",
        "output-subdir-dot",
        "sweep-subdir-up",
        "launcher-folder",
    ],
)
def test_the_hydra_node_cannot_select_code(tmp_path, overrides, expected) -> None:
    marker, presets = tmp_path / "PWNED", tmp_path / "presets"
    (presets / "experiment").mkdir(parents=True)
    (presets / "experiment" / "evil.yaml").write_text(
        f"# @package _global_\nhydra:\n  callbacks:\n    evil:\n      _target_: os.system\n"
        f"      command: touch {marker}\n"
    )
    (presets / "experiment" / "decoded.yaml").write_text(
        "# @package _global_\nhydra:\n  callbacks:\n"
        f"    x: \"${{oc.create:'{{_target_: os.system, command: touch {marker}}}'}}\"\n"
    )
    given = [arg.replace("{marker}", str(marker)).replace("{presets}", str(presets)) for arg in overrides]
    line = refused_before_hydra(*given, f"hydra.run.dir={tmp_path / 'run'}")
    assert expected in line, line
    assert not marker.exists() and not (tmp_path / "run").exists()


def test_hydras_own_launchers_are_still_chosen_by_name(tmp_path) -> None:
    result = train_cli(tmp_path / "run", tmp_path / "cache", "hydra/launcher=joblib", "trainer.max_steps=2")
    assert result.returncode == 0, result.stderr[-2000:]
