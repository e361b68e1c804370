"""The README's commands, as written: its first block is the two commands (set up and train; the tests), CI
runs the second, every training command in it is a valid config, the plugin listings run, and the first
command trains (with tiny overrides)."""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from lightning_llm import cli

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
MAIN = "python -m lightning_llm "


def shell_lines() -> list[str]:
    """Every command line of the README's bash blocks, continuation lines joined."""
    lines = []
    for block in re.findall(r"```bash\n(.*?)```", README, re.S):
        joined = re.sub(r"\\\n\s*", " ", block)
        lines += [line.strip() for line in joined.splitlines() if line.strip()]
    return lines


def arguments(line: str, command: str) -> list[str]:
    return shlex.split(line.split(command, 1)[1], comments=True)


def test_the_first_block_is_the_two_commands_and_ci_runs_the_second():
    first = re.search(r"```bash\n(.*?)```", README, re.S).group(1).strip().splitlines()
    assert first == [
        "bash .ci/in-venv python -m lightning_llm model=gpt optim=adam",
        "bash .ci/in-venv python -m pytest -q -n auto --dist loadscope",
    ]
    assert first[1] in (ROOT / ".ci" / "run").read_text().splitlines()


def training_commands() -> list[str]:
    """The README's ``python -m lightning_llm`` lines that name no placeholder (``<run>``, ``...``)."""
    return [
        line for line in shell_lines() if MAIN in line and not any(mark in line for mark in ("<", "...", "$"))
    ]


@pytest.mark.parametrize("line", training_commands())
def test_every_training_command_is_a_valid_config(line):
    """Composed and checked as the CLI does before any work (plugins, keys, values, the sweep's jobs)."""
    args = arguments(line, MAIN)
    overrides = [arg for arg in args if arg != "-m"]
    cli.parse_overrides(overrides)
    cli.precheck([*overrides, *cli.plugin_defaults(overrides)], multirun="-m" in args)


def test_the_readme_names_enough_commands_to_mean_something():
    assert len(training_commands()) >= 20


@pytest.mark.parametrize(
    "line", [line for line in shell_lines() if "python -m lightning_llm.plugins" in line]
)
def test_the_plugin_listings_run(line, capsys):
    from lightning_llm import plugins

    assert plugins.main(arguments(line, "python -m lightning_llm.plugins")) == 0
    assert capsys.readouterr().out


@pytest.mark.slow
def test_the_first_command_trains(tmp_path, cache_dir):
    """The README's main job, shrunk by the tests' TINY overrides, through the real command line."""
    from lightning_llm.testing import run_cli

    first = shell_lines()[0]
    summary = run_cli(*arguments(first, MAIN), run_dir=tmp_path / "run", cache_dir=cache_dir)
    assert summary["step"] == 8 and summary["val_loss"] > 0
