"""Hugging Face folders in and out, proven against ``transformers``: a random GPT-2, BERT or Marian (every
parameter perturbed, so a misplaced gain or bias shows) imported here gives its logits (and GPT-2 its greedy
tokens, BERT its pooled next-sentence logits and its MLM loss, Marian its greedy and 4-beam translations); a
model exported from here loads in ``transformers`` with no missing or unexpected weight and gives ours;
import -> export -> import is the identity; and through the command lines, generate, export and fine-tuning
from a folder work."""

from __future__ import annotations

import json
import logging
import os
import re
import subprocess
import sys
import zipfile
from pathlib import Path
from pydoc_data.topics import topics

import pytest
import torch
import torch.nn.functional as F

from lightning_llm import huggingface
from lightning_llm.checkpoint import load_run
from lightning_llm.huggingface import HFFolderError, save_hf_folder
from lightning_llm.models.encoder import Encoder, EncoderConfig
from lightning_llm.models.gpt import GPT, GPTConfig
from lightning_llm.models.sampling import generate
from lightning_llm.testing import run_cli

transformers = pytest.importorskip("transformers")
TOL = 1e-4  # fp32 logits


def byte_level_tokenizer(vocab_size: int = 400):
    """A small GPT-2-style tokenizer (byte-level BPE with <|endoftext|>), trained on the pydoc text."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE())
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    backend.train_from_iterator(list(topics.values())[:60], trainer)
    return backend


@pytest.fixture(scope="module")
def gpt2_folder(tmp_path_factory) -> tuple[Path, object]:
    """A random GPT2LMHeadModel with every parameter perturbed, saved with its tokenizer; and the model."""
    folder = tmp_path_factory.mktemp("gpt2")
    backend = byte_level_tokenizer()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")
    config = transformers.GPT2Config(
        vocab_size=backend.get_vocab_size(), n_positions=64, n_embd=32, n_layer=2, n_head=2, bos_token_id=0,
        eos_token_id=0,
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder, model


def token_ids(vocab: int, shape=(2, 24)) -> torch.Tensor:
    return torch.randint(0, vocab, shape, generator=torch.Generator().manual_seed(1))


# --------------------------------------------------------------------------- import


def test_an_imported_gpt2_gives_transformers_logits(gpt2_folder):
    folder, reference = gpt2_folder
    model, tokenizer, config = load_run(folder)
    vocab = reference.config.vocab_size
    ids = token_ids(vocab)
    with torch.no_grad():
        expected, got = reference(ids).logits, model(ids)[..., :vocab]
    assert (got - expected).abs().max().item() < TOL
    assert config["model"]["name"] == "gpt" and config["model"]["n_layer"] == 2
    assert tokenizer.encode("The with statement") == reference_tokens(folder, "The with statement")


def reference_tokens(folder: Path, text: str) -> list[int]:
    return transformers.AutoTokenizer.from_pretrained(folder)(text, add_special_tokens=False)["input_ids"]


def test_rows_of_added_special_tokens_start_as_the_mean_row(gpt2_folder):
    """A use that needs special tokens GPT-2 lacks (every role, as fine-tuning asks) adds them; their rows
    must not be random (a random head row can win the argmax and make generation differ from run to run)."""
    folder, reference = gpt2_folder
    tokenizer = huggingface.load_hf_tokenizer(folder)
    first, _ = huggingface.load_hf_model(folder, tokenizer.vocab_size)
    second, _ = huggingface.load_hf_model(folder, tokenizer.vocab_size)
    rows = reference.config.vocab_size
    table = first.state_dict()["wte.weight"]
    assert tokenizer.vocab_size > rows and torch.equal(table, second.state_dict()["wte.weight"])
    mean = reference.transformer.wte.weight.mean(dim=0)
    assert torch.allclose(table[rows:], mean.expand(len(table) - rows, -1))  # padding rows too


def test_greedy_generation_matches_transformers(gpt2_folder):
    folder, reference = gpt2_folder
    model, _, _ = load_run(folder)
    prompt = token_ids(reference.config.vocab_size, (1, 8))
    expected = reference.generate(
        prompt, max_new_tokens=16, do_sample=False, eos_token_id=None, pad_token_id=0, attention_mask=None
    )
    got = generate(model, prompt, 16, temperature=0.0)
    assert got.tolist() == expected.tolist()


# --------------------------------------------------------------------------- export and round trip


def faithful_gpt(vocab_size: int, tie: bool = True) -> GPT:
    torch.manual_seed(2)
    config = GPTConfig(vocab_size=vocab_size, n_layer=2, n_head=2, n_embd=32, block_size=32, bias=True)
    config.tie_embeddings = tie
    model = GPT(config).eval()
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.05 * torch.randn_like(parameter))
    return model


@pytest.mark.parametrize("tie", [True, False], ids=["tied", "untied"])
def test_an_export_loads_in_transformers_with_the_same_logits(gpt2_folder, tmp_path, tie):
    folder, _ = gpt2_folder
    tokenizer = huggingface.load_hf_tokenizer(folder)
    model = faithful_gpt(tokenizer.vocab_size, tie)
    node = {"name": "gpt", **{k: v for k, v in vars(model.config).items() if k != "vocab_size"}}
    out = save_hf_folder(model, node, tokenizer, tmp_path / "out")
    loaded, info = transformers.AutoModelForCausalLM.from_pretrained(out, output_loading_info=True)
    assert info["missing_keys"] == info["unexpected_keys"] == set() and not info["mismatched_keys"]
    ids = token_ids(tokenizer.vocab_size)
    with torch.no_grad():
        assert (loaded.eval()(ids).logits - model(ids)[..., : tokenizer.vocab_size]).abs().max() < TOL
    auto = transformers.AutoTokenizer.from_pretrained(out)
    assert auto("a with b", add_special_tokens=False)["input_ids"] == tokenizer.encode("a with b")
    assert auto.eos_token_id == tokenizer.eos_id


def test_an_export_writes_only_into_a_new_or_empty_folder(gpt2_folder, tmp_path):
    folder, _ = gpt2_folder
    tokenizer = huggingface.load_hf_tokenizer(folder)
    model = faithful_gpt(tokenizer.vocab_size, True)
    node = {"name": "gpt", **{k: v for k, v in vars(model.config).items() if k != "vocab_size"}}
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("mine")
    (tmp_path / "file.txt").write_text("mine")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    for name, expected in (
        ("mine", "a folder that holds files"),
        ("file.txt", "a file"),
        ("link", "a link"),
        ("file.txt/sub", f"{tmp_path / 'file.txt'} is a file, not a folder"),  # was "(File exists)"
    ):
        with pytest.raises(huggingface.HFFolderError, match=f"--out {tmp_path / name}: {expected}"):
            save_hf_folder(model, node, tokenizer, tmp_path / name)
    assert (tmp_path / "mine" / "notes.txt").read_text() == (tmp_path / "file.txt").read_text() == "mine"
    assert not (tmp_path / "nowhere").exists()
    (tmp_path / "empty").mkdir()
    assert (
        load_run(save_hf_folder(model, node, tokenizer, tmp_path / "empty"))[1].vocab_size
        == tokenizer.vocab_size
    )


def test_an_export_stopped_partway_leaves_no_folder_that_loads_half(gpt2_folder, tmp_path, monkeypatch):
    """The weights and config were written, then the tokenizer failed: the folder was left without one."""
    folder, _ = gpt2_folder
    model, tokenizer, config = load_run(folder)

    def full_disk(path):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(tokenizer, "save", full_disk)
    with pytest.raises(huggingface.HFFolderError, match=r"--out .*out: cannot write it \(No space left"):
        save_hf_folder(model, config["model"], tokenizer, tmp_path / "out")
    assert os.listdir(tmp_path) == []  # neither the folder asked for nor its staging copy


def test_import_export_import_is_the_identity(gpt2_folder, tmp_path):
    folder, _ = gpt2_folder
    first, tokenizer, config = load_run(folder)
    exported = save_hf_folder(first, config["model"], tokenizer, tmp_path / "again")
    second, _, _ = load_run(exported)
    rows = tokenizer.vocab_size  # past it: the padding up to a multiple of 64, never exported
    for name, value in first.state_dict().items():
        assert torch.equal(second.state_dict()[name][:rows], value[:rows]), name
    original = huggingface.read_hf_weights(folder)
    for name, value in huggingface.read_hf_weights(exported).items():
        assert torch.equal(value[: original[name].shape[0]], original[name]), name  # the checkpoint's rows


# --------------------------------------------------------------------------- refused in one line


def write_config(folder: Path, **config) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.json").write_text(json.dumps(config))
    return folder


def test_unsupported_architectures_and_options_are_named(gpt2_folder, tmp_path):
    llama = write_config(tmp_path / "llama", architectures=["LlamaForCausalLM"], model_type="llama")
    supported = "GPT2LMHeadModel, BertForMaskedLM, BertForPreTraining, MarianMTModel"
    with pytest.raises(HFFolderError, match=rf"LlamaForCausalLM is not supported; supported: {supported}"):
        load_run(llama)
    unnamed = write_config(tmp_path / "unnamed", model_type="gpt2")
    with pytest.raises(
        HFFolderError, match=rf"config.json: names no architectures .* supported: {supported}"
    ):
        load_run(unnamed)
    mixed = write_config(tmp_path / "mixed", architectures=["GPT2LMHeadModel"], model_type="llama")
    with pytest.raises(HFFolderError, match=r"model_type='llama' does not go with .* model_type='gpt2'"):
        load_run(mixed)
    relu = write_config(tmp_path / "relu", architectures=["GPT2LMHeadModel"], activation_function="relu")
    with pytest.raises(HFFolderError, match=r"activation_function='relu' has no counterpart"):
        load_run(relu)
    folder, _ = gpt2_folder
    tokenizer = huggingface.load_hf_tokenizer(folder)
    rotary = GPT(GPTConfig(vocab_size=tokenizer.vocab_size, n_layer=1, n_head=2, n_embd=16, block_size=8))
    node = {"name": "gpt", "bias": False, "positions": "rotary", "mlp": "gelu", "norm": "layernorm"}
    with pytest.raises(HFFolderError, match=r"model.bias=False has no GPT-2 counterpart"):
        save_hf_folder(
            rotary,
            {**node, "n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 8},
            tokenizer,
            tmp_path / "o",
        )
    assert not (tmp_path / "o").exists()


def test_a_folder_without_a_tokenizer_says_how_to_pass_one(gpt2_folder, tmp_path):
    folder, _ = gpt2_folder
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((folder / name).read_bytes())
    with pytest.raises(HFFolderError, match=r"holds no tokenizer .*tokenizer=pretrained tokenizer.path="):
        load_run(bare)


def test_weights_that_do_not_match_the_config_are_named(gpt2_folder, tmp_path):
    folder, _ = gpt2_folder
    wider = tmp_path / "wider"
    wider.mkdir()
    for name in ("model.safetensors", "tokenizer.json", "tokenizer_config.json"):
        (wider / name).write_bytes((folder / name).read_bytes())
    config = json.loads((folder / "config.json").read_text())
    (wider / "config.json").write_text(json.dumps({**config, "n_embd": 64}))
    with pytest.raises(
        HFFolderError,
        match=r"config.json: n_embd=64, but model.safetensors's transformer.wte.weight has shape",
    ):
        load_run(wider)


def variant(folder: Path, out: Path, config: dict | None = None, weights=None, drop=()) -> Path:
    """A copy of ``folder`` with config.json's keys changed (None removes one), its weights passed through
    ``weights`` (a function of the state dict) and the files in ``drop`` left out."""
    from safetensors.torch import save_file

    out.mkdir(parents=True)
    for file in folder.iterdir():
        if file.name not in drop:
            (out / file.name).write_bytes(file.read_bytes())
    if config is not None:
        edited = {**json.loads((folder / "config.json").read_text()), **config}
        (out / "config.json").write_text(json.dumps({k: v for k, v in edited.items() if v is not None}))
    if weights is not None:
        save_file(weights(huggingface.read_hf_weights(folder)), out / "model.safetensors")
    return out


def one_line_refusal(folder: Path, match: str) -> None:
    """Loading ``folder``, for generate or evaluate, and to fine-tune from: one line matching ``match``."""
    with pytest.raises(HFFolderError, match=match) as refused:
        load_run(folder)
    assert "\n" not in str(refused.value)


def gpt2_state(**changes):
    """A weights edit: ``changes`` maps a tensor name to its new value, None to remove it."""

    def edit(state):
        state = {**state, **changes}
        return {name: value for name, value in state.items() if value is not None}

    return edit


def test_the_loss_of_an_imported_gpt2_is_transformers_and_its_vocabulary_the_folders(gpt2_folder, tmp_path):
    """No special-token rows are added for a causal LM (<|endoftext|> pads): the loss over the folder's
    vocabulary is transformers' (labels=input_ids), and an export keeps its vocab_size."""
    from lightning_llm.objectives.causal_lm import CausalLM

    folder, reference = gpt2_folder
    model, tokenizer, config = load_run(folder)
    vocab = reference.config.vocab_size
    assert tokenizer.vocab_size == model.config.vocab_size == vocab
    assert tokenizer.pad_id == tokenizer.eos_id == reference.config.eos_token_id
    ids = token_ids(vocab, (2, 32))
    batch = {"input_ids": ids[:, :-1], "labels": ids[:, 1:]}
    with torch.no_grad():
        total, count, _ = CausalLM(tokenizer).loss(model, batch)
        expected = reference(ids, labels=ids).loss
    assert abs((total / count).item() - expected.item()) < 1e-5
    exported = save_hf_folder(model, config["model"], tokenizer, tmp_path / "out")
    assert json.loads((exported / "config.json").read_text())["vocab_size"] == vocab


def test_missing_extra_and_mistyped_tensors_are_refused_by_name(gpt2_folder, tmp_path):
    """Loading and fine-tuning alike: a backbone tensor absent, a layer past n_layer, a buffer no GPT-2 has,
    fewer embedding rows than vocab_size, or a tensor that is not floating point."""
    from lightning_llm.checkpoint import init_from

    folder, _ = gpt2_folder
    weights = huggingface.read_hf_weights(folder)
    third = {name.replace(".h.1.", ".h.2."): value for name, value in weights.items() if ".h.1." in name}
    cases = {
        "missing": (gpt2_state(**{"transformer.h.1.mlp.c_fc.bias": None}),
                    r"model.safetensors has no tensor transformer.h.1.mlp.c_fc.bias \(for blocks.1.mlp"),
        "layer": (gpt2_state(**third), r"transformer.h.2.\S+ is a layer past config.json's n_layer=2"),
        "rotary": (gpt2_state(**{"transformer.h.0.attn.rotary.inv_freq": torch.zeros(4)}),
                   r"transformer.h.0.attn.rotary.inv_freq has no counterpart"),
        "rows": (gpt2_state(**{"transformer.wte.weight": weights["transformer.wte.weight"][:300].clone()}),
                 r"vocab_size=400, but model.safetensors's transformer.wte.weight has shape \(300"),
        "int": (gpt2_state(**{"transformer.h.0.ln_1.weight": torch.ones(32, dtype=torch.int64)}),
                r"transformer.h.0.ln_1.weight holds torch.int64 values"),
        "bool": (gpt2_state(**{"transformer.h.0.ln_1.bias": torch.zeros(32, dtype=torch.bool)}),
                 r"transformer.h.0.ln_1.bias holds torch.bool values"),
        "float8": (gpt2_state(**{"transformer.h.0.ln_1.bias": torch.zeros(32).to(torch.float8_e4m3fn)}),
                   r"transformer.h.0.ln_1.bias holds torch.float8_e4m3fn values; weights are floating"),
        "scalar": (gpt2_state(**{"transformer.ln_f.weight": torch.tensor(1.0)}),  # was a torch.cat traceback
                   r"transformer.ln_f.weight has shape \(\), but ln_f.weight here needs \(32,\)"),
    }  # fmt: skip
    model, _, _ = load_run(folder)
    for name, (edit, match) in cases.items():
        edited = variant(folder, tmp_path / name, weights=edit)
        one_line_refusal(edited, match)
        tensor = re.search(r"transformer\.[\w.]+\w", match.replace("\\S+", "attn"))[0]
        with pytest.raises(
            HFFolderError, match=tensor
        ):  # model.init_from=<folder>: no head "new" or "skipped"
            init_from(model, edited)


def test_a_tied_head_must_be_the_embedding_and_an_untied_one_present(gpt2_folder, tmp_path):
    folder, reference = gpt2_folder
    wte = huggingface.read_hf_weights(folder)["transformer.wte.weight"]
    other = variant(folder, tmp_path / "other", weights=gpt2_state(**{"lm_head.weight": wte + 1}))
    one_line_refusal(other, r"lm_head.weight differs from transformer.wte.weight, which config.json ties")
    same = variant(folder, tmp_path / "same", weights=gpt2_state(**{"lm_head.weight": wte.clone()}))
    ids = token_ids(reference.config.vocab_size)
    with torch.no_grad():
        assert (load_run(same)[0](ids) - reference(ids).logits).abs().max() < TOL
    untied = variant(folder, tmp_path / "untied", config={"tie_word_embeddings": False})
    one_line_refusal(untied, r"has no tensor lm_head.weight \(for lm_head.weight here\)")


@pytest.mark.parametrize(
    ("config", "match"),
    [
        ({"architectures": 5}, r"architectures=5 is not a list of class names"),
        ({"architectures": "GPT2LMHeadModel"}, r"architectures='GPT2LMHeadModel' is not a list"),
        ({"n_layer": "2"}, r"config.json: n_layer='2' is not an integer"),
        ({"n_layer": 2.0}, r"n_layer=2.0 is not an integer"),
        ({"n_layer": None, "n_embd": -32}, r"n_embd=-32 is not an integer"),
        ({"n_positions": 2**40}, r"n_positions=1099511627776 is not an integer in \[1, "),
        ({"n_layer": 2**20}, r"holds no tensor of layer 2, though config.json says n_layer=1048576"),
        ({"n_head": 3}, r"config.json: model.n_embd=32 is not divisible by model.n_head=3"),
        ({"tie_word_embeddings": "false"}, r"tie_word_embeddings='false' is not true or false"),
        ({"layer_norm_epsilon": "1e-5"}, r"layer_norm_epsilon='1e-5' is not a number"),
        ({"activation_function": ["gelu"]}, r"activation_function=\['gelu'\] has no counterpart"),
        ({"add_cross_attention": True}, r"GPT-2 option add_cross_attention=True has no counterpart"),
        ({"scale_attn_weights": False}, r"GPT-2 option scale_attn_weights=False has no counterpart"),
        ({"scale_attn_by_inverse_layer_idx": True}, r"scale_attn_by_inverse_layer_idx=True has no"),
        ({"pruned_heads": {"0": [1]}}, r"GPT-2 option pruned_heads=\{'0': \[1\]\} has no counterpart"),
        ({"n_positions": 32}, r"n_positions=32, but model.safetensors's transformer.wpe.weight has shape"),
    ],
    ids=lambda value: str(value)[:40],
)
def test_bad_config_values_are_refused_in_one_line_before_building(gpt2_folder, tmp_path, config, match):
    folder, _ = gpt2_folder
    one_line_refusal(variant(folder, tmp_path / "v", config=config), match)


def test_bad_weights_files_are_refused_in_one_line_naming_the_file(gpt2_folder, tmp_path):
    folder, _ = gpt2_folder
    weights = huggingface.read_hf_weights(folder)
    names = sorted(weights)
    from safetensors.torch import save_file

    def sharded(name: str, index: dict, shards: dict[str, list[str]] | None = None) -> Path:
        out = variant(folder, tmp_path / name, drop=("model.safetensors",))
        for shard, members in (shards or {}).items():
            save_file({member: weights[member] for member in members}, out / shard)
        (out / "model.safetensors.index.json").write_text(json.dumps(index))
        return out

    halves = {"a.safetensors": names[:10], "b.safetensors": names[10:]}
    weight_map = {member: shard for shard, members in halves.items() for member in members}
    good = sharded("good", {"weight_map": weight_map}, halves)
    assert load_run(good)[1].vocab_size == 400
    one_line_refusal(sharded("no_map", {"metadata": {}}, halves), r"index.json has no weight_map")
    outside = sharded("outside", {"weight_map": {names[0]: "../good/a.safetensors"}})
    one_line_refusal(outside, r"weight_map's \S+ points outside the folder \(../good/a.safetensors\)")
    moved = {**weight_map, names[0]: "b.safetensors"}
    one_line_refusal(sharded("moved", {"weight_map": moved}, halves), r"safetensors (holds|lacks) \S+, which")
    for name, content in (("corrupt", b"garbage" * 10), ("empty", b"")):
        broken = variant(folder, tmp_path / name)
        (broken / "model.safetensors").write_bytes(content)
        one_line_refusal(broken, rf"{name}/model.safetensors is not a readable safetensors file")
    listed = variant(folder, tmp_path / "listed", drop=("model.safetensors",))
    torch.save([torch.zeros(1)], listed / "pytorch_model.bin")
    one_line_refusal(listed, r"pytorch_model.bin holds a list, not a dict of named tensors")
    code = variant(folder, tmp_path / "code", drop=("model.safetensors",))
    torch.save({"x": Path("anything")}, code / "pytorch_model.bin")  # a pickled object, not a tensor
    one_line_refusal(code, r"pytorch_model.bin is not a file of tensors alone .*weights_only=True")
    binary = variant(folder, tmp_path / "binary", drop=("model.safetensors",))
    torch.save(weights, binary / "pytorch_model.bin")
    assert load_run(binary)[1].vocab_size == 400
    zeroed = variant(folder, tmp_path / "zeroed", drop=("model.safetensors",))  # torch checks no CRC-32
    data, first = (
        bytearray((binary / "pytorch_model.bin").read_bytes()),
        max(weights.values(), key=torch.numel),
    )
    at = data.find(first.numpy().tobytes()[:64])
    assert at > 0
    data[at : at + 64] = bytes(64)
    (zeroed / "pytorch_model.bin").write_bytes(bytes(data))
    one_line_refusal(zeroed, r"pytorch_model.bin is damaged: its entry \S+ does not match the checksum")
    packed = variant(folder, tmp_path / "packed", drop=("model.safetensors",))  # a few KB that inflate to GB
    with (
        zipfile.ZipFile(binary / "pytorch_model.bin") as stored,
        zipfile.ZipFile(packed / "pytorch_model.bin", "w", zipfile.ZIP_DEFLATED) as deflated,
    ):
        for entry in stored.infolist():
            deflated.writestr(entry.filename, stored.read(entry.filename))
    one_line_refusal(
        packed, r"pytorch_model.bin is not a checkpoint torch.save wrote: its entry \S+ is compressed"
    )


@pytest.mark.parametrize(
    ("ids", "match"),
    [  # each was accepted: the model here stopped on its tokenizer's eos, transformers on the config's
        ({"eos_token_id": 5}, r"config.json: eos_token_id=5 is '.*', but the tokenizer's end of text is"),
        ({"forced_eos_token_id": 5}, r"config.json: forced_eos_token_id=5 is '.*', but the tokenizer's"),
        ({"pad_token_id": "x"}, r"config.json: pad_token_id='x' is not a token id \(an integer\)"),
        ({"bos_token_id": True}, r"config.json: bos_token_id=True is not a token id \(an integer\)"),
    ],
)
def test_special_ids_of_the_config_must_be_the_tokenizers(gpt2_folder, tmp_path, ids, match):
    folder, _ = gpt2_folder
    one_line_refusal(variant(folder, tmp_path / "ids", ids), match)


def test_a_special_id_past_the_vocabulary_is_a_warning(gpt2_folder, tmp_path, caplog):
    """A tiny model keeping GPT2Config's default eos_token_id=50256 over 400 rows: no token has the role."""
    folder, _ = gpt2_folder
    with caplog.at_level(logging.WARNING, logger="lightning_llm"):
        load_run(variant(folder, tmp_path / "ids", {"eos_token_id": 50256, "bos_token_id": -5}))
    assert "eos_token_id=50256 is no token id of this vocabulary (0 to 399)" in caplog.text
    assert "bos_token_id=-5 is no token id" in caplog.text


def test_json_nested_too_deeply_is_one_line(gpt2_folder, tmp_path):
    folder, _ = gpt2_folder
    deep = variant(folder, tmp_path / "deep")
    (deep / "config.json").write_text("[" * 100_000 + "]" * 100_000)
    one_line_refusal(deep, r"config.json is not readable JSON")
    digits = variant(folder, tmp_path / "digits", {"n_positions": None})  # a number Python will not convert
    (digits / "config.json").write_text(
        (digits / "config.json").read_text()[:-1] + ', "n_positions": ' + "9" * 5000 + "}"
    )
    one_line_refusal(digits, r"digits/config.json is not readable JSON: Exceeds the limit \(4300 digits\)")
    index = variant(folder, tmp_path / "index", drop=("model.safetensors",))
    (index / "model.safetensors.index.json").write_text("[" * 100_000 + "]" * 100_000)
    one_line_refusal(index, r"index.json")


def test_a_config_far_larger_than_its_weights_is_refused_before_taking_memory(gpt2_folder, tmp_path):
    """model_params compares the sizes whose tensors are present; a size whose tensor is missing (the
    embedding of a 2**22-token vocabulary) must not be built either: it would take 2 GB for a folder of
    a few hundred KB."""
    folder, _ = gpt2_folder
    untied = {"vocab_size": 2**22, "tie_word_embeddings": False}
    big_vocab = variant(folder, tmp_path / "vocab", untied, gpt2_state(**{"transformer.wte.weight": None}))
    one_line_refusal(big_vocab, r"config.json: its model describes more than [\d,]+ weights, its stored")
    from lightning_llm.parts import _check_source_config  # model.init_from=<folder>: the same check

    with pytest.raises(HFFolderError, match="its model describes more than"):
        _check_source_config(str(big_vocab), lambda: GPT(GPTConfig(vocab_size=2**22, n_embd=32, n_head=2)))


def test_gpt2_spellings_that_compute_the_same_are_accepted(gpt2_folder, tmp_path):
    """gelu_pytorch_tanh is gelu_new; reorder_and_upcast_attn only reorders float32 arithmetic. A shape
    mismatch names the file's shape, as the file holds it (GPT-2 stores its Linear layers transposed)."""
    folder, reference = gpt2_folder
    ids = token_ids(reference.config.vocab_size)
    for config in ({"activation_function": "gelu_pytorch_tanh"}, {"reorder_and_upcast_attn": True}):
        same = variant(folder, tmp_path / next(iter(config)), config=config)
        loaded = transformers.AutoModelForCausalLM.from_pretrained(same, attn_implementation="eager").eval()
        with torch.no_grad():
            assert (load_run(same)[0](ids) - loaded(ids).logits).abs().max() < TOL
    narrow = variant(folder, tmp_path / "narrow", weights=gpt2_state(**{"transformer.h.0.mlp.c_fc.weight":
                                                                       torch.zeros(32, 64)}))  # fmt: skip
    one_line_refusal(
        narrow, r"c_fc.weight has shape \(32, 64\), but blocks.0.mlp.c_fc.weight here needs \(32, 128\)"
    )


# --------------------------------------------------------------------------- through the command lines


@pytest.mark.slow
def test_generate_export_and_fine_tune_through_the_command_lines(gpt2_folder, tmp_path, cache_dir):
    folder, reference = gpt2_folder
    generated = subprocess.run(
        [sys.executable, "-m", "lightning_llm.generate", str(folder), "--prompt", "The", "--max-new-tokens",
         "8", "--temperature", "0"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert generated.returncode == 0, generated.stderr[-2000:]
    hf_tokenizer = transformers.AutoTokenizer.from_pretrained(folder)
    prompt = torch.tensor([hf_tokenizer.encode("The")])
    expected = reference.generate(
        prompt, max_new_tokens=8, do_sample=False, eos_token_id=None, pad_token_id=0, attention_mask=None
    )
    assert generated.stdout.rstrip("\n") == hf_tokenizer.decode(expected[0])  # transformers' greedy text

    run = tmp_path / "run"
    summary = run_cli(f"model.init_from={folder}", "trainer.max_steps=4", run_dir=run, cache_dir=cache_dir)
    assert summary["step"] == 4
    model, _, config = load_run(run)  # the checkpoint records GPT-2's shape, not the default gpt's
    assert {k: config["model"][k] for k in ("n_layer", "n_embd", "bias")} == {
        "n_layer": 2,
        "n_embd": 32,
        "bias": True,
    }

    out = tmp_path / "exported"
    exported = subprocess.run(
        [sys.executable, "-m", "lightning_llm.export", str(run), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert exported.returncode == 0, exported.stderr[-2000:]
    loaded = transformers.AutoModelForCausalLM.from_pretrained(out).eval()
    # fine-tuned as a causal LM, it kept the folder's vocabulary: no special token was added
    assert loaded.config.vocab_size == reference.config.vocab_size
    ids = token_ids(reference.config.vocab_size)
    with torch.no_grad():
        assert (loaded(ids).logits - model(ids)[..., : loaded.config.vocab_size]).abs().max() < TOL
    again = subprocess.run(
        [sys.executable, "-m", "lightning_llm.export", str(run), "--out", str(out)],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert (
        again.returncode == 2 and again.stderr.startswith("error: --out") and "Traceback" not in again.stderr
    )


# --------------------------------------------------------------------------- BERT

BERT_SPECIALS = {"pad_token": "[PAD]", "unk_token": "[UNK]", "cls_token": "[CLS]", "sep_token": "[SEP]",
                 "mask_token": "[MASK]"}  # fmt: skip


def wordpiece_tokenizer(vocab_size: int = 300):
    """A small BERT-style tokenizer (lowercasing WordPiece with [PAD] [UNK] [CLS] [SEP] [MASK])."""
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, trainers

    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    backend.decoder = decoders.WordPiece()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=list(BERT_SPECIALS.values()))
    backend.train_from_iterator(list(topics.values())[:60], trainer)
    return backend


def perturbed(model: torch.nn.Module) -> torch.nn.Module:
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.add_(0.1 * torch.randn_like(parameter))
    return model.eval()


@pytest.fixture(scope="module", params=["BertForMaskedLM", "BertForPreTraining"])
def bert_folder(request, tmp_path_factory) -> tuple[Path, object]:
    """A random BERT with every parameter perturbed, saved with its WordPiece tokenizer; and the model."""
    folder = tmp_path_factory.mktemp(request.param)
    backend = wordpiece_tokenizer()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, **BERT_SPECIALS)
    config = transformers.BertConfig(
        vocab_size=backend.get_vocab_size(), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=48,
    )  # fmt: skip
    torch.manual_seed(0)
    model = perturbed(getattr(transformers, request.param)(config))
    model.save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder, model


def bert_batch(vocab: int) -> dict[str, torch.Tensor]:
    """Token ids past the specials, a padded second row and a second segment."""
    ids = 5 + token_ids(vocab - 5, (2, 20))
    attention_mask = torch.ones_like(ids)
    attention_mask[1, 13:] = 0
    token_type_ids = torch.zeros_like(ids)
    token_type_ids[:, 9:] = 1
    return {"input_ids": ids, "attention_mask": attention_mask, "token_type_ids": token_type_ids}


def test_an_imported_bert_gives_transformers_outputs(bert_folder):
    folder, reference = bert_folder
    model, tokenizer, config = load_run(folder)
    assert config["model"]["name"] == "encoder" and config["model"]["prenorm"] is False
    # BERT's own special tokens play the roles: fine-tuning uses the [MASK] and [CLS] embeddings it learned
    fast = transformers.AutoTokenizer.from_pretrained(folder)
    roles = {"<pad>": fast.pad_token_id, "<mask>": fast.mask_token_id, "<cls>": fast.cls_token_id,
             "<sep>": fast.sep_token_id, "<unk>": fast.unk_token_id}  # fmt: skip
    assert {role: tokenizer.special_token(role) for role in roles} == {
        "<pad>": "[PAD]", "<mask>": "[MASK]", "<cls>": "[CLS]", "<sep>": "[SEP]", "<unk>": "[UNK]"
    }  # fmt: skip
    assert [
        tokenizer.pad_id,
        tokenizer.mask_id,
        tokenizer.cls_id,
        tokenizer.sep_id,
        tokenizer.unk_id,
    ] == list(roles.values())
    assert tokenizer.encode("The with statement") == reference_tokens(folder, "The with statement")

    vocab = reference.config.vocab_size
    batch = bert_batch(vocab)
    labels = torch.full_like(batch["input_ids"], -100)
    labels[:, 3:7] = batch["input_ids"][:, 3:7]
    with torch.no_grad():
        expected = reference(**batch, labels=labels)
        hidden = model.encode(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
        logits = model.mlm_logits(hidden)[..., :vocab]  # past it: <bos> and <eos>, added here
    real = batch["attention_mask"].bool()  # padded positions' states are meaningless on both sides
    mlm = expected.logits if hasattr(expected, "logits") else expected.prediction_logits
    assert (logits - mlm)[real].abs().max().item() < TOL
    if hasattr(expected, "seq_relationship_logits"):  # BertForPreTraining: its NSP head is our classifier
        assert (model.classify(hidden) - expected.seq_relationship_logits).abs().max().item() < TOL
        nsp_labels = torch.tensor([0, 1])
        with torch.no_grad():
            expected = reference(**batch, labels=labels, next_sentence_label=nsp_labels)
        ours = F.cross_entropy(logits.flatten(0, 1), labels.flatten()) + F.cross_entropy(
            model.classify(hidden), nsp_labels
        )
    else:
        ours = F.cross_entropy(logits.flatten(0, 1), labels.flatten())
    assert abs(ours.item() - expected.loss.item()) < TOL


def faithful_encoder(vocab_size: int, num_classes: int = 0, **options) -> Encoder:
    torch.manual_seed(3)
    params = dict(
        n_layer=2, n_head=2, n_embd=32, block_size=32, prenorm=False, mlp="gelu_erf", norm_eps=1e-12
    )
    config = EncoderConfig(vocab_size=vocab_size, num_classes=num_classes, **{**params, **options})
    return perturbed(Encoder(config))


def encoder_node(model: Encoder) -> dict:
    return {"name": "encoder", **{k: v for k, v in vars(model.config).items() if k != "vocab_size"}}


@pytest.mark.parametrize("num_classes", [0, 2], ids=["BertForMaskedLM", "BertForPreTraining"])
def test_an_exported_encoder_loads_in_transformers_with_the_same_outputs(bert_folder, tmp_path, num_classes):
    folder, _ = bert_folder
    tokenizer = huggingface.load_hf_tokenizer(folder)
    model = faithful_encoder(tokenizer.vocab_size, num_classes)
    out = save_hf_folder(model, encoder_node(model), tokenizer, tmp_path / "out")
    auto = transformers.AutoModelForPreTraining if num_classes else transformers.AutoModelForMaskedLM
    loaded, info = auto.from_pretrained(out, output_loading_info=True)
    assert info["missing_keys"] == info["unexpected_keys"] == set() and not info["mismatched_keys"]
    assert type(loaded).__name__ == ("BertForPreTraining" if num_classes else "BertForMaskedLM")
    batch = bert_batch(tokenizer.vocab_size)
    with torch.no_grad():
        expected = loaded.eval()(**batch)
        hidden = model.encode(batch["input_ids"], batch["attention_mask"], batch["token_type_ids"])
    mlm = expected.prediction_logits if num_classes else expected.logits
    real = batch["attention_mask"].bool()
    assert (model.mlm_logits(hidden) - mlm)[real].abs().max() < TOL  # the vocabulary is the tokenizer's
    if num_classes:
        assert (model.classify(hidden) - expected.seq_relationship_logits).abs().max() < TOL
    fast = transformers.AutoTokenizer.from_pretrained(out)
    assert (fast.mask_token, fast.cls_token, fast.mask_token_id) == ("[MASK]", "[CLS]", tokenizer.mask_id)


def test_bert_import_export_import_is_the_identity(bert_folder, tmp_path):
    folder, _ = bert_folder
    first, tokenizer, config = load_run(folder)
    second, _, _ = load_run(save_hf_folder(first, config["model"], tokenizer, tmp_path / "again"))
    rows = tokenizer.vocab_size
    for name, value in first.state_dict().items():
        assert torch.equal(second.state_dict()[name][:rows], value[:rows]), name


def test_the_one_wrong_part_of_a_fused_tensor_is_named(bert_folder, tmp_path):
    """BERT's query, key and value make our c_attn: a wrong key is named as the key, not the query (the
    message said the query's right shape did not fit)."""
    folder, _ = bert_folder
    key = "bert.encoder.layer.0.attention.self.key.weight"
    wrong = variant(folder, tmp_path / "key", weights=gpt2_state(**{key: torch.zeros(16, 32)}))
    one_line_refusal(
        wrong,
        rf"{key} has shape \(16, 32\), but blocks.0.attn.c_attn.weight here needs \(32, 32\) from each",
    )
    numbered = variant(folder, tmp_path / "numbered", drop=("model.safetensors",))
    torch.save({**huggingface.read_hf_weights(folder), 5: torch.zeros(1)}, numbered / "pytorch_model.bin")
    one_line_refusal(numbered, r"pytorch_model.bin: entry 5 is keyed by a int, not a name")


def test_encoders_without_a_bert_counterpart_are_refused_naming_the_option(bert_folder, tmp_path):
    folder, _ = bert_folder
    tokenizer = huggingface.load_hf_tokenizer(folder)
    pre_ln = faithful_encoder(tokenizer.vocab_size, prenorm=True)
    with pytest.raises(HFFolderError, match=r"model.prenorm=True has no BERT counterpart"):
        save_hf_folder(pre_ln, encoder_node(pre_ln), tokenizer, tmp_path / "a")
    three = faithful_encoder(tokenizer.vocab_size, num_classes=3)
    with pytest.raises(HFFolderError, match=r"model.num_classes=3 has no BERT counterpart"):
        save_hf_folder(three, encoder_node(three), tokenizer, tmp_path / "b")
    silu = write_config(tmp_path / "silu", architectures=["BertForMaskedLM"], hidden_act="silu")
    with pytest.raises(HFFolderError, match=r"hidden_act='silu' has no counterpart here"):
        load_run(silu)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


@pytest.mark.parametrize("hidden_act", ["relu", "gelu_new"])
def test_the_mlm_head_uses_the_blocks_activation_both_ways(tmp_path, hidden_act):
    """BERT's head transform applies hidden_act, as its blocks do: an import with relu (or tanh GELU) gives
    transformers' logits, and so does an export of an encoder with mlp=relu (or gelu)."""
    backend = wordpiece_tokenizer()
    config = transformers.BertConfig(
        vocab_size=backend.get_vocab_size(), hidden_size=32, num_hidden_layers=1, num_attention_heads=4,
        intermediate_size=128, max_position_embeddings=48, hidden_act=hidden_act,
    )  # fmt: skip
    torch.manual_seed(0)
    reference = perturbed(transformers.BertForMaskedLM(config))
    reference.save_pretrained(tmp_path / "in")
    transformers.PreTrainedTokenizerFast(tokenizer_object=backend, **BERT_SPECIALS).save_pretrained(
        tmp_path / "in"
    )
    model, tokenizer, node = load_run(tmp_path / "in")
    ids = bert_batch(config.vocab_size)["input_ids"]
    with torch.no_grad():
        assert (model(ids)[..., : config.vocab_size] - reference(ids).logits).abs().max() < TOL
    ours = faithful_encoder(tokenizer.vocab_size, mlp=node["model"]["mlp"], n_layer=1)
    out = save_hf_folder(ours, encoder_node(ours), tokenizer, tmp_path / "out")
    assert json.loads((out / "config.json").read_text())["hidden_act"] in (hidden_act, "gelu_pytorch_tanh")
    loaded = transformers.AutoModelForMaskedLM.from_pretrained(out).eval()
    with torch.no_grad():
        assert (ours(ids) - loaded(ids).logits).abs().max() < TOL


def test_a_hub_bert_with_pooler_nsp_head_and_old_names_loads(bert_folder, tmp_path, caplog):
    """bert-base-uncased's file holds its pretraining pooler and next-sentence head under BertForMaskedLM,
    and old checkpoints name LayerNorm parameters gamma and beta: accepted as transformers accepts them; an
    MLM model drops the two heads, naming them in a warning, and a classifier takes the pooler. Any other
    unknown tensor is still refused."""
    folder, reference = bert_folder
    if type(reference).__name__ != "BertForMaskedLM":
        pytest.skip("the hub layout is BertForMaskedLM's")
    from lightning_llm.checkpoint import init_from

    pooler = {"bert.pooler.dense.weight": torch.randn(32, 32), "bert.pooler.dense.bias": torch.randn(32)}
    heads = {**pooler, "cls.seq_relationship.weight": torch.randn(2, 32), "cls.seq_relationship.bias":
             torch.zeros(2)}  # fmt: skip

    def hub(state):
        renamed = {
            re.sub(r"LayerNorm\.weight$", "LayerNorm.gamma", name): value for name, value in state.items()
        }
        return {re.sub(r"LayerNorm\.bias$", "LayerNorm.beta", name): value for name, value in renamed.items()}

    old = variant(folder, tmp_path / "hub", weights=lambda state: hub({**state, **heads}))
    with caplog.at_level("WARNING", logger="lightning_llm"):
        model, tokenizer, node = load_run(old)
    warned = " ".join(record.getMessage() for record in caplog.records)
    assert "dropped bert.pooler.dense.bias, bert.pooler.dense.weight, cls.seq_relationship" in warned
    batch = bert_batch(reference.config.vocab_size)
    with torch.no_grad():
        got = model(batch["input_ids"])[..., : reference.config.vocab_size]
        assert (got - reference(batch["input_ids"]).logits).abs().max() < TOL
    classifier = Encoder(EncoderConfig(vocab_size=tokenizer.vocab_size, num_classes=5, **{
        k: v for k, v in node["model"].items() if k != "name"}))  # fmt: skip
    loaded, new, _ = init_from(classifier, old)
    assert "pooler.weight" in loaded and new == ["classifier.weight", "classifier.bias"]
    assert torch.equal(classifier.pooler.weight, pooler["bert.pooler.dense.weight"])
    extra = variant(
        folder, tmp_path / "extra", weights=lambda state: {**state, "cls.other.weight": torch.ones(2)}
    )
    one_line_refusal(extra, r"cls.other.weight has no counterpart")


@pytest.mark.parametrize(
    ("architecture", "config", "match"),
    [
        ("bert", {"is_decoder": True}, r"BERT option is_decoder=True has no counterpart"),
        ("bert", {"add_cross_attention": True}, r"BERT option add_cross_attention=True has no counterpart"),
        ("bert", {"num_hidden_layers": 3}, r"holds no tensor of layer 2, though config.json says num_hidden"),
        ("bert", {"hidden_act": None, "hidden_size": "32"}, r"hidden_size='32' is not an integer"),
        ("marian", {"normalize_before": True}, r"Marian option normalize_before=True has no counterpart"),
        ("marian", {"add_bias_logits": True}, r"Marian option add_bias_logits=True has no counterpart"),
        ("marian", {"normalize_embedding": True}, r"Marian option normalize_embedding=True has no"),
        ("marian", {"scale_embedding": False}, r"Marian option scale_embedding=False has no counterpart"),
        ("marian", {"activation_function": "tanh"}, r"Marian option activation_function='tanh' has no"),
        ("marian", {"max_position_embeddings": 2**30}, r"max_position_embeddings=1073741824 is not an"),
        ("marian", {"decoder_start_token_id": 99999}, r"decoder_start_token_id=99999 is not a token id of"),
        ("marian", {"forced_eos_token_id": 5}, r"forced_eos_token_id=5 has no counterpart here"),
        (
            "marian",
            {"decoder_layers": 1},
            r"decoder.layers.1.\S+ is a layer past config.json's decoder_layers",
        ),
    ],
)
def test_bert_and_marian_options_that_change_the_computation_are_refused(
    bert_folder, marian_folder, tmp_path, architecture, config, match
):
    folder, _ = bert_folder if architecture == "bert" else marian_folder
    one_line_refusal(variant(folder, tmp_path / "v", config=config), match)


@pytest.mark.slow
def test_classification_fine_tunes_from_a_bert_folder(bert_folder, make_cfg, tmp_path, caplog):
    """``model.init_from=<BERT folder>``: the encoder is BERT's, the classifier head is new (or, from
    BertForPreTraining, sized anew: the task has 8 classes, its next-sentence head 2)."""
    from lightning_llm.train import train

    folder, _ = bert_folder
    overrides = [
        "model=encoder",
        "objective=classification",
        "data=pydoc_topics",
        f"model.init_from={folder}",
    ]
    with caplog.at_level("INFO", logger="lightning_llm"):
        summary, objects = train(make_cfg(*overrides, "trainer.max_steps=3"), run_dir=tmp_path / "run")
    assert summary["step"] == 3 and objects["model"].config.num_classes == 8
    assert objects["model"].config.prenorm is False and objects["model"].config.n_embd == 32
    loaded = next(record.getMessage() for record in caplog.records if "loaded" in record.getMessage())
    assert "classifier.weight" in loaded.split("new:")[1] and "blocks.0.attn.c_attn.weight" not in loaded
    assert objects["tokenizer"].cls_id == transformers.AutoTokenizer.from_pretrained(folder).cls_token_id
    from lightning_llm.export import export  # a classifier has no faithful counterpart: refused, naming why

    with pytest.raises(
        ValueError, match=r"trained with objective=classification: its classifier holds this run's own labels"
    ):
        export(tmp_path / "run", tmp_path / "exported")
    assert not (tmp_path / "exported").exists()


# --------------------------------------------------------------------------- Marian

MARIAN_SPECIALS = ["</s>", "<unk>", "<pad>"]  # Marian's spellings: eos 0, unk 1; pad starts the decoder


def marian_tokenizer(vocab_size: int = 300):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.Metaspace()
    backend.decoder = decoders.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=MARIAN_SPECIALS)
    backend.train_from_iterator(list(topics.values())[:60], trainer)
    return backend


@pytest.fixture(scope="module")
def marian_folder(tmp_path_factory) -> tuple[Path, object]:
    """A random MarianMTModel (OPUS-MT's options: swish, scaled embeddings) with every saved parameter
    perturbed, and its tokenizer. Its sinusoidal position tables are derived, not saved, so they stay."""
    folder = tmp_path_factory.mktemp("marian")
    backend = marian_tokenizer()
    fast = transformers.PreTrainedTokenizerFast(
        tokenizer_object=backend, eos_token="</s>", unk_token="<unk>", pad_token="<pad>"
    )
    pad = backend.token_to_id("<pad>")
    config = transformers.MarianConfig(
        vocab_size=backend.get_vocab_size(), d_model=32, encoder_layers=2, decoder_layers=2,
        encoder_attention_heads=4, decoder_attention_heads=4, encoder_ffn_dim=128, decoder_ffn_dim=128,
        max_position_embeddings=48, pad_token_id=pad, decoder_start_token_id=pad, eos_token_id=0,
        forced_eos_token_id=None, scale_embedding=True, activation_function="swish",
    )  # fmt: skip
    torch.manual_seed(0)
    model = transformers.MarianMTModel(config)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "embed_positions" not in name:
                parameter.add_(0.1 * torch.randn_like(parameter))
    model.eval().save_pretrained(folder)
    fast.save_pretrained(folder)
    return folder, model


def marian_sources(vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Source ids past the specials, the second row padded."""
    ids = 3 + token_ids(vocab - 3, (2, 14))
    mask = torch.ones_like(ids, dtype=torch.bool)
    mask[1, 9:] = False
    return ids, mask


def hf_generate(model, ids, mask, num_beams: int) -> list[list[int]]:
    """transformers' search with nothing forced or banned; the start token dropped, cut at eos, as ours."""
    out = model.generate(
        ids, attention_mask=mask.long(), max_new_tokens=12, do_sample=False, num_beams=num_beams,
        forced_eos_token_id=None, bad_words_ids=None, length_penalty=1.0, early_stopping=True,
    )  # fmt: skip
    rows = [row[1:] for row in out.tolist()]
    eos = model.config.eos_token_id
    return [row[: row.index(eos)] if eos in row else row for row in rows]


def test_an_imported_marian_gives_transformers_logits_and_searches(marian_folder):
    folder, reference = marian_folder
    model, tokenizer, config = load_run(folder)
    assert config["model"]["name"] == "decoder" and config["model"]["positions_layout"] == "halves"
    assert (tokenizer.eos_id, tokenizer.pad_id) == (0, reference.config.pad_token_id)  # Marian's own
    vocab = reference.config.vocab_size
    ids, mask = marian_sources(vocab)
    target = 3 + token_ids(vocab - 3, (2, 9))
    decoder_input_ids = torch.cat([torch.full((2, 1), tokenizer.bos_id), target], dim=1)  # as the data has it
    with torch.no_grad():
        hf_inputs = decoder_input_ids.clone()
        hf_inputs[:, 0] = reference.config.decoder_start_token_id
        expected = reference(input_ids=ids, attention_mask=mask.long(), decoder_input_ids=hf_inputs).logits
        got = model(ids, mask, decoder_input_ids)[..., :vocab]
    assert (got - expected).abs().max().item() < TOL
    for num_beams in (1, 4):
        ours = model.generate(ids, mask, 12, tokenizer.bos_id, tokenizer.eos_id, num_beams=num_beams)
        assert ours == hf_generate(reference, ids, mask, num_beams), num_beams


@pytest.mark.parametrize("num_beams", [1, 4])
def test_marians_forced_eos_ends_a_cut_off_search_as_transformers_does(marian_folder, tmp_path, num_beams):
    folder, reference = marian_folder
    config = json.loads((folder / "config.json").read_text())
    forced = variant(folder, tmp_path / "forced", config={"forced_eos_token_id": config["eos_token_id"]})
    model, tokenizer, node = load_run(forced)
    assert node["model"]["forced_eos"] is True
    ids, mask = marian_sources(reference.config.vocab_size)
    expected = reference.generate(
        ids, attention_mask=mask.long(), max_new_tokens=4, do_sample=False, num_beams=num_beams,
        forced_eos_token_id=config["eos_token_id"], length_penalty=1.0, early_stopping=True,
    )  # fmt: skip
    expected = [
        [t for t in row[1:] if t not in (0, reference.config.pad_token_id)] for row in expected.tolist()
    ]
    assert model.generate(ids, mask, 4, tokenizer.bos_id, tokenizer.eos_id, num_beams=num_beams) == expected
    assert all(len(row) <= 3 for row in expected)  # cut off: the 4th token was the forced eos
    exported = save_hf_folder(model, node["model"], tokenizer, tmp_path / "out")
    assert json.loads((exported / "config.json").read_text())["forced_eos_token_id"] == config["eos_token_id"]


def test_a_marian_whose_config_ends_texts_on_another_token_is_refused(marian_folder, tmp_path):
    folder, _ = marian_folder
    other = variant(folder, tmp_path / "eos", {"eos_token_id": 7, "forced_eos_token_id": 7})
    one_line_refusal(other, r"config.json: eos_token_id=7 is '.*', but the tokenizer's end of text is '</s>'")


def test_a_saved_marian_position_table_must_be_its_sinusoids(marian_folder, tmp_path):
    """Some versions save Marian's sinusoid tables: the true ones load, any other table is refused (it
    would describe another model), never ignored."""
    from safetensors.torch import save_file

    folder, reference = marian_folder
    weights = huggingface.read_hf_weights(folder)
    table = reference.state_dict()["model.encoder.embed_positions.weight"]
    for name, saved in (("true", table), ("trained", table + 0.01 * torch.randn_like(table))):
        copy = tmp_path / name
        copy.mkdir()
        for file in ("config.json", "tokenizer.json", "tokenizer_config.json"):
            (copy / file).write_bytes((folder / file).read_bytes())
        save_file(
            {**weights, "model.encoder.embed_positions.weight": saved.contiguous()},
            copy / "model.safetensors",
        )
    load_run(tmp_path / "true")
    with pytest.raises(HFFolderError, match=r"embed_positions.weight is not the sinusoidal table"):
        load_run(tmp_path / "trained")


def faithful_decoder(vocab_size: int, **options) -> torch.nn.Module:
    from lightning_llm.models.encoder_decoder import EncoderDecoder, EncoderDecoderConfig

    torch.manual_seed(4)
    params = dict(n_layer=2, n_head=4, n_embd=32, block_size=32, bias=True, prenorm=False, mlp="relu")
    params["positions_layout"] = "halves"
    return perturbed(EncoderDecoder(EncoderDecoderConfig(vocab_size=vocab_size, **{**params, **options})))


def decoder_node(model) -> dict:
    return {"name": "decoder", **{k: v for k, v in vars(model.config).items() if k != "vocab_size"}}


def test_an_exported_decoder_loads_in_transformers_and_translates_alike(marian_folder, tmp_path):
    folder, _ = marian_folder
    tokenizer = huggingface.load_hf_tokenizer(folder)
    model = faithful_decoder(tokenizer.vocab_size)  # the paper's Transformer: ReLU, biases, post-LN
    out = save_hf_folder(model, decoder_node(model), tokenizer, tmp_path / "out")
    loaded, info = transformers.AutoModelForSeq2SeqLM.from_pretrained(out, output_loading_info=True)
    assert info["missing_keys"] == info["unexpected_keys"] == set() and not info["mismatched_keys"]
    loaded.eval()
    assert loaded.config.decoder_start_token_id == tokenizer.bos_id  # ours starts from bos
    ids, mask = marian_sources(tokenizer.vocab_size)
    decoder_input_ids = torch.cat([torch.full((2, 1), tokenizer.bos_id), ids[:, :6]], dim=1)
    with torch.no_grad():
        expected = loaded(input_ids=ids, attention_mask=mask.long(), decoder_input_ids=decoder_input_ids)
        assert (model(ids, mask, decoder_input_ids) - expected.logits).abs().max() < TOL
    for num_beams in (1, 4):
        ours = model.generate(ids, mask, 12, tokenizer.bos_id, tokenizer.eos_id, num_beams=num_beams)
        assert ours == hf_generate(loaded, ids, mask, num_beams), num_beams


def test_marian_import_export_import_is_the_identity(marian_folder, tmp_path):
    folder, _ = marian_folder
    first, tokenizer, config = load_run(folder)
    second, _, again = load_run(save_hf_folder(first, config["model"], tokenizer, tmp_path / "again"))
    assert again["model"]["decoder_start_id"] == config["model"]["decoder_start_id"]
    rows = tokenizer.vocab_size
    for name, value in first.state_dict().items():
        assert torch.equal(second.state_dict()[name][:rows], value[:rows]), name


def test_decoders_without_a_marian_counterpart_are_refused_naming_the_option(marian_folder, tmp_path):
    folder, _ = marian_folder
    tokenizer = huggingface.load_hf_tokenizer(folder)
    interleaved = faithful_decoder(tokenizer.vocab_size, positions_layout="interleaved")
    with pytest.raises(
        HFFolderError, match=r"model.positions_layout='interleaved' has no Marian counterpart"
    ):
        save_hf_folder(interleaved, decoder_node(interleaved), tokenizer, tmp_path / "a")
    biased = tmp_path / "biased"
    biased.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json"):
        (biased / name).write_bytes((folder / name).read_bytes())
    weights = huggingface.read_hf_weights(folder)
    weights["final_logits_bias"] = torch.ones_like(weights["final_logits_bias"])
    from safetensors.torch import save_file

    save_file(weights, biased / "model.safetensors")
    with pytest.raises(HFFolderError, match=r"final_logits_bias is not zero"):
        load_run(biased)
    unscaled = write_config(tmp_path / "unscaled", architectures=["MarianMTModel"], scale_embedding=False)
    with pytest.raises(HFFolderError, match=r"scale_embedding=False has no counterpart here"):
        load_run(unscaled)


@pytest.mark.slow
def test_the_command_translates_as_transformers_searches(marian_folder):
    """``generate <Marian folder>``: the folder's tokenizer, the same source ids, transformers' beams."""
    folder, reference = marian_folder
    text = "The assert statement is a convenient way to insert debugging assertions"
    translated = subprocess.run(
        [sys.executable, "-m", "lightning_llm.generate", str(folder), "--prompt", text, "--num-beams", "4",
         "--max-new-tokens", "12"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert translated.returncode == 0, translated.stderr[-2000:]
    tokenizer = huggingface.load_hf_tokenizer(folder)
    ids = torch.tensor([tokenizer.encode(text)])
    expected = hf_generate(reference, ids, torch.ones_like(ids, dtype=torch.bool), num_beams=4)[0]
    assert expected and translated.stdout == tokenizer.decode(expected) + "\n"


@pytest.mark.slow
def test_seq2seq_fine_tunes_from_a_marian_folder(marian_folder, make_cfg, tmp_path):
    from lightning_llm.train import train

    folder, _ = marian_folder
    overrides = ["model=decoder", "objective=seq2seq", "data=reverse_words", "data.num_examples=200"]
    cfg = make_cfg(
        *overrides, f"model.init_from={folder}", "trainer.max_steps=3", "objective.max_new_tokens=4"
    )
    summary, objects = train(cfg, run_dir=tmp_path / "run")
    assert summary["step"] == 3 and objects["model"].config.decoder_start_id == objects["tokenizer"].pad_id
    model, _, config = load_run(tmp_path / "run")
    assert config["model"]["positions_layout"] == "halves" and config["model"]["mlp"] == "silu"


@pytest.mark.slow
def test_a_folder_without_a_tokenizer_fine_tunes_with_the_one_passed(gpt2_folder, make_cfg, tmp_path):
    """The refusal says to pass ``tokenizer=pretrained tokenizer.path=...``; doing so works."""
    from lightning_llm.train import train

    folder, _ = gpt2_folder
    bare = tmp_path / "bare"
    bare.mkdir()
    for name in ("config.json", "model.safetensors"):
        (bare / name).write_bytes((folder / name).read_bytes())
    passed = ["tokenizer=pretrained", f"tokenizer.path={folder / 'tokenizer.json'}"]
    cfg = make_cfg(*passed, f"model.init_from={bare}", "trainer.max_steps=2", "data.block_size=32")
    summary, objects = train(cfg, run_dir=tmp_path / "run")
    assert summary["step"] == 2 and objects["tokenizer"].eos_id == 0  # GPT-2's <|endoftext|>
    assert objects["tokenizer"].vocab_size == 400 and not objects["tokenizer"].added_tokens  # the folder's


def test_non_finite_weights_and_a_second_tokenizer_are_refused(gpt2_folder, tmp_path):
    folder, _ = gpt2_folder

    def poisoned(state):
        state["transformer.ln_f.weight"][0] = float("nan")
        return state

    one_line_refusal(
        variant(folder, tmp_path / "nan", weights=poisoned), r"ln_f.weight holds NaN or infinite"
    )
    with pytest.raises(HFFolderError, match=r"has its own tokenizer, which its model was trained with"):
        load_run(folder, folder / "tokenizer.json")  # a folder with a tokenizer is read with its own


def test_imported_bert_and_marian_keep_their_vocabularies_and_give_transformers_mlm_loss(
    bert_folder, marian_folder
):
    """No special-token row is added where the folder has a conventional token for the role (BERT's [CLS]
    starts and [SEP] ends a text; Marian's decoder starts from <pad>): no softmax mass goes to untrained
    rows, so the masked-LM loss is transformers' own."""
    for folder, _ in (bert_folder, marian_folder):
        _, tokenizer, _ = load_run(folder)
        assert (
            tokenizer.added_tokens == []
            and tokenizer.vocab_size == json.loads((folder / "config.json").read_text())["vocab_size"]
        )
    folder, reference = bert_folder
    if type(reference).__name__ != "BertForMaskedLM":
        return  # the vocabulary part above is the same for the pretraining head
    model, tokenizer, _ = load_run(folder)
    ids = token_ids(reference.config.vocab_size, (2, 12))
    labels = torch.full_like(ids, -100)
    labels[:, 3::4] = ids[:, 3::4]
    masked = ids.masked_fill(labels != -100, tokenizer.mask_id)
    with torch.no_grad():
        expected = reference(input_ids=masked, labels=labels).loss
        logits = model(masked)
        ours = torch.nn.functional.cross_entropy(logits.flatten(0, 1), labels.flatten())
    assert abs(ours.item() - expected.item()) < 1e-5


def test_dropout_rates_come_in_and_go_out(gpt2_folder, tmp_path):
    folder, reference = gpt2_folder
    model, tokenizer, config = load_run(folder)
    assert config["model"]["dropout"] == reference.config.resid_pdrop == 0.1  # not 0.0: fine-tuning sees it
    out = save_hf_folder(model, config["model"], tokenizer, tmp_path / "out")
    exported = json.loads((out / "config.json").read_text())
    assert exported["resid_pdrop"] == exported["embd_pdrop"] == exported["attn_pdrop"] == 0.1


def test_a_tokenizer_larger_than_the_models_vocabulary_is_refused_to_fine_tune_from_too(
    gpt2_folder, tmp_path, make_cfg
):
    """Generate and evaluate refused it, but model.init_from=<folder> trained with the extra ids given the
    mean row: tokens the model never learnt, silently."""
    from lightning_llm.parts import _tokenizer_of_run

    folder, _ = gpt2_folder
    cut = lambda state: {k: v[:300] if k == "transformer.wte.weight" else v for k, v in state.items()}  # noqa: E731
    smaller = variant(folder, tmp_path / "smaller", config={"vocab_size": 300}, weights=cut)
    one_line_refusal(smaller, r"its tokenizer has 400 tokens, more than config.json's vocab_size=300")
    with pytest.raises(
        HFFolderError, match=r"its tokenizer has 400 tokens, more than config.json's vocab_size"
    ):
        _tokenizer_of_run(str(smaller), make_cfg(f"model.init_from={smaller}"))
