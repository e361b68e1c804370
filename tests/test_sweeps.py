"""Hydra multirun: every job of a grid gets its own run folder and summary, also with jobs run in parallel
processes by the joblib launcher (whose workers start with an empty plugin registry)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import TINY


@pytest.mark.slow  # a sweep through the command line
def test_joblib_multirun_runs_every_job_in_its_own_folder(tmp_path, cache_dir):
    sweep = tmp_path / "sweep"
    command = [
        sys.executable,
        "-m",
        "lightning_llm",
        "-m",
        "hydra/launcher=joblib",
        "hydra.launcher.n_jobs=2",
        *TINY,
        "logger=csv",
        f"paths.cache_dir={cache_dir}",
        f"hydra.sweep.dir={sweep}",
        "optim=adam,adamw",
    ]
    env = {**os.environ, "WANDB_MODE": "offline"}
    result = subprocess.run(command, env=env, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    summaries = sorted(sweep.glob("*/summary.json"))
    assert [path.parent.name for path in summaries] == ["0", "1"]
    overrides = [(path.parent / ".hydra" / "overrides.yaml").read_text() for path in summaries]
    assert "optim=adam\n" in overrides[0] and "optim=adamw\n" in overrides[1]
    losses = [json.loads(path.read_text())["val_loss"] for path in summaries]
    assert all(0 < loss < 10 for loss in losses) and losses[0] != losses[1]
    # Each of Lightning's lines once per job, as the job's own lines are (Lightning gives its loggers
    # console handlers of their own, which printed every line a second time in a worker), and in train.log.
    printed = result.stdout + result.stderr
    assert printed.count("Seed set to") == 2 and printed.count("`Trainer.fit` stopped") == 2
    assert all("Seed set to" in (path.parent / "train.log").read_text() for path in summaries)


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            ["trainer.devices=4"],
            r"hydra.launcher.tasks_per_node=1, but trainer.devices=4: .* set hydra.launcher.gpus_per_node",
        ),
        (
            ["trainer.num_nodes=2"],
            r"hydra.launcher.nodes=1, but trainer.num_nodes=2: .* set hydra.launcher.nodes to 2",
        ),
        (["trainer.devices=2", "hydra.launcher.gpus_per_node=2"], None),
        (["trainer.devices=[0,1]", "hydra.launcher.gpus_per_node=2"], None),
    ],
)
def test_a_slurm_sweep_whose_jobs_cannot_run_the_trainer_is_refused_at_submission(given, expected):
    """Lightning runs one process per device and SLURM task: a job of another shape fails as it starts, after
    its wait in the queue, every job of the sweep the same way."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    from lightning_llm import cli

    sweep = ["hydra/launcher=slurm", *given, "optim.lr=1e-3,3e-4"]
    if expected is None:
        cli.precheck(sweep, multirun=True)
    else:
        with pytest.raises(cli.ConfigError, match=expected):
            cli.precheck(sweep, multirun=True)
    local = [override for override in sweep[1:] if not override.startswith("hydra.")]
    if "trainer.devices=4" not in local:  # not on SLURM: the devices are this machine's to check
        cli.precheck(local, multirun=True)


def test_a_sweep_into_a_folder_that_is_not_a_new_sweeps_is_refused_before_hydra_writes(tmp_path):
    """Hydra writes multirun.yaml and each job's .hydra/ before a job checks its folder: a sweep launched
    again into a finished one rewrote the finished jobs' record of their settings (report then listed them
    with the new ones), and a project folder given as hydra.sweep.dir was written into."""
    from tests.reliability.test_bad_inputs import refused_before_hydra

    sweep = tmp_path / "sweep"
    (sweep / "0" / ".hydra").mkdir(parents=True)
    (sweep / "0" / ".hydra" / "overrides.yaml").write_text("- optim.lr=0.001\n")
    (sweep / "0" / "summary.json").write_text('{"val_loss": 4.2}')
    (sweep / "multirun.yaml").write_text("hydra: {}\n")
    before = {path: path.read_bytes() for path in sweep.rglob("*") if path.is_file()}
    line = refused_before_hydra("-m", "optim.lr=5e-3,6e-3", f"hydra.sweep.dir={sweep}")
    assert f"hydra.sweep.dir={sweep / '0'} already holds a run" in line and "ckpt_path=auto" in line, line
    (sweep / "notes.txt").write_text("mine")
    (sweep / "src").mkdir()
    (sweep / "src" / "model.py").write_text("")
    line = refused_before_hydra("-m", "optim.lr=5e-3,6e-3", f"hydra.sweep.dir={sweep}", "ckpt_path=auto")
    assert f"hydra.sweep.dir={sweep} holds files that are not a sweep's (notes.txt, src)" in line, line
    assert {path: path.read_bytes() for path in before} == before


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (
            ["hydra.launcher.n_jobs=0"],
            "hydra.launcher.n_jobs=0: needs a whole number other than 0",
        ),  # traceback
        (["hydra.launcher.backend=nope"], "hydra.launcher.backend='nope': choose one of loky"),  # ran on loky
        (["hydra.launcher.n_jobs=abc"], "hydra.launcher.n_jobs: Value 'abc' of type 'str' could not be"),
        (
            ["hydra.launcher.n_jobss=2"],
            "did you mean hydra.launcher.n_jobs? valid in hydra.launcher: _target_",
        ),
        (["hydra/launcher=slurm", "hydra.launcher.timeout_min=-5"], "hydra.launcher.timeout_min=-5: needs a"),
    ],
)
def test_a_launcher_setting_joblib_or_slurm_would_refuse_at_submission_is_refused_first(given, expected):
    """n_jobs=0 was joblib's traceback; a bad value "no setting or group 'hydra/launcher'"."""
    from lightning_llm import cli

    if "hydra/launcher=slurm" in given:
        pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    launcher = [] if "hydra/launcher=slurm" in given else ["hydra/launcher=joblib"]
    with pytest.raises(cli.ConfigError, match=re.escape(expected)):
        cli.precheck([*launcher, *given, "optim.lr=1e-3,3e-4"], multirun=True)


def test_a_slurm_sweep_where_slurm_does_not_run_is_refused_before_hydra_writes(tmp_path):
    """submitit's own "Could not detect srun" traceback came after multirun.yaml was written."""
    pytest.importorskip("hydra_plugins.hydra_submitit_launcher")
    if shutil.which("sbatch"):
        pytest.skip("this machine runs SLURM")
    from tests.reliability.test_bad_inputs import refused_before_hydra

    line = refused_before_hydra(
        "-m", "hydra/launcher=slurm", "optim.lr=1e-3,3e-4", f"hydra.sweep.dir={tmp_path}/s"
    )
    assert "hydra/launcher=slurm submits each job with sbatch, which this machine does not have" in line
    assert not (tmp_path / "s").exists()
