"""The Ctrl-C handler around ``trainer.fit``: installed for the run, the previous one back afterwards, and not
installed at all in a process that was started with Ctrl-C ignored."""

from __future__ import annotations

import signal
from collections.abc import Iterator

import pytest

from lightning_llm.callbacks.preemption import Preemption


@pytest.fixture
def sigint_restored() -> Iterator[None]:
    before = signal.getsignal(signal.SIGINT)
    yield
    signal.signal(signal.SIGINT, before)


def test_ctrl_c_asks_for_a_checkpoint_during_fit_only(tmp_path, sigint_restored) -> None:
    signal.signal(signal.SIGINT, signal.default_int_handler)
    preemption = Preemption(tmp_path / "last.ckpt")
    with preemption.stops_with_a_checkpoint(tmp_path):
        assert signal.getsignal(signal.SIGINT) == preemption._on_sigint
        signal.raise_signal(signal.SIGINT)  # the first Ctrl-C only asks
        assert preemption.interrupted
        with pytest.raises(KeyboardInterrupt):  # the second aborts
            signal.raise_signal(signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_process_started_with_ctrl_c_ignored_keeps_ignoring_it(tmp_path, sigint_restored) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # as a non-interactive shell starts `cmd &`
    preemption = Preemption(tmp_path / "last.ckpt")
    with preemption.stops_with_a_checkpoint(tmp_path):
        assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
        signal.raise_signal(signal.SIGINT)
    assert not preemption.interrupted and signal.getsignal(signal.SIGINT) is signal.SIG_IGN


@pytest.mark.parametrize("environment", [{"SLURM_JOB_ID": "42"}, {"SLURM_ARRAY_JOB_ID": "42"}, {}])
def test_a_requeue_that_cannot_happen_is_a_warning_not_a_traceback(
    environment, monkeypatch, tmp_path, caplog
):
    """No ``scontrol`` on PATH (a container without SLURM's tools), or no job id (an array job's task id
    missing): the SIGTERM checkpoint is written, and the requeue's failure is said in one warning."""
    from lightning_llm.callbacks.preemption import requeue_slurm_job

    for name in ("SLURM_JOB_ID", "SLURM_ARRAY_JOB_ID", "SLURM_ARRAY_TASK_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PATH", str(tmp_path))  # no scontrol
    requeue_slurm_job()
    assert (
        "cannot requeue the SLURM job" in caplog.text
        and "resubmit the job with ckpt_path=auto" in caplog.text
    )
