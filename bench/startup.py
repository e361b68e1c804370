"""Start-up benchmark: how long a user waits before the CLI answers, against the floor of importing torch.

    python bench/startup.py [--repeats 5]

Each command runs in a fresh Python process (as a user starts it), once untimed so the OS file cache is warm,
then ``--repeats`` timed runs; the wall time of each is reported as median and min, in seconds:

- ``help``: ``python -m lightning_llm --help`` (plugin discovery, ConfigStore, Hydra's help text);
- ``plugins``: ``python -c "import lightning_llm.plugins as p; p.load()"`` (the built-in plugins imported
  and registered, plus every installed plugin package);
- ``torch_import``: ``python -c "import torch"``, the floor: registering a plugin needs its signature, so
  torch loads, but Lightning, torchmetrics and torch._dynamo should not (``heavy_modules_loaded`` lists any
  that do after plugin discovery and the ConfigStore).

Prints one JSON line. The machine's other load shows in these numbers: compare runs taken side by side.
Numbers belong in notes, not in tests.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HEAVY = ("lightning", "torchmetrics", "torch._dynamo")
COMMANDS = {
    "help": ["-m", "lightning_llm", "--help"],
    "plugins": ["-c", "import lightning_llm.plugins as p; p.load()"],
    "torch_import": ["-c", "import torch"],
}
PROBE = (
    "import sys, lightning_llm.plugins as p; p.load(); from lightning_llm import config; "
    "config.store_schemas(); print(','.join(m for m in {heavy!r} if m in sys.modules))"
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per command (median and min)")
    return parser.parse_args()


def wall_seconds(args: list[str]) -> float:
    """Seconds from starting ``python <args>`` to its exit; a failing command stops the benchmark."""
    start = time.perf_counter()
    subprocess.run([sys.executable, *args], check=True, stdout=subprocess.DEVNULL, env=_env())
    return time.perf_counter() - start


def heavy_modules_loaded() -> list[str]:
    """The heavy modules present after plugin discovery and the ConfigStore (should be none)."""
    probe = PROBE.format(heavy=HEAVY)
    result = subprocess.run(
        [sys.executable, "-c", probe], check=True, capture_output=True, text=True, env=_env()
    )
    return [name for name in result.stdout.strip().split(",") if name]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONWARNINGS": "ignore"}


def main() -> None:
    args = parse_args()
    result: dict[str, object] = {"bench": "startup", "repeats": args.repeats}
    for name, command in COMMANDS.items():
        wall_seconds(command)  # warm-up: the OS file cache, .pyc files
        runs = [wall_seconds(command) for _ in range(args.repeats)]
        result[f"{name}_s"] = round(statistics.median(runs), 3)
        result[f"{name}_min_s"] = round(min(runs), 3)
    result["heavy_modules_loaded"] = heavy_modules_loaded()
    result["python"] = sys.version.split()[0]
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
