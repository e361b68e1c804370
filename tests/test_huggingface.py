"""Hugging Face folders in and out, proven against ``transformers``: a random GPT-2, BERT or Marian (every
parameter perturbed, so a misplaced gain or bias shows) imported here gives its logits (and GPT-2 its greedy
tokens, BERT its pooled next-sentence logits and its MLM loss, Marian its greedy and 4-beam translations); a
model exported from here loads in ``transformers`` with no missing or unexpected weight and gives ours;
import -> export -> import is the identity; and through the command lines, generate, export and fine-tuning
from a folder work."""

from __future__ import annotations

import json
import subprocess
import sys
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
    """The framework adds special tokens GPT-2 lacks; their rows must not be random (a random head row can
    win the argmax and make generation differ from run to run)."""
    folder, reference = gpt2_folder
    first, tokenizer, _ = load_run(folder)
    second, _, _ = load_run(folder)
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
    with pytest.raises(HFFolderError, match=r"wte.weight has shape \(400, 32\) there, \(448, 64\) here"):
        load_run(wider)


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
