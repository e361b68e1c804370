"""Time to quality: the character-level baby GPT trained by the real CLI to a validation loss, timed.

    python bench/convergence.py [--steps 2000] [overrides ...]

Runs ``python -m lightning_llm experiment=gpt_tiny`` (4 layers, 4 heads, 128 wide, block 64, batch 12, AdamW
lr 1e-3 with cosine decay to 1e-4, dropout 0, character tokenizer, the embedded pydoc corpus) in a fresh
process and prints one JSON line: the validation loss over the whole val split, the fit's wall time (training
with its periodic validations and checkpoints; the test pass and the samples after it are not counted), and
steady-state tokens/s. Target (issue 6): val loss <= 1.40 in under 120 s of fit time on 2 CPU cores.
Extra arguments are passed on as overrides (e.g. ``trainer.accelerator=gpu``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

TARGET_VAL_LOSS, TARGET_SECONDS = 1.40, 120.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--steps", type=int, default=2000, help="optimizer steps")
    parser.add_argument("overrides", nargs="*", help="more config overrides")
    args = parser.parse_args()
    env = {**os.environ, "WANDB_MODE": "offline"}
    with tempfile.TemporaryDirectory() as run_dir:
        command = [
            sys.executable,
            "-m",
            "lightning_llm",
            "experiment=gpt_tiny",
            "logger=csv",
            "trainer.enable_progress_bar=false",
            f"trainer.max_steps={args.steps}",
            f"hydra.run.dir={run_dir}",
            *args.overrides,
        ]
        result = subprocess.run(command, capture_output=True, text=True, env=env)
        if result.returncode != 0:
            raise SystemExit(f"run failed:\n{result.stderr[-3000:]}")
        summary = json.loads((Path(run_dir) / "summary.json").read_text())
    print(
        json.dumps(
            {
                "bench": "convergence",
                "steps": summary["step"],
                "val_loss": round(summary["val_loss"], 4),
                "fit_seconds": summary["wall_seconds"],
                "tokens_per_second": summary["tokens_per_second"],
                "target_met": summary["val_loss"] <= TARGET_VAL_LOSS
                and summary["wall_seconds"] < TARGET_SECONDS,
                "overrides": args.overrides,
            }
        )
    )


if __name__ == "__main__":
    main()
