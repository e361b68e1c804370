"""Generate text with a trained run: ``python -m lightning_llm.generate <run folder or .ckpt> [options]``.

A decoder-only model (gpt) continues each prompt by sampling (temperature, top-k, top-p; temperature 0 is
greedy) and prints every sample, samples separated by a dashed line. An encoder-decoder model translates
each input line (greedy, or beam search with --num-beams) and prints one output line per input line.
One gpt sample at a time is printed as it is generated. Bad input (no such run, a run without a checkpoint
or tokenizer, a model that cannot generate, text the run's tokenizer cannot represent, too many new tokens)
prints one line on stderr and exits with status 2; Ctrl-C keeps what was printed and exits with 130.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from lightning_llm.errors import EXIT_BAD_INPUT, EXIT_INTERRUPTED, ArgumentParser, exit_now, path_argument

try:  # Ctrl-C while torch loads (a second or two) is Ctrl-C too: no traceback
    import torch
    from torch import nn

    from lightning_llm.checkpoint import load_run
    from lightning_llm.models.sampling import generate, left_pad
    from lightning_llm.tokenizers import Tokenizer
except KeyboardInterrupt:
    if __name__ != "__main__":
        raise
    print("interrupted", file=sys.stderr, flush=True)
    exit_now(EXIT_INTERRUPTED)

__all__ = [
    "TextStream",
    "build_parser",
    "is_decoder_only",
    "is_encoder_decoder",
    "main",
    "new_tokens_limit",
    "sample_texts",
    "translate",
    "unrepresentable",
]

SAMPLE_SEPARATOR = "-" * 72  # between samples, as in a run's samples.txt
TRANSLATE_BATCH = 32  # input lines per model.generate call
DEFAULT_NEW_TOKENS = 128  # lowered to an encoder-decoder's block_size when that is smaller
# gpt: sampling slides the context window past block_size, so only a sane cap (or block_size if larger)
MAX_NEW_TOKENS = 10_000
FULL_DECODES = 512  # streaming re-decodes the whole text at most every len(ids) // FULL_DECODES tokens
SHOWN_CHARACTERS = 5  # unrepresentable characters named in the error line
# Generated as one batch: rows of logits and cache. Larger is a mistake, not a use (loop in a script).
MAX_SAMPLES, MAX_BATCH, MAX_BEAMS = 1024, 1024, 64
# What an option left unset means; unset, an option that does not apply to the model or mode goes unnoticed,
# given, it is refused (``_check_options``).
DEFAULTS = {
    "temperature": 0.8,
    "top_k": 50,
    "top_p": None,
    "seed": 0,
    "num_samples": 1,
    "batch_size": 1,
    "num_beams": 1,
}
# A prompt's characters: the model sees at most block_size tokens of it, and checking it costs ~250 bytes a
# character.
MAX_PROMPT_CHARS = 2**20
DESCRIPTION = """Generate text with a trained run (a run folder or a .ckpt file).

A gpt run continues each prompt by sampling (--temperature, --top-k, --top-p; temperature 0 is greedy),
--num-samples times, printing the samples (prompt included) separated by a dashed line; with no prompt it
samples from scratch. One sample per prompt prints as it is generated; Ctrl-C stops there, keeping what
was printed (exit status 130). An encoder-decoder run translates each input line (greedy, or beam search
with --num-beams) and prints one output line per input line. Prompts and sources must be text the run's
tokenizer can encode. Options marked gpt: or encoder-decoder: apply to that kind of model only."""


class UsageError(ValueError):
    """An option or input that does not fit the run's model."""


# --------------------------------------------------------------------------- command line


def build_parser() -> argparse.ArgumentParser:
    parser = ArgumentParser(
        prog="python -m lightning_llm.generate",
        description=DESCRIPTION,
        epilog="examples:\n"
        "  python -m lightning_llm.generate outputs/2024-01-01/12-00-00 --prompt 'The list type'\n"
        "  python -m lightning_llm.generate run/checkpoints/last.ckpt --input sources.txt --num-beams 4",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "run",
        type=path_argument,
        help="a run folder (uses checkpoints/last.ckpt, else the newest .ckpt), a .ckpt, or a Hugging Face "
        "model folder",
    )
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--prompt", help="one prompt (gpt) or one source text (encoder-decoder)")
    source.add_argument(
        "--input",
        type=path_argument,
        metavar="FILE",
        help="a UTF-8 file with one prompt or source per line; '-' reads stdin",
    )
    parser.add_argument(
        "--max-new-tokens",
        metavar="N",
        type=_at_least(1),
        default=None,
        help=f"tokens to generate ({DEFAULT_NEW_TOKENS}); gpt: at most {MAX_NEW_TOKENS} (or the model's "
        "block_size if larger: the context window slides along), encoder-decoder: at most the decoder's "
        "block_size",
    )
    parser.add_argument(
        "--temperature",
        metavar="T",
        type=_at_least(0.0, float),
        default=None,
        help=f"gpt: softmax temperature, 0 = greedy ({DEFAULTS['temperature']})",
    )
    parser.add_argument(
        "--top-k",
        metavar="K",
        type=_at_least(1),
        default=None,
        help=f"gpt: sample from the k likeliest ({DEFAULTS['top_k']})",
    )
    parser.add_argument(
        "--top-p", metavar="P", type=_probability, default=None, help="gpt: nucleus sampling mass (off)"
    )
    parser.add_argument(
        "--seed",
        metavar="S",
        type=_at_least(-(2**63), maximum=2**64 - 1),
        default=None,
        help=f"gpt: seed of the sampling generator ({DEFAULTS['seed']})",
    )
    parser.add_argument(
        "--num-samples",
        metavar="N",
        type=_at_least(1, maximum=MAX_SAMPLES),
        default=None,
        help=f"gpt: samples per prompt, generated as one batch ({DEFAULTS['num_samples']}; at most "
        f"{MAX_SAMPLES})",
    )
    parser.add_argument(
        "--batch-size",
        metavar="N",
        type=_at_least(1, maximum=MAX_BATCH),
        default=None,
        help="gpt: generate N prompts of --input at once, left-padded (several times the tokens/s; the "
        "greedy text is the same, samples use the random draws differently), printed as each batch ends; "
        f"1 streams each prompt as it is generated ({DEFAULTS['batch_size']}; at most {MAX_BATCH}; not with "
        "--num-samples over 1)",
    )
    parser.add_argument(
        "--num-beams",
        metavar="B",
        type=_at_least(1, maximum=MAX_BEAMS),
        default=None,
        help=f"encoder-decoder: beam width, 1 = greedy ({DEFAULTS['num_beams']}; at most {MAX_BEAMS})",
    )
    parser.add_argument(
        "--no-cache", action="store_true", help="recompute the whole context at each step (no KV cache)"
    )
    parser.add_argument(
        "--tokenizer",
        metavar="FILE",
        type=path_argument,
        default=None,
        help="a tokenizer.json for a Hugging Face folder or a checkpoint file that has none beside it (a run "
        "keeps its own; a checkpoint's is checked against the fingerprint it records)",
    )
    parser.add_argument(
        "--device", choices=("cpu", "cuda"), default=None, help="where to run (cuda when available, else cpu)"
    )
    return parser


def _at_least(
    minimum: float, kind: Callable[[str], float] = int, maximum: float = math.inf
) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {kind.__name__}, got {text!r}") from None
        if not math.isfinite(value) or value < minimum:  # nan compares false with everything
            raise argparse.ArgumentTypeError(f"must be a finite number >= {minimum}, got {text}")
        if value > maximum:
            raise argparse.ArgumentTypeError(f"must be at most {maximum}, got {text}")
        return value

    return parse


def _probability(text: str) -> float:
    value = _at_least(0.0, float)(text)
    if not 0.0 < value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be in (0, 1], got {text}")
    return value


def main(argv: Sequence[str] | None = None) -> int:
    out = Output()
    try:
        return _run(build_parser().parse_args(argv), out)
    except KeyboardInterrupt:  # keep what was printed, end its line, and say why it stopped
        out.end_line()
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _run(args: argparse.Namespace, out: Output) -> int:
    try:
        device = _device(args.device)
        inputs = _inputs(args)
        model, tokenizer, config = load_run(args.run, args.tokenizer)
        _check_finite(model, args.run)
        _check_representable(tokenizer, inputs, args)
        _generate(model.to(device), tokenizer, config, inputs, args, device, out)
    except (OSError, ValueError) as error:
        out.end_line()
        print(f"error: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return 0


def _check_finite(model: nn.Module, source: str) -> None:
    """A model with NaN or infinite weights (a run that diverged) samples from NaN probabilities: say so."""
    for name, tensor in model.state_dict().items():
        if tensor.is_floating_point() and not bool(torch.isfinite(tensor).all()):
            raise ValueError(
                f"{source}: its weight {name} holds NaN or infinite values (a run that diverged?); nothing "
                "can be generated from it"
            )


class Output:
    """stdout, flushed at every write (so a stream shows as it comes), knowing whether a line is open."""

    def __init__(self) -> None:
        self.line_open = False

    def write(self, text: str) -> None:
        if text:
            sys.stdout.write(text)
            sys.stdout.flush()
            self.line_open = not text.endswith("\n")

    def end_line(self) -> None:
        if self.line_open:
            self.write("\n")


def _device(name: str | None) -> torch.device:
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("--device cuda: no CUDA device is available here; use --device cpu")
    return torch.device(name or ("cuda" if torch.cuda.is_available() else "cpu"))


def _inputs(args: argparse.Namespace) -> list[str] | None:
    """The prompts or sources, one per line; None when neither --prompt nor --input was given."""
    if args.input is None and args.prompt is None:
        return None
    if args.prompt is not None:
        lines = [args.prompt]
    elif args.input == "-":
        lines = sys.stdin.read().splitlines()
    else:
        from lightning_llm.data.sources import not_a_file

        path = Path(args.input).expanduser()
        if path.is_dir():
            raise UsageError(f"--input {args.input}: a folder; name a text file with one input per line")
        if not path.is_file():  # nothing, a dangling link, or a device such as /dev/null: no file of lines
            raise FileNotFoundError(f"--input {args.input}: {not_a_file(path)}")
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except UnicodeDecodeError:
            raise UsageError(f"--input {args.input}: not UTF-8 text") from None
    if not lines:
        raise UsageError(f"--input {args.input}: holds no lines")
    for number, line in enumerate(lines, 1):
        where = "--prompt" if args.prompt is not None else f"--input {args.input} line {number}"
        if len(line) > MAX_PROMPT_CHARS:
            raise UsageError(
                f"{where}: {len(line):,} characters, more than {MAX_PROMPT_CHARS:,}; the model sees at most "
                "its block_size tokens of a prompt, so give its end"
            )
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # bytes that are not UTF-8, decoded by Python as lone surrogates
            raise UsageError(f"{where}: not UTF-8 text") from None
    return lines


def _check_representable(tokenizer: Tokenizer, inputs: list[str] | None, args: argparse.Namespace) -> None:
    """Refuse text the tokenizer would silently drop, naming the characters (and the first line of a file
    with some)."""
    bad = [
        (number, chars)
        for number, text in enumerate(inputs or [], 1)
        if (chars := unrepresentable(tokenizer, text))
    ]
    if not bad:
        return
    number, chars = bad[0]
    where = "--prompt" if args.prompt is not None else f"--input {args.input} line {number}"
    more = f" (and {len(bad) - 1} more lines)" if len(bad) > 1 else ""
    raise UsageError(
        f"{where} has characters the run's tokenizer never saw: {_describe(chars)}{more}; remove them, or "
        "use a run whose tokenizer covers them (byte_bpe covers all text)"
    )


def _describe(chars: list[str]) -> str:
    named = ", ".join(f"{char!r} (U+{ord(char):04X})" for char in chars[:SHOWN_CHARACTERS])
    return named + (f" and {len(chars) - SHOWN_CHARACTERS} more" if len(chars) > SHOWN_CHARACTERS else "")


def _generate(
    model: nn.Module,
    tokenizer: Tokenizer,
    config: dict,
    inputs: list[str] | None,
    args: argparse.Namespace,
    device: torch.device,
    out: Output,
) -> None:
    """Print the translations, or the samples of a gpt run."""
    name = config["model"]["name"]
    if is_encoder_decoder(model):
        if inputs is None:
            raise UsageError(f"model '{name}' translates input text: pass --prompt TEXT or --input FILE")
        _check_options(args, "encoder-decoder")
        args = _with_defaults(args)
        outputs = translate(
            model,
            tokenizer,
            inputs,
            _new_tokens(args.max_new_tokens, model, "encoder-decoder"),
            args.num_beams,
            max_source_len=_source_limit(model, config),
            use_cache=not args.no_cache,
        )
        out.write("".join(output.replace("\n", " ") + "\n" for output in outputs))  # a line per input line
    elif is_decoder_only(model):
        _check_options(args, "gpt")
        args = _with_defaults(args)
        _print_samples(model, tokenizer, inputs if inputs is not None else [""], args, device, out)
    else:
        raise UsageError(
            f"model '{name}' does not generate text (supported objectives: "
            f"{', '.join(getattr(model, 'objectives', ())) or 'none'}); use a gpt or encoder-decoder run"
        )


# The options only a gpt run uses, and why each kind ignores the other's
_GPT_ONLY = ("temperature", "top_k", "top_p", "seed", "num_samples", "batch_size")
_IGNORED_BY = {
    "encoder-decoder": "it translates deterministically (greedy, or beam search with --num-beams)",
    "gpt": "it samples (--temperature, --top-k, --top-p); beam search is for encoder-decoder runs",
}


def _check_options(args: argparse.Namespace, kind: str) -> None:
    """Refuse an option given for a kind of model or a mode that would not use it: left in silence, a user
    believes it did something."""
    given = [name for name in DEFAULTS if getattr(args, name) is not None]
    mine = _GPT_ONLY if kind == "gpt" else ("num_beams",)
    for name in given:
        if name not in mine:
            raise UsageError(f"{_flag(name)} does not apply to this {kind} run: {_IGNORED_BY[kind]}")
    if kind == "gpt":
        _check_sampling_options(args, given)


def _check_sampling_options(args: argparse.Namespace, given: list[str]) -> None:
    """The gpt options that another one makes useless: greedy decoding draws nothing, several samples of a
    prompt are one batch already, and --prompt (or none) is one prompt."""
    if args.temperature == 0:
        for name in ("top_k", "top_p", "seed"):
            if name in given:
                raise UsageError(
                    f"{_flag(name)} does not apply with --temperature 0, which is greedy (the likeliest "
                    "token at every step); leave it out or give a temperature above 0"
                )
    if "batch_size" in given and (args.num_samples or 1) > 1:
        raise UsageError(
            f"--batch-size does not apply with --num-samples {args.num_samples}, whose samples of a prompt "
            "are one batch already; give one or the other"
        )
    if "batch_size" in given and args.input is None:
        raise UsageError("--batch-size batches the prompts of --input FILE; --prompt (or none) is one prompt")


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _with_defaults(args: argparse.Namespace) -> argparse.Namespace:
    """``args`` with each option left unset given what it means (``DEFAULTS``)."""
    unset = {name: value for name, value in DEFAULTS.items() if getattr(args, name) is None}
    return argparse.Namespace(**{**vars(args), **unset})


def _print_samples(
    model: nn.Module,
    tokenizer: Tokenizer,
    prompts: list[str],
    args: argparse.Namespace,
    device: torch.device,
    out: Output,
) -> None:
    """Every sample of every prompt, separated by a dashed line: one sample per prompt streams as it is
    generated; several per prompt are sampled as one batch and printed when done."""
    options = {
        "max_new_tokens": _new_tokens(args.max_new_tokens, model, "gpt"),
        "temperature": args.temperature,
        "top_k": args.top_k,
        "top_p": args.top_p,
        "generator": torch.Generator(device=device).manual_seed(args.seed),
        "use_cache": not args.no_cache,
    }
    if args.num_samples > 1 or (args.batch_size > 1 and len(prompts) > 1):
        batches = {"num_samples": args.num_samples, "batch_size": args.batch_size}
        for index, start in enumerate(range(0, len(prompts), args.batch_size)):  # printed batch by batch
            batch = prompts[start : start + args.batch_size]
            samples = sample_texts(model, tokenizer, batch, **batches, **options)
            out.write(
                ("" if index == 0 else f"\n{SAMPLE_SEPARATOR}\n") + f"\n{SAMPLE_SEPARATOR}\n".join(samples)
            )
        out.write("\n")
        return
    for index, prompt in enumerate(prompts):  # one generator throughout: the same tokens as one batch call
        if index:
            out.write(f"\n{SAMPLE_SEPARATOR}\n")
        sample_texts(model, tokenizer, [prompt], stream=out.write, **options)
    out.write("\n")


def new_tokens_limit(model: nn.Module) -> int:
    """The most tokens one generation may add. A gpt's sampling crops its context to the last block_size
    tokens, so it can go on past block_size: only a sane cap applies. An encoder-decoder's positions end at
    its block_size."""
    if is_encoder_decoder(model):
        return model.config.block_size
    return max(MAX_NEW_TOKENS, model.config.block_size)


def _new_tokens(requested: int | None, model: nn.Module, kind: str) -> int:
    limit = new_tokens_limit(model)
    if requested is None:
        return min(DEFAULT_NEW_TOKENS, limit)
    if requested > limit:
        why = "the decoder's block_size" if is_encoder_decoder(model) else "the cap on one generation"
        raise UsageError(
            f"--max-new-tokens {requested}: must be from 1 to {limit} for this {kind} run ({why})"
        )
    return requested


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
    stream: Callable[[str], None] | None = None,
    batch_size: int = 1,
) -> list[str]:
    """``num_samples`` continuations of each prompt (prompt included), in prompt order. With ``stream`` (and
    one sample per prompt), each sample's text is also passed to it piece by piece as it is generated; the
    pieces of a sample join to exactly its returned text. With ``batch_size`` > 1 (one sample per prompt),
    that many prompts are generated as one left-padded batch where the cache holds them (the same greedy
    tokens as one at a time; sampled ones draw differently)."""
    if stream is not None and num_samples != 1:
        raise ValueError(f"streaming takes one sample per prompt, got num_samples={num_samples}")
    device = next(model.parameters()).device
    # An empty prompt (or one the tokenizer reduces to nothing, such as spaces for wordpiece) starts after
    # eos: the boundary the model saw before every training document.
    encoded = [(tokenizer.encode(prompt) if prompt else []) or [tokenizer.eos_id] for prompt in prompts]
    fits = use_cache and max(map(len, encoded)) + max_new_tokens - 1 <= model.config.block_size
    if batch_size > 1 and num_samples == 1 and stream is None and fits:  # left padding needs the cache
        options = {"temperature": temperature, "top_k": top_k, "top_p": top_p, "generator": generator}
        return _batched_texts(model, tokenizer, encoded, batch_size, max_new_tokens, options)
    texts = []
    for ids in encoded:
        shown = TextStream(tokenizer, ids, stream) if stream is not None else None
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
            on_token=None if shown is None else shown.add_step,
        )
        if shown is not None:
            shown.close()
        texts.extend(tokenizer.decode(row.tolist()) for row in out)
    return texts


def _batched_texts(
    model: nn.Module,
    tokenizer: Tokenizer,
    encoded: list[list[int]],
    batch_size: int,
    max_new_tokens: int,
    options: dict,
) -> list[str]:
    """The continuation of each encoded prompt, ``batch_size`` prompts at a time as one left-padded batch."""
    texts = []
    for start in range(0, len(encoded), batch_size):
        batch = encoded[start : start + batch_size]
        input_ids, mask = left_pad(batch, tokenizer.pad_id, next(model.parameters()).device)
        out = generate(model, input_ids, max_new_tokens, attention_mask=mask, **options)
        width = input_ids.size(1)  # row i's prompt starts at width - len(batch[i])
        texts.extend(
            tokenizer.decode(row[width - len(ids) :].tolist()) for row, ids in zip(out, batch, strict=True)
        )
    return texts


class TextStream:
    """Writes the text of a growing token sequence as it grows; all the writes together are exactly
    ``tokenizer.decode`` of the final ids (for decoders whose text of a sequence starts with the text of its
    prefixes, once a split character is complete: every built-in tokenizer's).

    Each write is the part of the whole sequence's decoded text not yet written. Decoding the whole
    sequence (not each token alone) is what keeps it exact: a token's text can depend on its neighbours
    (a byte-level character split across tokens, a word-piece's joining space). Text ending in U+FFFD waits
    for the next token, which may complete the character. Past FULL_DECODES tokens it decodes every
    len(ids) // FULL_DECODES tokens, so the decoding stays a small share of the sampling's cost."""

    def __init__(self, tokenizer: Tokenizer, ids: Iterable[int], write: Callable[[str], None]) -> None:
        self.tokenizer, self.write = tokenizer, write
        self.ids = list(ids)
        self.shown = ""  # the text written so far
        self.waiting = 0  # tokens added since the last write
        self._show(final=False)

    def add(self, ids: Iterable[int]) -> None:
        ids = list(ids)
        self.ids += ids
        self.waiting += len(ids)
        if self.waiting >= len(self.ids) // FULL_DECODES:
            self._show(final=False)

    def add_step(self, next_id: torch.Tensor) -> None:
        """``add`` for one step of sampling.generate's ``on_token``: its new token (1, 1)."""
        self.add(next_id[0].tolist())

    def close(self) -> None:
        """Write whatever is still held back."""
        self._show(final=True)

    def _show(self, final: bool) -> None:
        text = self.tokenizer.decode(self.ids)
        if not text.startswith(self.shown) or (text.endswith("\ufffd") and not final):
            return  # not settled yet
        if text != self.shown:
            self.write(text[len(self.shown) :])
        self.shown, self.waiting = text, 0


def unrepresentable(tokenizer: Tokenizer, text: str) -> list[str]:
    """The distinct characters of ``text`` (in order of appearance) that ``decode(encode(text))`` loses.

    A character is lost when the token covering it is one decoding drops (``<unk>``, or any other special
    token), or when no token covers it at all and it is not whitespace (tokenizers may drop spacing, which
    decoding puts back). What the tokenizer normalises (lowercase, stripped accents) is covered by tokens,
    so it is not lost. When only the context loses characters (a word-piece vocabulary with no piece for
    a word, although each of its characters has one), every character of the lost words is named."""
    lost = dict.fromkeys(text[i] for i in _lost_positions(tokenizer, text))
    unknown = [char for char in lost if _lost_positions(tokenizer, char)]
    return unknown or [char for char in lost if not char.isspace()]


def _lost_positions(tokenizer: Tokenizer, text: str) -> list[int]:
    backend = tokenizer.backend
    if backend is None:
        raise ValueError(f"{tokenizer!r} is not trained")
    dropped = {i for i, token in backend.get_added_tokens_decoder().items() if token.special}
    encoding = backend.encode(text, add_special_tokens=False)
    kept, gone = set(), set()
    for token_id, (start, end) in zip(encoding.ids, encoding.offsets, strict=True):
        (gone if token_id in dropped else kept).update(range(start, end))
    # A dropped token loses its characters even where another token overlaps them (Unigram's "▁" before
    # the first word shares that word's first character).
    return [i for i, char in enumerate(text) if i in gone or (i not in kept and not char.isspace())]


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
        encoded = [tokenizer.encode(lines[index]) for index in indices]
        for index, ids in zip(indices, encoded, strict=True):
            if len(ids) > max_source_len:  # the encoder has no positions beyond: say what it did not read
                print(
                    f"warning: input line {index + 1} is {len(ids)} tokens; the encoder reads its first "
                    f"{max_source_len} (its block_size)",
                    file=sys.stderr,
                )
        sources = [ids[:max_source_len] for ids in encoded]
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
    status = main()
    if status == EXIT_INTERRUPTED:
        exit_now(status)
    raise SystemExit(status)
