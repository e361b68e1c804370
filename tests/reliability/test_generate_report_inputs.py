"""generate and report through their real command lines.

Refused input gets one ``error:`` line (the last of stderr, no traceback); a Ctrl-C keeps the streamed text
and exits 130; a corrupt run folder is skipped with one warning line; odd metric values are printed, not
crashed on.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lightning_llm.testing import cli_env
from tests.test_checkpoint import make_run
from tests.test_report import summary, train_row, val_row, write_run

pytestmark = pytest.mark.slow  # subprocesses or training runs: the full tier (CI)

TIMEOUT = 120


def command(module: str, *args: str | Path) -> list[str]:
    return [sys.executable, "-m", f"lightning_llm.{module}", *map(str, args)]


def run(module: str, *args: str | Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        command(module, *args), capture_output=True, text=True, env=cli_env(), timeout=TIMEOUT
    )


def last_line(result: subprocess.CompletedProcess, status: int) -> str:
    """The last stderr line, after checking the exit status and that no traceback was printed."""
    assert result.returncode == status, result.stderr[-3000:]
    assert "Traceback" not in result.stderr, result.stderr[-3000:]
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert lines, "nothing on stderr"
    return lines[-1]


@pytest.fixture
def gpt_run(tmp_path: Path) -> Path:
    return make_run(tmp_path / "gpt")[0]  # a char tokenizer trained on plain ASCII text, block_size 32


# --------------------------------------------------------------------------- generate


def test_a_prompt_with_characters_the_tokenizer_never_saw_is_refused(gpt_run):
    result = run("generate", gpt_run, "--prompt", "h\u00e9llo")
    line = last_line(result, 2)
    assert line.startswith("error: --prompt has characters the run's tokenizer never saw: '\u00e9' (U+00E9);")
    assert result.stdout == ""


def test_an_input_line_with_such_characters_is_named(gpt_run, tmp_path):
    (tmp_path / "prompts.txt").write_text("the fox\nthe lazy dog\n\u00fcber\n", encoding="utf-8")
    line = last_line(run("generate", gpt_run, "--input", tmp_path / "prompts.txt"), 2)
    assert line.startswith(f"error: --input {tmp_path / 'prompts.txt'} line 3 has characters")
    assert "'\u00fc' (U+00FC)" in line


def test_too_many_new_tokens_is_refused_at_once(gpt_run):
    result = run("generate", gpt_run, "--prompt", "the", "--max-new-tokens", "1000000000")
    line = last_line(result, 2)
    assert line == (
        "error: --max-new-tokens 1000000000: must be from 1 to 10000 for this gpt run "
        "(the cap on one generation)"
    )
    assert result.stdout == ""


def read_until(process: subprocess.Popen, enough: int, deadline: float) -> bytes:
    """Bytes from the process's stdout as they come, until there are more than ``enough`` of them."""
    received = b""
    while len(received) <= enough:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"no streamed output in time: {received!r}"
        ready, _, _ = select.select([process.stdout], [], [], remaining)
        if ready:
            chunk = os.read(process.stdout.fileno(), 4096)
            assert chunk, f"stdout closed early: {received!r} {process.stderr.read()!r}"
            received += chunk
    return received


def test_ctrl_c_keeps_the_streamed_text_and_exits_130(gpt_run):
    process = subprocess.Popen(
        command("generate", gpt_run, "--prompt", "the", "--max-new-tokens", "10000"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=cli_env(),
    )
    try:
        streamed = read_until(process, len("the") + 5, time.monotonic() + TIMEOUT)  # generated text arrived
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=TIMEOUT)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    result = subprocess.CompletedProcess(process.args, process.returncode, out.decode(), err.decode())
    assert last_line(result, 130) == "interrupted"
    assert (streamed + out).startswith(b"the") and streamed + out != b"the\n"
    assert out.endswith(b"\n")  # the line was ended


# --------------------------------------------------------------------------- report


def good_run(folder: Path, lr: str, val_loss: float | None) -> Path:
    rows = [train_row(4, 4.0), val_row(4, 3.5), train_row(9, 3.0), val_row(9, 2.5)]
    return write_run(folder, ["seed=1", f"optim.lr={lr}"], summary(val_loss, 1000.0, 2.0), [rows])


def test_a_corrupt_run_folder_is_skipped_with_one_warning(tmp_path):
    good_run(tmp_path / "sweep" / "0", "0.001", 2.5)
    bad = good_run(tmp_path / "sweep" / "1", "0.002", 2.0)
    (bad / "summary.json").write_text('{"val_loss": ')
    result = run("report", tmp_path / "sweep")
    line = last_line(result, 0)
    assert line.startswith(f"warning: {bad}: summary.json: not readable as JSON")
    assert line.endswith("; skipped this run") and result.stderr.count("\n") == 1
    assert "1 runs, sorted by val_loss" in result.stdout


def test_no_readable_run_left_is_an_error(tmp_path):
    bad = good_run(tmp_path / "sweep" / "0", "0.001", 2.5)
    (bad / ".hydra" / "overrides.yaml").write_text("- [unclosed\n")
    line = last_line(run("report", tmp_path / "sweep"), 2)
    assert line == "error: no run left to report: all 1 found were skipped (see the warnings)"


def test_nan_infinity_and_null_metrics_are_reported(tmp_path):
    for name, val_loss in (("0", float("nan")), ("1", 2.0), ("2", None), ("3", float("inf"))):
        good_run(tmp_path / "sweep" / name, f"0.00{name}", val_loss)  # json writes NaN, Infinity, null
    assert "NaN" in (tmp_path / "sweep" / "0" / "summary.json").read_text()
    result = run("report", tmp_path / "sweep")
    assert (result.returncode, result.stderr) == (0, "")
    table = result.stdout.splitlines()[4:8]  # after the title, the common overrides, a blank line, the header
    assert [(line.split()[0], line.split()[3]) for line in table] == [
        ("1", "2.0000"),
        ("0", "nan"),
        ("2", "-"),
        ("3", "inf"),
    ]
