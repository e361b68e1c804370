import os

import pytest
import torch

from lightning_llm import registry
from lightning_llm.checkpoint import (
    CheckpointError,
    build_model_from_checkpoint,
    find_checkpoint,
    init_from,
    load_checkpoint,
    load_run,
)
from lightning_llm.config import ConfigError
from lightning_llm.tokenizers import CharTokenizer

TEXT = "the quick brown fox jumps over the lazy dog. THE FIVE BOXING WIZARDS JUMP QUICKLY!"
TINY_GPT = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32}


def make_tokenizer(text: str = TEXT) -> CharTokenizer:
    tokenizer = CharTokenizer()
    tokenizer.train([text])
    return tokenizer


def checkpoint_of(model, tokenizer, model_node: dict, **config) -> dict:
    """A checkpoint shaped like the ones training writes (the extras of LanguageModule)."""
    return {
        "epoch": 0,
        "global_step": 1,
        "config": {"model": dict(model_node), "seed": 0, **config},
        "state_dict": {f"model.{key}": value for key, value in model.state_dict().items()},
        "tokenizer_fingerprint": tokenizer.fingerprint(),
    }


def make_run(root, model: str = "gpt", params: dict | None = None, seed: int = 0, **config):
    """A run folder (tokenizer.json + checkpoints/last.ckpt) of a tiny random model; returns
    (run folder, model, tokenizer)."""
    params = TINY_GPT if params is None else params
    tokenizer = make_tokenizer()
    torch.manual_seed(seed)
    network = registry.build("model", model, vocab_size=tokenizer.vocab_size, **params).eval()
    (root / "checkpoints").mkdir(parents=True)
    tokenizer.save(root / "tokenizer.json")
    torch.save(
        checkpoint_of(network, tokenizer, {"name": model, **params}, **config), root / "checkpoints/last.ckpt"
    )
    return root, network, tokenizer


@pytest.fixture
def run(tmp_path):
    return make_run(tmp_path / "run")


# --------------------------------------------------------------------------- load_run


def test_load_run_round_trips_the_logits_exactly(run):
    run_dir, model, tokenizer = run
    loaded, loaded_tokenizer, config = load_run(run_dir)
    assert type(loaded) is type(model) and not loaded.training
    assert loaded_tokenizer.fingerprint() == tokenizer.fingerprint()
    assert config["model"] == {"name": "gpt", **TINY_GPT}
    ids = torch.tensor([tokenizer.encode("the lazy dog")])
    assert torch.equal(loaded(ids), model(ids))


def test_load_run_takes_a_checkpoint_file_too(run):
    run_dir, model, _ = run
    loaded, _, _ = load_run(run_dir / "checkpoints" / "last.ckpt")
    assert all(torch.equal(a, b) for a, b in zip(loaded.parameters(), model.parameters(), strict=True))


def test_a_tokenizer_mismatch_is_refused(run):
    run_dir, _, _ = run
    make_tokenizer("a different corpus, so different ids").save(run_dir / "tokenizer.json")
    with pytest.raises(CheckpointError, match="is not the tokenizer .* was trained with"):
        load_run(run_dir)


def test_a_missing_tokenizer_is_named(run):
    run_dir, _, _ = run
    (run_dir / "tokenizer.json").unlink()
    with pytest.raises(FileNotFoundError, match=r"expected .*run/tokenizer\.json"):
        load_run(run_dir)


@pytest.mark.parametrize("where", ["model", "optim"])
def test_a_config_naming_code_is_refused(tmp_path, where):
    run_dir, _, _ = make_run(tmp_path / "run", optim={"name": "adamw"})
    checkpoint = load_checkpoint(run_dir / "checkpoints/last.ckpt")
    checkpoint["config"][where]["_target_"] = "os.system"
    torch.save(checkpoint, run_dir / "checkpoints/last.ckpt")
    with pytest.raises(ConfigError, match="_target_"):
        load_run(run_dir)


def test_weights_that_do_not_fit_the_config_are_refused(run):
    run_dir, _, tokenizer = run
    checkpoint = load_checkpoint(run_dir / "checkpoints/last.ckpt")
    checkpoint["config"]["model"]["n_layer"] = 2
    with pytest.raises(
        CheckpointError, match=r"do not fit model 'gpt' .*: missing: blocks\.1\.ln_1\.weight, .* and 3 more$"
    ):
        build_model_from_checkpoint(checkpoint, tokenizer.vocab_size)


def test_a_checkpoint_without_our_extras_is_refused(run):
    run_dir, _, tokenizer = run
    checkpoint = load_checkpoint(run_dir / "checkpoints/last.ckpt")
    with pytest.raises(CheckpointError, match="no run config"):
        build_model_from_checkpoint({"state_dict": checkpoint["state_dict"]}, tokenizer.vocab_size)
    del checkpoint["tokenizer_fingerprint"]
    torch.save(checkpoint, run_dir / "checkpoints/last.ckpt")
    with pytest.raises(CheckpointError, match="records no tokenizer_fingerprint"):
        load_run(run_dir)


# --------------------------------------------------------------------------- finding and reading files


def test_find_checkpoint_prefers_last_then_the_newest(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    for age, name in enumerate(["new.ckpt", "old.ckpt"]):
        (folder / name).write_bytes(b"x")
        os.utime(folder / name, (1e9 - age, 1e9 - age))
    assert find_checkpoint(tmp_path / "run") == folder / "new.ckpt"
    assert find_checkpoint(folder) == folder / "new.ckpt"  # the checkpoints folder itself works too
    (folder / "last.ckpt").write_bytes(b"x")
    os.utime(folder / "last.ckpt", (1, 1))
    assert find_checkpoint(tmp_path / "run") == folder / "last.ckpt"
    assert find_checkpoint(folder / "old.ckpt") == folder / "old.ckpt"


def test_find_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder or checkpoint file"):
        find_checkpoint(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="holds no checkpoint"):
        find_checkpoint(tmp_path)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "not a readable checkpoint"),
        (b"definitely not a zip or a pickle", "not a readable checkpoint"),
    ],
)
def test_load_checkpoint_refuses_garbage(tmp_path, content, message):
    (tmp_path / "bad.ckpt").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "bad.ckpt")


def test_load_checkpoint_refuses_truncated_files_and_pickled_code(run, tmp_path):
    run_dir, _, _ = run
    data = (run_dir / "checkpoints/last.ckpt").read_bytes()
    (tmp_path / "cut.ckpt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "cut.ckpt")
    torch.save({"state_dict": {}, "callback": os.getcwd}, tmp_path / "code.ckpt")  # weights_only refuses
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(tmp_path / "code.ckpt")
    torch.save([1, 2], tmp_path / "list.ckpt")
    with pytest.raises(CheckpointError, match="has no 'state_dict'"):
        load_checkpoint(tmp_path / "list.ckpt")
    with pytest.raises(FileNotFoundError, match="no such checkpoint file"):
        load_checkpoint(tmp_path / "missing.ckpt")


def test_a_real_lightning_checkpoint_loads(tmp_path):
    """A checkpoint written by Trainer.save_checkpoint (optimizer, loops, callbacks) with our extras."""
    import lightning as L
    from torch.utils.data import DataLoader

    from lightning_llm.module import LanguageModule

    class SumLoss:  # an objective: summed next-token loss, target count, logits
        def loss(self, model, batch):
            logits = model(batch["input_ids"])
            loss = torch.nn.functional.cross_entropy(
                logits.flatten(0, 1), batch["labels"].flatten(), reduction="sum"
            )
            return loss, batch["labels"].numel(), logits

    tokenizer = make_tokenizer()
    model = registry.build("model", "gpt", vocab_size=tokenizer.vocab_size, **TINY_GPT)
    module = LanguageModule(
        model,
        SumLoss(),
        optim={"name": "adamw"},
        scheduler={"name": "constant"},
        checkpoint_extras={
            "config": {"model": {"name": "gpt", **TINY_GPT}},
            "tokenizer_fingerprint": tokenizer.fingerprint(),
        },
    )
    ids = torch.randint(0, tokenizer.vocab_size, (2, 9))
    batches = DataLoader([{"input_ids": ids[:, :-1], "labels": ids[:, 1:]}], batch_size=None)  # one batch
    trainer = L.Trainer(
        max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
        enable_model_summary=False, default_root_dir=tmp_path,
    )  # fmt: skip
    trainer.fit(module, train_dataloaders=batches)
    trainer.save_checkpoint(tmp_path / "run" / "checkpoints" / "last.ckpt")
    tokenizer.save(tmp_path / "run" / "tokenizer.json")
    loaded, _, _ = load_run(tmp_path / "run")
    model.eval()
    assert torch.equal(loaded(ids), model(ids))


# --------------------------------------------------------------------------- init_from


def test_init_from_loads_matching_weights_and_reports_the_rest(run):
    run_dir, source, tokenizer = run
    # Two layers instead of one, and a vocabulary padded to 128 rows instead of 64: the second block is
    # new, the token embedding and (tied) head are skipped, everything else is loaded.
    torch.manual_seed(1)
    target = registry.build("model", "gpt", vocab_size=100, **{**TINY_GPT, "n_layer": 2})
    fresh = {name: value.clone() for name, value in target.state_dict().items()}
    loaded, new, skipped = init_from(target, run_dir)
    assert sorted(skipped) == ["lm_head.weight", "wte.weight"]
    assert new and all(name.startswith("blocks.1.") for name in new)
    assert set(loaded) == set(source.state_dict()) - set(skipped)
    state = target.state_dict()
    for name in loaded:
        assert torch.equal(state[name], source.state_dict()[name]), name
    for name in [*new, *skipped]:
        assert torch.equal(state[name], fresh[name]), name


def test_init_from_a_checkpoint_of_another_family_fails(run):
    run_dir, _, _ = run
    with pytest.raises(CheckpointError, match="no weight of .* matches the model"):
        init_from(torch.nn.Linear(3, 4), run_dir)


def test_init_from_a_masked_lm_encoder_into_a_classifier(tmp_path):
    if "encoder" not in registry.names("model"):
        pytest.skip("the encoder model plugin is not registered")
    params = {"n_layer": 1, "n_head": 2, "n_embd": 16, "block_size": 32}
    run_dir, pretrained, tokenizer = make_run(tmp_path / "mlm", "encoder", params)
    classifier = registry.build("model", "encoder", vocab_size=tokenizer.vocab_size, num_classes=3, **params)
    loaded, new, skipped = init_from(classifier, run_dir)
    assert new, "the classifier head is new"
    assert set(loaded) == set(pretrained.state_dict()) - set(skipped)
    assert set(loaded) | set(new) == set(classifier.state_dict())
