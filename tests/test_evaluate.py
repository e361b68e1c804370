"""``python -m lightning_llm.evaluate``: a model scored on a split with no training gives the loss its
training run reported for the same weights and data; it takes Hugging Face folders too; bad input is one
line."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from lightning_llm.evaluate import evaluate, main
from lightning_llm.testing import run_cli

pytestmark = pytest.mark.slow  # a training run first, then Lightning's validate


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> tuple[Path, dict, Path]:
    root = tmp_path_factory.mktemp("evaluate")
    summary = run_cli(run_dir=root / "run", cache_dir=root / "cache")
    return root / "run", summary, root / "cache"


def test_the_val_loss_of_a_run_is_what_its_training_reported(trained):
    run, summary, cache = trained
    # the data settings of lightning_llm.testing.TINY, which trained the run
    scores = evaluate(str(run), ["data.block_size=32", f"paths.cache_dir={cache}"], split="val")
    assert scores["val_loss"] == pytest.approx(summary["val_loss"], rel=1e-6)
    assert scores["val_perplexity"] == pytest.approx(summary["val_perplexity"], rel=1e-6)
    assert 0 <= scores["val_accuracy"] <= 1
    # with no data settings given, the run's own: the same split, the same windows
    assert evaluate(str(run), [f"paths.cache_dir={cache}"])["val_loss"] == pytest.approx(summary["val_loss"])


def test_the_runs_own_data_settings_are_taken_where_none_are_given():
    """Composed from the defaults, a run trained with data.test_fraction=0 had its val split scored as
    "test" (the same loss to seven digits)."""
    from omegaconf import OmegaConf

    from lightning_llm.evaluate import _adopt_run_data, _run_data_choice

    run_data = {"name": "pydoc", "test_fraction": 0.0, "split_seed": 7, "block_size": 32, "gone": 1}
    assert _run_data_choice(run_data, []) == ["data=pydoc"]
    assert _run_data_choice(run_data, ["data=text"]) == []
    cfg = OmegaConf.create(
        {"data": {"name": "pydoc", "test_fraction": 0.05, "split_seed": 1234, "block_size": 64}}
    )
    _adopt_run_data(cfg, run_data, ["data.block_size=16"])
    assert OmegaConf.to_container(cfg.data) == {
        "name": "pydoc", "test_fraction": 0.0, "split_seed": 7, "block_size": 64  # the given one stays
    }  # fmt: skip
    other = OmegaConf.create({"data": {"name": "text", "test_fraction": 0.05}})
    _adopt_run_data(other, run_data, [])
    assert other.data.test_fraction == 0.05  # another plugin's data: its own defaults


def test_the_command_prints_json_and_refuses_bad_input_in_one_line(trained, tmp_path, capsys):
    run, summary, cache = trained
    command = [sys.executable, "-m", "lightning_llm.evaluate", str(run), "data.block_size=32"]
    as_trained = ["data.batch_size=8", "trainer.limit_test_batches=2"]  # TINY scored 2 test batches of 8
    result = subprocess.run(  # overrides before and after --split
        [*command, "--split", "test", *as_trained, f"paths.cache_dir={cache}"],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-2000:]
    assert json.loads(result.stdout)["test_loss"] == pytest.approx(summary["test_loss"], rel=1e-6)
    # Refusals through the same entry point, in this process: one line, no traceback.
    assert (
        main(
            [
                str(run),
                "data.block_size=32",
                f"paths.cache_dir={cache}",
                "data.test_fraction=0",
                "--split",
                "test",
            ]
        )
        == 2
    )
    assert capsys.readouterr().err.strip().splitlines()[-1].startswith("error: --split test")
    assert main([str(tmp_path / "nothing")]) == 2
    stderr = capsys.readouterr().err
    assert "Traceback" not in stderr and "no such run folder" in stderr and stderr.count("\n") == 1
    for typo, expected in (("+foo=1", "foo is not a setting"), ("data.batch_sise=8", "did you mean")):
        assert main([str(run), f"paths.cache_dir={cache}", typo]) == 2  # was ignored
        assert expected in capsys.readouterr().err


def test_a_hugging_face_folder_is_scored(tmp_path, cache_dir):
    transformers = pytest.importorskip("transformers")
    from tests.test_huggingface import byte_level_tokenizer

    backend = byte_level_tokenizer()
    fast = transformers.PreTrainedTokenizerFast(tokenizer_object=backend, eos_token="<|endoftext|>")
    config = transformers.GPT2Config(
        vocab_size=backend.get_vocab_size(), n_positions=32, n_embd=32, n_layer=1, n_head=2
    )
    transformers.GPT2LMHeadModel(config).save_pretrained(tmp_path / "gpt2")
    fast.save_pretrained(tmp_path / "gpt2")
    scores = evaluate(str(tmp_path / "gpt2"), [f"paths.cache_dir={cache_dir}"], split="val")
    assert scores["val_loss"] > 0 and scores["val_perplexity"] > 1

    # The same model in a folder without a tokenizer, which is then given as the refusal says.
    transformers.GPT2LMHeadModel.from_pretrained(tmp_path / "gpt2").save_pretrained(tmp_path / "bare")
    with pytest.raises(ValueError, match="holds no tokenizer"):
        evaluate(str(tmp_path / "bare"), [f"paths.cache_dir={cache_dir}"], split="val")
    given = ["tokenizer=pretrained", f"tokenizer.path={tmp_path / 'gpt2' / 'tokenizer.json'}"]
    bare = evaluate(str(tmp_path / "bare"), [f"paths.cache_dir={cache_dir}", *given], split="val")
    assert bare["val_loss"] == pytest.approx(scores["val_loss"], rel=1e-6)


def tiny_bert(folder: Path, architecture: str) -> None:
    """A 1-layer BERT of ``architecture`` with its WordPiece tokenizer, saved as a Hugging Face folder."""
    transformers = pytest.importorskip("transformers")
    from tests.test_huggingface import BERT_SPECIALS, wordpiece_tokenizer

    backend = wordpiece_tokenizer()
    config = transformers.BertConfig(
        vocab_size=backend.get_vocab_size(), hidden_size=32, num_hidden_layers=1, num_attention_heads=2,
        intermediate_size=128, max_position_embeddings=64,
    )  # fmt: skip
    getattr(transformers, architecture)(config).save_pretrained(folder)
    transformers.PreTrainedTokenizerFast(tokenizer_object=backend, **BERT_SPECIALS).save_pretrained(folder)


@pytest.mark.parametrize(("architecture", "has"), [("BertForMaskedLM", 0), ("BertForPreTraining", 2)])
def test_data_needing_a_head_the_model_lacks_or_sizes_otherwise_is_refused(tmp_path, architecture, has):
    """A BERT without a classifier, or with BertForPreTraining's 2-way one, scored on 8 topics: training
    would build the head, evaluate must not score a model that has none (or a random one)."""
    tiny_bert(tmp_path / "bert", architecture)
    expected = rf"model.num_classes={has}, but data=pydoc_topics needs 8; evaluate scores a model trained"
    with pytest.raises(ValueError, match=expected):
        evaluate(str(tmp_path / "bert"), ["objective=classification", f"paths.cache_dir={tmp_path}"])


def test_a_tokenizer_for_a_bare_folder_is_the_file_its_plugin_declares(own_registry):
    """``tokenizer=<name> tokenizer.<file_setting>=<file>``: the plugin says which setting names its file,
    so a third party's tokenizer that loads a file is given the same way as ``pretrained``."""
    from lightning_llm import registry
    from lightning_llm.evaluate import given_tokenizer

    @registry.register("tokenizer", "sentencepiece_file")
    class SentencePieceFile:
        file_setting = "model_file"

    assert given_tokenizer(["tokenizer=pretrained", "tokenizer.path=a/tokenizer.json"]) == "a/tokenizer.json"
    assert given_tokenizer(["tokenizer=sentencepiece_file", "+tokenizer.model_file=sp.json"]) == "sp.json"
    assert given_tokenizer(["tokenizer=char"]) is None and given_tokenizer(["data.block_size=8"]) is None
    with pytest.raises(registry.PluginError, match="unknown tokenizer 'bpee'"):
        given_tokenizer(["tokenizer=bpee"])


@pytest.mark.parametrize(
    "overrides,expected",
    [
        ([], ["objective=classification", "objective.label_smoothing=0.1"]),
        (["objective=masked_lm"], []),  # chosen: the run's is not used
        (["objective.label_smoothing=0.0"], ["objective=classification"]),  # given settings win
    ],
)
def test_a_run_is_scored_with_its_own_objective(overrides, expected):
    """A classifier is scored as a classifier, not by its model's default objective (masked LM)."""
    from lightning_llm.evaluate import _run_objective

    objective = {"name": "classification", "label_smoothing": 0.1}
    run_config = {"model": {"name": "encoder"}, "objective": objective}
    assert _run_objective(run_config, overrides) == expected
    assert _run_objective({"model": {"name": "gpt"}}, overrides) == []  # a Hugging Face folder: its default


@pytest.mark.parametrize(
    ("override", "expected"),
    [
        ("model=encoder", "the model is the source's, with its own settings"),
        ("model.n_layer=7", "the model is the source's"),
        ("tokenizer=char", "the tokenizer is the source's own"),
        ("trainer.limit_val_batches=0", "scores nothing"),
        ("optim.lr=5", "evaluate trains nothing and logs nowhere"),
        ("logger=wandb", "evaluate trains nothing and logs nowhere"),
        ("ckpt_path=auto", "evaluate trains nothing and logs nowhere"),
        ("trainer.max_steps=3", "evaluate trains nothing and logs nowhere"),
    ],
)
def test_settings_evaluate_would_not_use_are_refused(override, expected):
    from lightning_llm.evaluate import check_overrides

    with pytest.raises(ValueError, match=expected):
        check_overrides(["data=text", override])
    check_overrides(
        ["data=text", "trainer.limit_val_batches=4", "tokenizer=pretrained", "tokenizer.path=t.json"]
    )
    check_overrides(
        ["objective=masked_lm", "metrics=[accuracy]", "paths.cache_dir=/c", "trainer.precision=32"]
    )


def test_a_classifier_is_scored_only_on_data_with_its_own_labels(tmp_path, make_cfg, caplog):
    """Class i is the i-th label of the training data: data with other labels (as many) rebuilt the order from
    itself and scored the classifier against the wrong names, silently; a resume with them is refused too."""
    from lightning_llm.train import train

    def write(name: str, labels: list[str]) -> Path:
        rows = [{"text": f"{word} example number {i}", "label": word} for i in range(24) for word in labels]
        path = tmp_path / name
        path.write_text("".join(json.dumps(row) + "\n" for row in rows), encoding="utf-8")
        return path

    trained_on = write("abc.jsonl", ["apple", "berry", "cherry"])
    setup = ["model=encoder", "objective=classification", "data=classification"]
    train(make_cfg(*setup, f"data.paths=[{trained_on}]", "trainer.max_steps=2"), run_dir=tmp_path / "run")
    same = evaluate(str(tmp_path / "run"), ["data=classification", f"data.paths=[{trained_on}]"])
    assert "val_loss" in same
    other = write("xyz.jsonl", ["x-ray", "yak", "zebra"])
    with pytest.raises(
        ValueError, match=r"label 'x-ray' does not occur in the labels the model learned; valid labels: apple"
    ):
        evaluate(str(tmp_path / "run"), ["data=classification", f"data.paths=[{other}]"])
    # Data of some of its labels is numbered as the model learned them (it was refused: [apple, cherry]
    # would have made cherry class 1, berry's); a label it never learned is named.
    some = write("ac.jsonl", ["apple", "cherry"])
    assert "val_loss" in evaluate(str(tmp_path / "run"), ["data=classification", f"data.paths=[{some}]"])
    more = write("abcd.jsonl", ["apple", "berry", "cherry", "damson"])
    with pytest.raises(ValueError, match=r"label 'damson' does not occur in the labels the model learned"):
        evaluate(str(tmp_path / "run"), ["data=classification", f"data.paths=[{more}]"])
    own_tokenizer = ["tokenizer=pretrained", f"tokenizer.path={tmp_path / 'run' / 'tokenizer.json'}"]
    resumed = make_cfg(
        *setup, *own_tokenizer, f"data.paths=[{other}]", "trainer.max_steps=4", "ckpt_path=auto"
    )
    with pytest.raises(ValueError, match=r"this data gives \[x-ray, yak, zebra\]"):
        train(resumed, run_dir=tmp_path / "run")
    # Fine-tuning from it on the other labels is a choice: said, not refused.
    tuned = make_cfg(
        *setup, f"model.init_from={tmp_path / 'run'}", f"data.paths=[{other}]", "trainer.max_steps=1"
    )
    train(tuned, run_dir=tmp_path / "tuned")
    assert "class i meant another label there" in caplog.text
    # on two labels its classifier is of another size: not loaded (it was said to be, meaning other labels)
    two = write("xy.jsonl", ["x-ray", "yak"])
    caplog.clear()
    tuned = make_cfg(
        *setup, f"model.init_from={tmp_path / 'run'}", f"data.paths=[{two}]", "trainer.max_steps=1"
    )
    train(tuned, run_dir=tmp_path / "two")
    assert (
        "class i meant" not in caplog.text and "of another size, start new; the rest is loaded" in caplog.text
    )


def test_a_masked_lm_is_scored_the_same_on_every_call(tmp_path):
    """Which tokens are masked is drawn at random: unseeded, four calls gave four losses."""
    tiny_bert(tmp_path / "bert", "BertForMaskedLM")
    given = [f"paths.cache_dir={tmp_path}", "trainer.limit_val_batches=2"]
    first, second = (evaluate(str(tmp_path / "bert"), given) for _ in range(2))
    assert first["val_loss"] == second["val_loss"] and first["val_tokens"] == second["val_tokens"]


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (  # Lightning's MisconfigurationException, a traceback, once the split's batches were counted
            ["trainer.limit_val_batches=0.0001"],
            r"trainer\.limit_val_batches=0\.0001: under one of the val split's \d+ batches, so nothing "
            r"would be scored; give a fraction of at least 0\.0\d+ or a number of batches",
        ),
        (
            ["--split", "test", "trainer.limit_test_batches=0.0001"],
            r"trainer\.limit_test_batches=0\.0001: under one of the test split's",
        ),
        (  # Lightning switched to bf16-mixed with a warning
            ["trainer.accelerator=cpu", "trainer.precision=16-mixed"],
            r"trainer\.precision=16-mixed needs a GPU",
        ),
        (["trainer.accelerator=tpu"], r"trainer\.accelerator=tpu: "),  # ModuleNotFoundError: torch_xla
    ],
)
def test_trainer_settings_lightning_refuses_are_one_line(tmp_path, cache_dir, capsys, overrides, expected):
    from tests.test_checkpoint import make_run

    run_dir, _, _ = make_run(tmp_path / "run")
    assert main([str(run_dir), f"paths.cache_dir={cache_dir}", *overrides]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and re.fullmatch(f"error: {expected}.*\n", err), err


def test_another_lightning_refusal_names_the_setting_it_names():
    from lightning.fabric.utilities.exceptions import MisconfigurationException

    from lightning_llm.evaluate import _lightning_refusals

    settings = {"accelerator": "cpu", "limit_val_batches": 0.5}
    named = r"^trainer\.accelerator=cpu: `accelerator` cannot be used$"
    with pytest.raises(ValueError, match=named), _lightning_refusals(settings, "val"):
        raise MisconfigurationException("`accelerator` cannot be used\nmore")
    with pytest.raises(ValueError, match=r"^trainer: something else$"), _lightning_refusals(settings, "val"):
        raise MisconfigurationException("something else")
