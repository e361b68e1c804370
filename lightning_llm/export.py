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

from lightning_llm.errors import EXIT_BAD_INPUT, ArgumentParser, ctrl_c_exits

__all__ = ["build_parser", "export", "main"]


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(
        prog="python -m lightning_llm.export",
        description="Write a run's model and tokenizer as a Hugging Face folder (safetensors). Exports: "
        "model=gpt with bias=true positions=learned mlp=gelu norm=layernorm, as GPT2LMHeadModel.",
    )
    parser.add_argument("run", help="a run folder (its latest checkpoint) or a checkpoint")
    parser.add_argument("--out", required=True, metavar="DIR", help="the folder to write (new or empty)")
    return parser


def export(run: str | Path, out: str | Path) -> Path:
    """Export the model and tokenizer of ``run`` into the Hugging Face folder ``out``; returns ``out``."""
    from lightning_llm.checkpoint import load_run
    from lightning_llm.huggingface import save_hf_folder

    model, tokenizer, config = load_run(run)
    return save_hf_folder(model, config["model"], tokenizer, Path(out).expanduser())


@ctrl_c_exits
def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        written = export(args.run, args.out)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print(written)
    return 0


if __name__ == "__main__":
    sys.exit(main())
