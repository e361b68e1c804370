import inspect
import subprocess
import sys

import pytest
import torch

from lightning_llm import registry
from lightning_llm.generate import SAMPLE_SEPARATOR, main, translate
from lightning_llm.models import sampling
from tests.test_checkpoint import make_run, make_tokenizer

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
    assert err.startswith("error: ") and "holds no checkpoint" in err and err.count("\n") == 1


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


@pytest.mark.parametrize("option", [["--top-p", "1.5"], ["--temperature", "-1"], ["--num-beams", "0"]])
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
def test_no_prompt_samples_from_scratch(gpt_run, capsys):
    code, out, _ = run_main(capsys, gpt_run, "--max-new-tokens", "5")
    assert code == 0 and out.strip()


def test_beams_do_not_apply_to_gpt(gpt_run, capsys):
    code, _, err = run_main(capsys, gpt_run, "--prompt", "x", "--num-beams", "2")
    assert code == 2 and "--num-beams applies to encoder-decoder models" in err


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


def test_translate_pads_masks_truncates_and_cuts_at_eos():
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


def test_translate_batches_long_inputs():
    tokenizer = make_tokenizer()
    model = RecordingSeq2Seq([tokenizer.encode("ok")] * 2)
    assert translate(model, tokenizer, ["a"] * 5, 4, max_source_len=8, batch_size=2) == ["ok"] * 5
    assert [call[0].size(0) for call in model.calls] == [2, 2, 1]
