"""Bad input and how the command lines report it: the errors (a setting, ``ConfigError``, re-exported by
``config``; a checkpoint that exists but cannot be used, ``CheckpointError``, re-exported by ``checkpoint``),
``first_line`` of any error, an ``ArgumentParser`` whose errors are one line, and ``ctrl_c_exits`` for a
command's ``main``: every tool answers bad input and Ctrl-C with one line, never a traceback."""

import argparse
import contextlib
import functools
import itertools
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, NoReturn

__all__ = [
    "EXIT_BAD_INPUT",
    "EXIT_INTERRUPTED",
    "ArgumentParser",
    "BadInput",
    "CheckpointError",
    "ConfigError",
    "ctrl_c_exits",
    "exit_now",
    "first_line",
    "path_argument",
    "path_lookup_problem",
    "refuse",
]

EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 128 + signal.SIGINT  # as a shell reports a Ctrl-C


class ConfigError(ValueError):
    """A config value that cannot work; the message names the key and what would be valid."""


class CheckpointError(ValueError):
    """A checkpoint file that exists but cannot be used; the message names the file and the problem."""

    def __init__(self, message: str, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason or message  # the problem alone, without the file's name


class BadInput(SystemExit):
    """Exit status ``EXIT_BAD_INPUT`` for input refused before any work, as every command exits for it; its
    one line (``error: ...``) is printed by ``refuse`` and kept in ``line`` for a caller in the process."""

    def __init__(self, line: str) -> None:
        super().__init__(EXIT_BAD_INPUT)
        self.line = line


def refuse(error: BaseException | str) -> NoReturn:
    """Print ``error: <error>`` on stderr and exit with ``EXIT_BAD_INPUT`` (``BadInput``)."""
    line = f"error: {error}"
    print(line, file=sys.stderr)
    raise BadInput(line)


def first_line(error: BaseException) -> str:
    """The first line of ``error``'s message, or its type when it has none: what a one-line report shows."""
    text = str(error).strip()
    return text.splitlines()[0] if text else type(error).__name__


class ArgumentParser(argparse.ArgumentParser):
    """argparse with its usage errors as one line, ``error: <what> (see --help)``, and exit status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_BAD_INPUT, f"error: {message} (see {self.prog} --help)\n")


def path_argument(text: str) -> str:
    """argparse ``type`` of a path: an empty one (an unset shell variable) would silently mean the current
    folder or a default; one that cannot be looked up here (``path_lookup_problem``) is named."""
    if not text.strip():
        raise argparse.ArgumentTypeError("an empty path; name a file or folder")
    if problem := path_lookup_problem(text):
        raise argparse.ArgumentTypeError(f"{text}: {problem}")
    return text


def path_lookup_problem(value: str) -> str | None:
    """Why ``value`` (a path or a glob) cannot be looked up here, or None (also for a path that does not
    exist): only the part before a glob's first wildcard is looked up."""
    try:
        path = Path(value).expanduser()
    except RuntimeError:  # ~user of no user here, or ~ with neither HOME nor a passwd entry
        return "its ~ names no home folder on this machine"
    fixed = list(itertools.takewhile(lambda part: _WILDCARDS.isdisjoint(part), path.parts))
    try:
        os.stat(Path(*fixed) if fixed else ".")
    except (FileNotFoundError, NotADirectoryError):
        return None
    except OSError as error:
        return f"cannot be looked up ({error.strerror or error})"
    except ValueError:  # os.stat refuses a NUL character
        return "holds a NUL character"
    return None


_WILDCARDS = frozenset("*?[")


def ctrl_c_exits(main: Callable[..., Any], message: str = "interrupted (Ctrl-C)") -> Callable[..., Any]:
    """A command's ``main`` that answers Ctrl-C with ``error: <message>`` and status 130, not a traceback."""

    @functools.wraps(main)
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        try:
            return main(*args, **kwargs)
        except KeyboardInterrupt:
            print(f"error: {message}", file=sys.stderr)
            exit_now(EXIT_INTERRUPTED)

    return wrapped


def exit_now(code: int) -> NoReturn:
    """Flush the standard streams and end the process with ``code``. After a Ctrl-C that passed through code
    run from C (an import, such as torch's), CPython would otherwise kill itself with SIGINT at exit, even
    though the KeyboardInterrupt was caught, and the shell would see -2 instead of ``code``."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(OSError, ValueError):  # a closed pipe or stream: nothing left to save
            stream.flush()
    os._exit(code)
