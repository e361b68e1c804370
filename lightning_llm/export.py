"""``python -m lightning_llm.export <run folder | .ckpt> --out <dir>``: a model as a Hugging Face folder.

The folder (config.json, model.safetensors, tokenizer.json, tokenizer_config.json) loads with
``transformers``' ``AutoModelForCausalLM.from_pretrained`` and ``AutoTokenizer.from_pretrained`` with no
missing or unexpected weight, and gives the same logits. Only a model whose options all have a counterpart
in the target architecture exports (``lightning_llm.huggingface``); another is refused in one line naming
the option. Bad input prints one line on stderr and exits with status 2.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lightning_llm.errors import EXIT_BAD_INPUT, ArgumentParser, ctrl_c_exits, path_argument

__all__ = ["build_parser", "export", "main"]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m lightning_llm.export",
        description="Write a run's model and tokenizer as a Hugging Face folder (safetensors): a faithful "
        "gpt as GPT2LMHeadModel, encoder as BertForMaskedLM or BertForPreTraining, decoder as MarianMTModel.",
    )
    parser.add_argument(
        "run", type=path_argument, help="a run folder (its latest checkpoint) or a checkpoint"
    )
    parser.add_argument(
        "--out", required=True, type=path_argument, metavar="DIR", help="the folder to write (new or empty)"
    )
    parser.add_argument(
        "--merge-lora",
        action="store_true",
        help="fold a LoRA run's adapters into the weights (transformers' models have no place for them)",
    )
    return parser


def export(run: str | Path, out: str | Path, merge_lora: bool = False) -> Path:
    """Export the model and tokenizer of ``run`` into the Hugging Face folder ``out``; returns ``out``. A LoRA
    run's adapters are folded into the weights with ``merge_lora`` (and it is refused without)."""
    from lightning_llm.checkpoint import check_output_parents, load_run
    from lightning_llm.config import lora_settings
    from lightning_llm.huggingface import save_hf_folder

    check_output_parents(out, "--out")  # before loading the run: the folder cannot be made
    model, tokenizer, config = load_run(run)  # a LoRA run's weights come merged
    node = dict(config["model"])
    if refusal := _export_refusal(config.get("objective")):
        raise ValueError(f"{run} was trained with objective={config['objective']['name']}: {refusal}")
    if lora_settings(node).rank and not merge_lora:
        raise ValueError(
            f"{run} was trained with LoRA adapters (model.lora.rank={lora_settings(node).rank}); pass "
            "--merge-lora to fold them into the exported weights"
        )
    if merge_lora and not lora_settings(node).rank:  # a flag that would do nothing: a mistaken run?
        raise ValueError(f"--merge-lora: {run} has no LoRA adapters (model.lora.rank=0); leave it out")
    node.pop("lora", None)
    node.pop("init_from", None)
    _check_not_in_a_run(Path(out).expanduser())
    try:
        return save_hf_folder(model, node, tokenizer, Path(out).expanduser())
    except OSError as error:  # a folder that cannot be made or written: say which option
        raise OSError(f"--out {out}: {error.strerror or error}") from None


def _check_not_in_a_run(out: Path) -> None:
    """A run folder holds what its runs write; a folder exported into it would stop its next launch (a run
    folder holding files no run writes is refused, so that nothing of the user's is overwritten)."""
    from lightning_llm.checkpoint import enclosing_run

    if (run := enclosing_run(out)) is not None:
        raise ValueError(f"--out {out} is inside the run folder {run}, which then could not be resumed")


def _export_refusal(objective: dict[str, Any] | None) -> str | None:
    """The reason the run's objective declares for refusing an export (``export_refusal``), if any."""
    from lightning_llm import plugins, registry

    plugins.load()
    name = (objective or {}).get("name")
    if not name or name not in registry.names("objective"):
        return None  # a run of an objective no longer installed: its heads are checked by the exporter
    return getattr(registry.get("objective", name).product(), "export_refusal", None)


@ctrl_c_exits
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        written = export(args.run, args.out, args.merge_lora)
    except (OSError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
