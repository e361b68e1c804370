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
