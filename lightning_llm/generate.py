"""Generate text with a trained run: ``python -m lightning_llm.generate <run folder or .ckpt> [options]``.

A decoder-only model (gpt) continues each prompt by sampling (temperature, top-k, top-p; temperature 0 is
greedy) and prints every sample, samples separated by a dashed line. An encoder-decoder model translates
each input line (greedy, or beam search with --num-beams) and prints one output line per input line.
Bad input (no such run, a run without a checkpoint or tokenizer, a model that cannot generate) prints one
line on stderr and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path

import torch
from torch import nn

from lightning_llm.checkpoint import load_run
from lightning_llm.models.sampling import generate
from lightning_llm.tokenizers import Tokenizer

__all__ = ["build_parser", "is_decoder_only", "is_encoder_decoder", "main", "sample_texts", "translate"]

SAMPLE_SEPARATOR = "-" * 72  # between samples, as in a run's samples.txt
TRANSLATE_BATCH = 32  # input lines per model.generate call
EXIT_BAD_INPUT = 2
DESCRIPTION = """Generate text with a trained run (a run folder or a .ckpt file).

A gpt run continues each prompt by sampling (--temperature, --top-k, --top-p; temperature 0 is greedy),
--num-samples times, printing the samples (prompt included) separated by a dashed line; with no prompt it
samples from scratch. An encoder-decoder run translates each input line (greedy, or beam search with
--num-beams) and prints one output line per input line. Options marked gpt: or encoder-decoder: apply
to that kind of model only."""


class UsageError(ValueError):
    """An option or input that does not fit the run's model."""


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m lightning_llm.generate",
        description=DESCRIPTION,
        epilog="examples:\n"
        "  python -m lightning_llm.generate outputs/2024-01-01/12-00-00 --prompt 'The list type'\n"
        "  python -m lightning_llm.generate run/checkpoints/last.ckpt --input sources.txt --num-beams 4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "run", help="a run folder (uses checkpoints/last.ckpt, else the newest .ckpt) or a .ckpt"
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompt", help="one prompt (gpt) or one source text (encoder-decoder)")
    source.add_argument(
        "--input", metavar="FILE", help="a UTF-8 file with one prompt or source per line; '-' reads stdin"
    )
    parser.add_argument(
        "--max-new-tokens",
        metavar="N",
        type=_at_least(1),
        default=128,
        help="tokens to generate, at most the decoder's block_size for encoder-decoders (128)",
    )
    parser.add_argument(
        "--temperature",
        metavar="T",
        type=_at_least(0.0, float),
        default=0.8,
        help="gpt: softmax temperature, 0 = greedy (0.8)",
    )
    parser.add_argument(
        "--top-k", metavar="K", type=_at_least(1), default=50, help="gpt: sample from the k likeliest (50)"
    )
    parser.add_argument(
        "--top-p", metavar="P", type=_probability, default=None, help="gpt: nucleus sampling mass (off)"
    )
    parser.add_argument(
        "--seed", metavar="S", type=int, default=0, help="gpt: seed of the sampling generator (0)"
    )
    parser.add_argument(
        "--num-samples", metavar="N", type=_at_least(1), default=1, help="gpt: samples per prompt (1)"
    )
    parser.add_argument(
        "--num-beams",
        metavar="B",
        type=_at_least(1),
        default=1,
        help="encoder-decoder: beam width, 1 = greedy (1)",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="recompute the whole context at each step (no KV cache)"
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="where to run (cuda when available, else cpu)"
    )
    return parser


def _at_least(minimum: float, kind: Callable[[str], float] = int) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be >= {minimum}, got {text}")
        return value

    return parse


def _probability(text: str) -> float:
    value = _at_least(0.0, float)(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        device = _device(args.device)
        inputs = _inputs(args)
        model, tokenizer, config = load_run(args.run)
        outputs = _generate(model.to(device), tokenizer, config, inputs, args, device)
    except (FileNotFoundError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    print("\n".join(outputs), flush=True)
    return 0


def _device(name: str | None) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu")
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def _inputs(args: argparse.Namespace) -> list[str] | None:
    """The prompts or sources, one per line; None when neither --prompt nor --input was given."""
    if args.prompt is not None:
        return [args.prompt]
    if args.input is None:
        return None
    if args.input == "-":
        lines = sys.stdin.read().splitlines()
    else:
        path = Path(args.input).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"--input {args.input}: no such file")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise UsageError(f"--input {args.input}: not UTF-8 text") from None
    if not lines:
        raise UsageError(f"--input {args.input}: holds no lines")
    return lines


def _generate(
    model: nn.Module,
    tokenizer: Tokenizer,
    config: dict,
    inputs: list[str] | None,
    args: argparse.Namespace,
    device: torch.device,
) -> list[str]:
    """The lines to print: translations, or the samples of a gpt run."""
    name = config["model"]["name"]
    if is_encoder_decoder(model):
        if inputs is None:
            raise UsageError(f"model '{name}' translates input text: pass --prompt TEXT or --input FILE")
        if args.num_samples > 1:
            raise UsageError(
                "--num-samples applies to decoder-only models; this one decodes deterministically"
            )
        outputs = translate(
            model,
            tokenizer,
            inputs,
            args.max_new_tokens,
            args.num_beams,
            max_source_len=_source_limit(model, config),
            use_cache=not args.no_cache,
        )
        return [output.replace("\n", " ") for output in outputs]  # keep one output line per input line
    if is_decoder_only(model):
        if args.num_beams > 1:
            raise UsageError("--num-beams applies to encoder-decoder models; a gpt run samples instead")
        generator = torch.Generator(device=device).manual_seed(args.seed)
        samples = sample_texts(
            model,
            tokenizer,
            inputs if inputs is not None else [""],
            max_new_tokens=args.max_new_tokens,
            temperature=args.temperature,
            top_k=args.top_k,
            top_p=args.top_p,
            num_samples=args.num_samples,
            generator=generator,
            use_cache=not args.no_cache,
        )
        return [f"\n{SAMPLE_SEPARATOR}\n".join(samples)]
    raise UsageError(
        f"model '{name}' does not generate text (supported objectives: "
        f"{', '.join(getattr(model, 'objectives', ())) or 'none'}); use a gpt or encoder-decoder run"
    )


def _source_limit(model: nn.Module, config: dict) -> int:
    """Sources are cut as in training: to the run's data.block_size, and never past the model's."""
    trained = config.get("data", {}).get("block_size")
    return min(model.config.block_size, trained) if isinstance(trained, int) else model.config.block_size


# --------------------------------------------------------------------------- generation


def is_encoder_decoder(model: nn.Module) -> bool:
    return callable(getattr(model, "generate", None)) and callable(getattr(model, "encode", None))


def is_decoder_only(model: nn.Module) -> bool:
    return "causal_lm" in getattr(model, "objectives", ())


def sample_texts(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompts: list[str],
    *,
    max_new_tokens: int,
    temperature: float = 0.8,
    top_k: int | None = 50,
    top_p: float | None = None,
    num_samples: int = 1,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> list[str]:
    """``num_samples`` continuations of each prompt (prompt included), in prompt order."""
    device = next(model.parameters()).device
    texts = []
    for prompt in prompts:
        # An empty prompt starts after eos: the boundary the model saw before every training document.
        ids = tokenizer.encode(prompt) if prompt else [tokenizer.eos_id]
        start = torch.tensor([ids] * num_samples, dtype=torch.long, device=device)  # (num_samples, T)
        out = generate(
            model,
            start,
            max_new_tokens,
            temperature,
            top_k,
            top_p,
            generator,
            use_cache=use_cache,
            eos_id=None,
        )
        texts.extend(tokenizer.decode(row.tolist()) for row in out)
    return texts


@torch.no_grad()
def translate(
    model: nn.Module,
    tokenizer: Tokenizer,
    lines: list[str],
    max_new_tokens: int,
    num_beams: int = 1,
    *,
    max_source_len: int,
    use_cache: bool = True,
    batch_size: int = TRANSLATE_BATCH,
) -> list[str]:
    """One output per line of ``lines``; a blank line gives an empty output without running the model.
    At most the decoder's block_size tokens are generated, and sources are cut to ``max_source_len``."""
    max_new_tokens = min(max_new_tokens, model.config.block_size)
    device = next(model.parameters()).device
    outputs = [""] * len(lines)
    todo = [index for index, line in enumerate(lines) if line.strip()]
    for first in range(0, len(todo), batch_size):
        indices = todo[first : first + batch_size]
        sources = [tokenizer.encode(lines[index])[:max_source_len] for index in indices]
        input_ids, attention_mask = _pad(sources, tokenizer.pad_id, device)
        generated = model.generate(
            input_ids,
            attention_mask,
            max_new_tokens,
            tokenizer.bos_id,
            tokenizer.eos_id,
            num_beams=num_beams,
            use_cache=use_cache,
        )
        rows = generated.tolist() if isinstance(generated, torch.Tensor) else generated
        for index, row in zip(indices, rows, strict=True):
            outputs[index] = tokenizer.decode(_until_eos(row, tokenizer.bos_id, tokenizer.eos_id))
    return outputs


def _pad(sequences: list[list[int]], pad_id: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids (B, S) and the mask of real tokens (B, S)."""
    length = max(len(ids) for ids in sequences)
    input_ids = torch.full((len(sequences), length), pad_id, dtype=torch.long)
    for row, ids in enumerate(sequences):
        input_ids[row, : len(ids)] = torch.tensor(ids, dtype=torch.long)
    lengths = torch.tensor([len(ids) for ids in sequences])
    attention_mask = torch.arange(length) < lengths[:, None]
    return input_ids.to(device), attention_mask.to(device)


def _until_eos(ids: list[int], bos_id: int, eos_id: int) -> list[int]:
    """The generated tokens: a leading bos dropped, everything from the first eos on cut (the model may
    return them with or without bos and eos)."""
    if ids and ids[0] == bos_id:
        ids = ids[1:]
    return ids[: ids.index(eos_id)] if eos_id in ids else ids


if __name__ == "__main__":
    raise SystemExit(main())
