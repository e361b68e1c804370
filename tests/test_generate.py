import inspect
import re
import subprocess
import sys

import pytest
import torch

from lightning_llm import generate, registry
from lightning_llm.checkpoint import load_run
from lightning_llm.generate import (
    MAX_NEW_TOKENS,
    SAMPLE_SEPARATOR,
    TextStream,
    main,
    new_tokens_limit,
    sample_texts,
    translate,
    unrepresentable,
)
from lightning_llm.models import sampling
from lightning_llm.tokenizers import ByteBPETokenizer, UnigramTokenizer, WordPieceTokenizer
from tests.test_checkpoint import TEXT, TINY_GPT, make_run, make_tokenizer

TINY_DECODER = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32, "dropout": 0.0}
needs_cache = pytest.mark.skipif(
    "use_cache" not in inspect.signature(sampling.generate).parameters,
    reason="lightning_llm.models.sampling.generate does not accept use_cache yet",
)


def cli(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "lightning_llm.generate", *args], capture_output=True, text=True, timeout=120
    )


def run_main(capsys, *args: str) -> tuple[int, str, str]:
    code = main([str(arg) for arg in args])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def gpt_run(tmp_path):
    return make_run(tmp_path / "gpt")[0]


@pytest.fixture
def decoder_run(tmp_path):
    if "decoder" not in registry.names("model"):
        pytest.skip("the encoder-decoder model plugin is not registered")
    return make_run(tmp_path / "decoder", "decoder", TINY_DECODER, data={"block_size": 8})[0]


# --------------------------------------------------------------------------- the command, end to end


@needs_cache
def test_the_command_samples_from_a_gpt_run(gpt_run):
    result = cli(str(gpt_run), "--prompt", "the lazy", "--max-new-tokens", "6", "--num-samples", "2")
    assert result.returncode == 0, result.stderr
    samples = result.stdout.rstrip("\n").split(f"\n{SAMPLE_SEPARATOR}\n")
    assert len(samples) == 2
    assert all(sample.startswith("the lazy") for sample in samples)


def test_the_command_exits_2_with_one_line_for_a_bad_run(tmp_path):
    result = cli(str(tmp_path / "nope"), "--prompt", "x")
    assert result.returncode == 2
    assert result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: no such run folder or checkpoint file")


def test_a_run_without_a_checkpoint_exits_2(tmp_path, capsys):
    code, out, err = run_main(capsys, tmp_path, "--prompt", "x")
    assert (code, out) == (2, "")
    # "usable": checkpoint.py's wording while it learns to tell unusable checkpoints apart
    assert (
        err.startswith("error: ") and re.search("holds no (usable )?checkpoint", err) and err.count("\n") == 1
    )


def test_a_checkpoint_file_away_from_its_run_is_given_the_runs_tokenizer(gpt_run, tmp_path, capsys):
    """A ``consolidate --output`` file outside its run: the refusal says what to do, and doing it works."""
    lone = tmp_path / "c1.pt"
    lone.write_bytes((gpt_run / "checkpoints" / "last.ckpt").read_bytes())
    args = ["--prompt", "the", "--max-new-tokens", "4", "--temperature", "0"]
    code, out, err = run_main(capsys, lone, *args)
    assert (code, out) == (2, "") and "copy its run's tokenizer.json there, or give that file" in err
    assert run_main(capsys, lone, *args, "--tokenizer", gpt_run / "tokenizer.json") == run_main(
        capsys, gpt_run, *args
    )


def test_help_explains_the_options(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    for option in (
        "--prompt",
        "--input",
        "--top-p",
        "--num-beams",
        "--no-cache",
        "--device",
        "encoder-decoder",
    ):
        assert option in text


@pytest.mark.parametrize(
    "option",
    [
        ["--top-p", "1.5"],
        ["--temperature", "-1"],
        ["--num-beams", "0"],
        ["--num-beams", "100000"],  # one batch of beams: memory, not a use
        ["--num-samples", "10000000"],
        ["--batch-size", "1025"],  # one batch of prompts: memory, as for samples
        ["--seed", "99999999999999999999999"],  # past torch's 64 bits
    ],
)
def test_out_of_range_options_exit_2(gpt_run, capsys, option):
    with pytest.raises(SystemExit) as exit_info:
        main([str(gpt_run), *option])
    assert exit_info.value.code == 2
    assert option[0] in capsys.readouterr().err


# --------------------------------------------------------------------------- decoder-only


@needs_cache
def test_sampling_is_seeded(gpt_run, capsys):
    args = [gpt_run, "--prompt", "the", "--max-new-tokens", "12", "--temperature", "1.0"]
    first = run_main(capsys, *args, "--seed", "3")
    assert first[0] == 0
    assert run_main(capsys, *args, "--seed", "3") == first
    assert run_main(capsys, *args, "--seed", "4")[1] != first[1]


@needs_cache
def test_the_cache_gives_the_same_tokens(gpt_run, capsys):
    args = [gpt_run, "--prompt", "quick brown", "--max-new-tokens", "20", "--temperature", "0"]
    cached = run_main(capsys, *args)
    assert cached[0] == 0
    assert run_main(capsys, *args, "--no-cache") == cached


@needs_cache
def test_each_input_line_is_a_prompt(gpt_run, tmp_path, capsys):
    (tmp_path / "prompts.txt").write_text("the\nBOX\n")
    code, out, _ = run_main(capsys, gpt_run, "--input", tmp_path / "prompts.txt", "--max-new-tokens", "3")
    assert code == 0
    samples = out.rstrip("\n").split(f"\n{SAMPLE_SEPARATOR}\n")
    assert [sample[:3] for sample in samples] == ["the", "BOX"]


@needs_cache
def test_prompts_in_batches_give_the_greedy_text_of_one_at_a_time(gpt_run, tmp_path, capsys, monkeypatch):
    (tmp_path / "prompts.txt").write_text("the\nBOX of\n\na longer prompt than most\nx\n")
    args = [gpt_run, "--input", tmp_path / "prompts.txt", "--max-new-tokens", "6", "--temperature", "0"]
    one_at_a_time = run_main(capsys, *args)
    assert one_at_a_time[0] == 0 and one_at_a_time[1].count(SAMPLE_SEPARATOR) == 4
    batches = []
    batched = generate._batched_texts
    monkeypatch.setattr(generate, "_batched_texts", lambda *a: batches.append(len(a[2])) or batched(*a))
    assert run_main(capsys, *args, "--batch-size", "2") == one_at_a_time  # batches of 2, 2 and 1
    assert run_main(capsys, *args, "--batch-size", "8") == one_at_a_time
    assert batches == [2, 2, 1, 5]  # prompts per call: the batched path ran


@needs_cache
def test_no_prompt_samples_from_scratch(gpt_run, capsys):
    code, out, _ = run_main(capsys, gpt_run, "--max-new-tokens", "5")
    assert code == 0 and out.strip()


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        (["--num-beams", "1"], "--num-beams does not apply to this gpt run: it samples"),
        (["--temperature", "0", "--top-k", "5"], "--top-k does not apply with --temperature 0"),
        (["--temperature", "0", "--top-p", "0.9"], "--top-p does not apply with --temperature 0"),
        (["--temperature", "0", "--seed", "3"], "--seed does not apply with --temperature 0"),
        (["--batch-size", "2", "--num-samples", "2"], "--batch-size does not apply with --num-samples 2"),
        (["--batch-size", "2", "--prompt", "x"], "--batch-size batches the prompts of --input FILE"),
    ],
)
def test_gpt_options_that_would_be_ignored_are_refused(gpt_run, tmp_path, capsys, options, expected):
    """--batch-size was ignored with --num-samples over 1 (and with one prompt), a greedy run's --top-k
    too: whoever gave it believed it did something."""
    (tmp_path / "prompts.txt").write_text("the\nBOX\n")
    given = options if "--prompt" in options else [*options, "--input", tmp_path / "prompts.txt"]
    code, out, err = run_main(capsys, gpt_run, *given, "--max-new-tokens", "2")
    assert (code, out) == (2, "") and err.startswith(f"error: {expected}") and err.count("\n") == 1


@pytest.mark.parametrize(("content", "message"), [(None, "no such file"), ("", "holds no lines")])
def test_bad_input_files_exit_2(gpt_run, tmp_path, capsys, content, message):
    if content is not None:
        (tmp_path / "in.txt").write_text(content)
    code, _, err = run_main(capsys, gpt_run, "--input", tmp_path / "in.txt")
    assert code == 2 and message in err


# --------------------------------------------------------------------------- encoder-decoder


def test_an_encoder_decoder_run_translates_one_line_per_input(decoder_run, tmp_path, capsys):
    (tmp_path / "sources.txt").write_text("the quick fox\n\njumps over\n")
    for beams in ("1", "2"):
        code, out, err = run_main(
            capsys,
            decoder_run,
            "--input",
            tmp_path / "sources.txt",
            "--num-beams",
            beams,
            "--max-new-tokens",
            "5",
        )
        assert code == 0, err
        lines = out.split("\n")
        assert len(lines) == 4 and lines[3] == ""  # three outputs, then the final newline
        assert lines[1] == ""  # a blank input line gives a blank output line


@pytest.mark.parametrize(
    "option",
    [
        ["--temperature", "0.5"],
        ["--top-k", "5"],
        ["--top-p", "0.9"],
        ["--seed", "1"],
        ["--batch-size", "2"],
        ["--num-samples", "1"],
    ],
)
def test_sampling_options_are_refused_for_an_encoder_decoder(decoder_run, tmp_path, capsys, option):
    """They were ignored in silence (while --num-samples 2 was refused): a translation is deterministic."""
    (tmp_path / "sources.txt").write_text("the quick fox\n")
    code, out, err = run_main(capsys, decoder_run, "--input", tmp_path / "sources.txt", *option)
    assert (code, out) == (2, "") and err.count("\n") == 1
    assert err.startswith(f"error: {option[0]} does not apply to this encoder-decoder run: it translates")


def test_an_encoder_decoder_needs_input(decoder_run, capsys):
    code, _, err = run_main(capsys, decoder_run)
    assert code == 2 and "pass --prompt TEXT or --input FILE" in err


def test_an_encoder_cannot_generate(tmp_path, capsys):
    if "encoder" not in registry.names("model"):
        pytest.skip("the encoder model plugin is not registered")
    run_dir = make_run(
        tmp_path / "mlm", "encoder", {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32}
    )[0]
    code, _, err = run_main(capsys, run_dir, "--prompt", "x")
    assert code == 2 and "model 'encoder' does not generate text" in err


class RecordingSeq2Seq(torch.nn.Module):
    """A stand-in encoder-decoder: records what generate receives and answers with fixed rows."""

    def __init__(self, rows: list[list[int]], block_size: int = 8):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))
        self.config = type("Config", (), {"block_size": block_size})()
        self.rows, self.calls = rows, []

    def encode(self, input_ids, attention_mask):
        raise AssertionError("translate calls generate only")

    def generate(
        self, input_ids, attention_mask, max_new_tokens, bos_id, eos_id, num_beams=1, use_cache=True
    ):
        self.calls.append((input_ids, attention_mask, max_new_tokens, num_beams))
        return self.rows[: input_ids.size(0)]


def test_translate_pads_masks_truncates_and_cuts_at_eos(capsys):
    tokenizer = make_tokenizer()
    bos, eos = tokenizer.bos_id, tokenizer.eos_id
    ids = tokenizer.encode("dog")
    model = RecordingSeq2Seq([[bos, *ids, eos, *ids], ids])  # with or without bos and eos: both decode
    outputs = translate(model, tokenizer, ["the quick", "", "fox"], 50, num_beams=3, max_source_len=4)
    assert outputs == ["dog", "", "dog"]
    ((input_ids, attention_mask, max_new_tokens, num_beams),) = model.calls
    assert input_ids.tolist() == [tokenizer.encode("the "), tokenizer.encode("fox") + [tokenizer.pad_id]]
    assert attention_mask.tolist() == [[True] * 4, [True] * 3 + [False]]
    assert (max_new_tokens, num_beams) == (8, 3)  # at most the decoder's block_size
    assert "warning: input line 1 is 9 tokens; the encoder reads its first 4" in capsys.readouterr().err


def test_translate_batches_long_inputs():
    tokenizer = make_tokenizer()
    model = RecordingSeq2Seq([tokenizer.encode("ok")] * 2)
    assert translate(model, tokenizer, ["a"] * 5, 4, max_source_len=8, batch_size=2) == ["ok"] * 5
    assert [call[0].size(0) for call in model.calls] == [2, 2, 1]


# --------------------------------------------------------------------------- text a tokenizer cannot encode


def trained(tokenizer):
    tokenizer.train([TEXT])
    return tokenizer


def test_characters_a_char_tokenizer_never_saw_are_named_in_order():
    tokenizer = make_tokenizer()  # trained on TEXT: no accents, no tab, no euro sign
    assert unrepresentable(tokenizer, "the lazy dog!") == []
    assert unrepresentable(tokenizer, "h\u00e9llo\tw\u00f6rld \u00e9 \u20ac") == [
        "\u00e9",
        "\t",
        "\u00f6",
        "\u20ac",
    ]
    ids = tokenizer.encode("h\u00e9llo")
    assert tokenizer.decode(ids) == "hllo"  # what the check protects from: the silent drop


def test_byte_bpe_represents_every_character():
    tokenizer = trained(ByteBPETokenizer(vocab_size=300))
    text = "h\u00e9llo\tw\u00f6rld \u20ac\U0001f600 \x00\u200b"
    assert tokenizer.decode(tokenizer.encode(text)) == text
    assert unrepresentable(tokenizer, text) == []


def test_normalisation_is_not_a_loss_but_unknown_pieces_are():
    uncased = trained(WordPieceTokenizer(vocab_size=200, lowercase=True))
    # lowercased, accents stripped, spacing redone by decode: all the tokenizer's own normalisation
    assert uncased.decode(uncased.encode("TH\u00c9 Fox\t jumps")) == "the fox jumps"
    assert unrepresentable(uncased, "TH\u00c9 Fox\t jumps") == []
    cased = trained(WordPieceTokenizer(vocab_size=200))
    assert unrepresentable(cased, "the f\u00f6x") == ["\u00f6"]  # its whole word would become <unk>
    unigram = trained(UnigramTokenizer(vocab_size=60))
    assert unrepresentable(unigram, "\u00e9 the") == [
        "\u00e9"
    ]  # shares its offsets with the leading "\u2581"


def test_a_prompt_with_unseen_characters_is_refused(gpt_run, capsys):
    code, out, err = run_main(capsys, gpt_run, "--prompt", "h\u00e9llo \u20ac")
    assert (code, out) == (2, "")
    assert err == (
        "error: --prompt has characters the run's tokenizer never saw: '\u00e9' (U+00E9), '\u20ac' (U+20AC); "
        "remove them, or use a run whose tokenizer covers them (byte_bpe covers all text)\n"
    )


def test_an_input_file_names_the_first_bad_line(gpt_run, tmp_path, capsys):
    (tmp_path / "in.txt").write_text("the fox\nna\u00efve\nok\ncaf\u00e9\n")
    code, out, err = run_main(capsys, gpt_run, "--input", tmp_path / "in.txt")
    assert (code, out) == (2, "")
    assert err.startswith(f"error: --input {tmp_path / 'in.txt'} line 2 has characters")
    assert "'\u00ef' (U+00EF) (and 1 more lines)" in err and err.count("\n") == 1


def test_an_encoder_decoder_source_is_checked_too(decoder_run, capsys):
    code, _, err = run_main(capsys, decoder_run, "--prompt", "\u00fcber", "--max-new-tokens", "4")
    assert code == 2 and err.startswith("error: --prompt has characters") and "(U+00FC)" in err


# --------------------------------------------------------------------------- how many tokens


def test_a_gpt_run_may_go_past_block_size_up_to_the_cap(gpt_run, capsys):
    model, tokenizer, _ = load_run(gpt_run)
    assert new_tokens_limit(model) == MAX_NEW_TOKENS > model.config.block_size
    args = ["--prompt", "the", "--temperature", "0", "--max-new-tokens", "40"]  # block_size 32
    code, out, err = run_main(capsys, gpt_run, *args)
    assert code == 0, err
    expected = sample_texts(model, tokenizer, ["the"], max_new_tokens=40, temperature=0.0)
    assert out == expected[0] + "\n"
    code, out, err = run_main(capsys, gpt_run, "--prompt", "the", "--max-new-tokens", str(MAX_NEW_TOKENS + 1))
    assert (code, out) == (2, "")
    assert err == (
        f"error: --max-new-tokens {MAX_NEW_TOKENS + 1}: must be from 1 to {MAX_NEW_TOKENS} for this gpt run "
        "(the cap on one generation)\n"
    )


def test_an_encoder_decoder_run_stops_at_its_block_size(decoder_run, capsys):
    code, out, err = run_main(capsys, decoder_run, "--prompt", "the fox", "--max-new-tokens", "33")
    assert (code, out) == (2, "")
    assert err.startswith("error: --max-new-tokens 33: must be from 1 to 32 for this encoder-decoder run")
    code, out, err = run_main(capsys, decoder_run, "--prompt", "the fox")  # the default fits itself to 32
    assert code == 0, err
    assert out.count("\n") == 1


def test_help_states_the_bound(capsys):
    with pytest.raises(SystemExit):
        main(["--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert f"gpt: at most {MAX_NEW_TOKENS}" in help_text
    assert "encoder-decoder: at most the decoder's block_size" in help_text


# --------------------------------------------------------------------------- streaming and Ctrl-C


def byte_bpe_gpt():
    """A random tiny gpt over a byte_bpe vocabulary: its samples split characters across tokens."""
    tokenizer = trained(ByteBPETokenizer(vocab_size=300))
    torch.manual_seed(0)
    return registry.build("model", "gpt", vocab_size=tokenizer.vocab_size, **TINY_GPT).eval(), tokenizer


def stream_and_batch(model, tokenizer, prompts, **options):
    """(the text streamed per prompt, its pieces, what sample_texts returned while streaming, what it returns
    without streaming), with the same seed both times."""
    pieces: list[list[str]] = [[] for _ in prompts]
    generator = torch.Generator().manual_seed(5)
    returned = [
        sample_texts(model, tokenizer, [prompt], generator=generator, stream=chunks.append, **options)[0]
        for prompt, chunks in zip(prompts, pieces, strict=True)
    ]
    plain = sample_texts(model, tokenizer, prompts, generator=torch.Generator().manual_seed(5), **options)
    return ["".join(chunks) for chunks in pieces], pieces, returned, plain


@pytest.mark.parametrize("use_cache", [True, False])
def test_streaming_gives_exactly_the_text_of_sampling_at_once(gpt_run, use_cache):
    model, tokenizer, _ = load_run(gpt_run)
    streamed, pieces, returned, plain = stream_and_batch(
        model, tokenizer, ["the", ""], max_new_tokens=40, temperature=1.0, use_cache=use_cache
    )
    assert streamed == returned == plain
    assert pieces[0][0] == "the"  # the prompt at once
    assert all(len(chunks) > 10 for chunks in pieces)  # then token by token, not all at the end


def test_streaming_holds_back_characters_split_across_byte_tokens():
    model, tokenizer = byte_bpe_gpt()
    prompts = ["caf\u00e9 \u20ac", "the"]
    streamed, pieces, returned, plain = stream_and_batch(
        model, tokenizer, prompts, max_new_tokens=60, top_k=None
    )
    assert streamed == returned == plain
    assert pieces[0][0] == "caf\u00e9 \u20ac"
    assert "\ufffd" in "".join(streamed)  # random byte tokens: some characters stay broken, even at the end
    assert not any(chunk.endswith("\ufffd") for chunks in pieces for chunk in chunks[:-1])


def test_a_text_stream_writes_each_character_once_it_is_whole():
    tokenizer = trained(ByteBPETokenizer(vocab_size=300))
    ids = tokenizer.encode("a\u20acb")
    assert len(ids) == 5  # a, the euro sign's three bytes, b
    writes: list[str] = []
    stream = TextStream(tokenizer, [], writes.append)
    for token in ids:
        stream.add([token])
    stream.close()
    assert writes == ["a", "\u20ac", "b"]


def test_a_long_stream_decodes_less_often_and_stays_exact(gpt_run, monkeypatch):
    monkeypatch.setattr(generate, "FULL_DECODES", 4)  # past 4 tokens, a write every len(ids) // 4 tokens
    model, tokenizer, _ = load_run(gpt_run)
    streamed, pieces, returned, plain = stream_and_batch(model, tokenizer, ["the"], max_new_tokens=60)
    assert streamed == returned == plain
    assert 3 < len(pieces[0]) < 30


def test_several_samples_per_prompt_print_as_before(gpt_run, tmp_path, capsys):
    (tmp_path / "prompts.txt").write_text("the\nBOX\n")
    args = ["--input", tmp_path / "prompts.txt", "--max-new-tokens", "8", "--seed", "2"]
    model, tokenizer, _ = load_run(gpt_run)
    for samples in (1, 3):
        code, out, err = run_main(capsys, gpt_run, *args, "--num-samples", str(samples))
        assert code == 0, err
        expected = sample_texts(
            model,
            tokenizer,
            ["the", "BOX"],
            max_new_tokens=8,
            num_samples=samples,
            generator=torch.Generator().manual_seed(2),
        )
        assert out == f"\n{SAMPLE_SEPARATOR}\n".join(expected) + "\n"


def interrupt_after(tokens: int):
    """sampling.generate that streams ``tokens`` tokens, then is interrupted as by Ctrl-C."""

    def generate_then_interrupt(model, input_ids, max_new_tokens, *args, on_token=None, **kwargs):
        def interrupted(next_id):
            on_token(next_id)
            if interrupted.count == tokens:
                raise KeyboardInterrupt
            interrupted.count += 1

        interrupted.count = 1
        return sampling.generate(model, input_ids, max_new_tokens, *args, on_token=interrupted, **kwargs)

    return generate_then_interrupt


def test_ctrl_c_keeps_the_streamed_text_and_exits_130(gpt_run, monkeypatch, capsys):
    monkeypatch.setattr(generate, "generate", interrupt_after(5))
    args = ["--prompt", "the", "--temperature", "0", "--max-new-tokens", "50"]
    code, out, err = run_main(capsys, gpt_run, *args)
    assert (code, err) == (130, "interrupted\n")
    model, tokenizer, _ = load_run(gpt_run)
    ids = tokenizer.encode("the")
    full = sampling.generate(model, torch.tensor([ids]), 5, temperature=0.0)[0].tolist()
    assert out == tokenizer.decode(full) + "\n"  # the five tokens streamed, then the line ended


def test_ctrl_c_while_loading_the_run_exits_130_quietly(gpt_run, monkeypatch, capsys):
    def load_interrupted(path, tokenizer_file=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(generate, "load_run", load_interrupted)
    assert run_main(capsys, gpt_run, "--prompt", "the") == (130, "", "interrupted\n")


@pytest.mark.parametrize("value", ["nan", "inf", "-0.5"])
def test_a_temperature_that_is_not_a_finite_number_is_refused(value, capsys):
    from lightning_llm.generate import build_parser

    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args(["run", "--temperature", value])
    assert exit_info.value.code == 2
    assert f"argument --temperature: must be a finite number >= 0.0, got {value}" in capsys.readouterr().err


def test_an_input_that_is_a_folder_or_a_device_is_named_for_what_it_is(gpt_run, tmp_path, capsys):
    for path, message in ((tmp_path, "a folder; name a text file"), ("/dev/null", "not a regular file")):
        code, _, err = run_main(capsys, gpt_run, "--input", path)
        assert code == 2 and f"--input {path}: {message}" in err, err


def test_a_prompt_that_is_not_utf8_or_longer_than_any_use_is_refused(gpt_run, tmp_path, capsys, monkeypatch):
    """Python reads argv and stdin with surrogateescape: bytes that are not UTF-8 arrive as lone surrogates,
    which the tokenizer would refuse with a traceback. A prompt of millions of characters would take GBs to
    check, though the model sees only block_size tokens of it."""
    code, _, err = run_main(capsys, gpt_run, "--prompt", "abc\udcff")
    assert code == 2 and "--prompt: not UTF-8 text" in err, err
    monkeypatch.setattr(generate, "MAX_PROMPT_CHARS", 10)
    (tmp_path / "long.txt").write_text("short\n" + "x" * 11 + "\n")
    code, _, err = run_main(capsys, gpt_run, "--input", tmp_path / "long.txt")
    assert code == 2 and "line 2: 11 characters, more than 10; the model sees at most" in err, err


def test_a_tiny_temperature_samples_the_likeliest_token_not_a_nan():
    from lightning_llm.models.sampling import sample

    logits = torch.tensor([[1.0, 3.0, 2.0], [30.0, -5.0, 29.0]])
    for temperature in (1e-40, 1e-30, 1e-6):  # logits / 1e-40 overflow to inf: a NaN softmax before
        assert sample(logits, temperature).flatten().tolist() == [1, 0]
