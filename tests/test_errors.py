"""Every command-line tool answers bad arguments and Ctrl-C with one line: the shared pieces, and each tool
through its real command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

from lightning_llm import errors
from lightning_llm.errors import EXIT_INTERRUPTED, ArgumentParser, ctrl_c_exits, first_line


def test_argument_errors_are_one_line_with_status_2(capsys):
    parser = ArgumentParser(prog="tool")
    parser.add_argument("--n", type=int)
    with pytest.raises(SystemExit) as exited:
        parser.parse_args(["--n", "x"])
    assert exited.value.code == 2
    assert capsys.readouterr().err == "error: argument --n: invalid int value: 'x' (see tool --help)\n"


def test_ctrl_c_in_a_main_is_one_line_and_status_130(capsys, monkeypatch):
    def exit_now(code: int):  # the real one ends the process at once (os._exit)
        raise SystemExit(code)

    monkeypatch.setattr(errors, "exit_now", exit_now)

    @ctrl_c_exits
    def main() -> int:
        raise KeyboardInterrupt

    with pytest.raises(SystemExit) as exited:
        main()
    assert exited.value.code == EXIT_INTERRUPTED == 130
    assert capsys.readouterr().err == "error: interrupted (Ctrl-C)\n"


def test_first_line():
    assert first_line(ValueError("one\ntwo")) == "one" and first_line(KeyError()) == "KeyError"


@pytest.mark.parametrize(
    ("module", "args", "expected"),
    [
        ("lightning_llm.generate", ["run", "--top-p", "1.5"], "argument --top-p: must be in (0, 1]"),
        ("lightning_llm.report", ["--metric"], "argument --metric: expected one argument"),
        ("lightning_llm.checkpoint", ["bogus"], "invalid choice: 'bogus' (choose from 'consolidate')"),
        ("lightning_llm.plugins", ["nokind"], "unknown plugin kind 'nokind'; valid kinds: tokenizer"),
    ],
    ids=["generate", "report", "checkpoint", "plugins"],
)
def test_each_tool_refuses_bad_arguments_in_one_line(module, args, expected):
    result = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: "), result.stderr
    assert expected in result.stderr and "usage:" not in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize(
    ("module", "args"),
    [
        ("evaluate", [""]),
        ("export", ["run", "--out", ""]),
        ("report", [""]),
        ("checkpoint", ["consolidate", ""]),
        ("generate", ["run", "--input", " "]),
    ],
)
def test_an_empty_path_is_refused_not_taken_as_the_current_folder(module, args, capsys):
    """An unset shell variable ($RUN) would have evaluated, reported or consolidated the current folder."""
    import importlib

    main = importlib.import_module(f"lightning_llm.{module}").main
    with pytest.raises(SystemExit) as exit_info:
        main(args)
    assert exit_info.value.code == 2
    assert "an empty path; name a file or folder" in capsys.readouterr().err


def test_a_command_path_that_cannot_be_looked_up_is_an_argument_error(tmp_path):
    """Every command's path arguments (generate, evaluate, export, report, checkpoint) go through it: a ~ of
    no user here was a RuntimeError traceback, a name over 255 bytes an OSError one (report)."""
    import argparse

    from lightning_llm.errors import path_argument

    with pytest.raises(argparse.ArgumentTypeError, match=r"^~no_user_zq/run: its ~ names no home folder"):
        path_argument("~no_user_zq/run")
    with pytest.raises(argparse.ArgumentTypeError, match=r"cannot be looked up \(File name too long\)"):
        path_argument(str(tmp_path / ("a" * 300)))
    assert path_argument(str(tmp_path / "missing")) == str(tmp_path / "missing")  # its reader says "missing"
    assert path_argument("-") == "-"  # stdin
