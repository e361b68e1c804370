import io
import os
import shutil
import warnings
from pathlib import Path

import pytest
import torch

from lightning_llm import registry
from lightning_llm.checkpoint import (
    CheckpointError,
    build_model_from_checkpoint,
    find_checkpoint,
    init_from,
    inspect_checkpoint,
    is_complete,
    latest_checkpoint,
    load_checkpoint,
    load_run,
    main,
    read_metadata,
)
from lightning_llm.config import ConfigError, plugin_params
from lightning_llm.tokenizers import CharTokenizer, Tokenizer

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
    with pytest.raises(FileNotFoundError, match=r"there is no .*run/tokenizer\.json; copy its run's"):
        load_run(run_dir)


def test_a_checkpoint_file_away_from_its_run_takes_the_runs_tokenizer_checked(run, tmp_path):
    """``consolidate --output`` writes a checkpoint anywhere: it said only "expected <its folder>/
    tokenizer.json". It says what to do, and takes the run's tokenizer, held to the fingerprint it records."""
    run_dir, model, tokenizer = run
    lone = tmp_path / "elsewhere" / "c1.pt"
    lone.parent.mkdir()
    shutil.copy(run_dir / "checkpoints" / "last.ckpt", lone)
    with pytest.raises(FileNotFoundError, match=r"copy its run's tokenizer\.json there, or give that file"):
        load_run(lone)
    loaded, _, _ = load_run(lone, run_dir / "tokenizer.json")
    ids = torch.tensor([tokenizer.encode("the lazy dog")])
    assert torch.equal(loaded(ids), model(ids))
    make_tokenizer("a different corpus, so different ids").save(tmp_path / "other.json")
    with pytest.raises(CheckpointError, match="is not the tokenizer .* was trained with"):
        load_run(lone, tmp_path / "other.json")


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


def save_at_step(path, step: int, mtime: float | None = None):
    """A small but real checkpoint file recording ``global_step=step``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"global_step": step, "state_dict": {"model.w": torch.full((2,), float(step))}}, path)
    if mtime is not None:
        os.utime(path, (mtime, mtime))
    return path


def test_find_checkpoint_takes_the_most_steps_and_last_on_a_tie(tmp_path):
    folder = tmp_path / "run" / "checkpoints"
    later = save_at_step(folder / "best-step000004.ckpt", 4, mtime=1e9 - 10)
    save_at_step(folder / "best-step000002.ckpt", 2, mtime=1e9)  # newer file, older step
    assert find_checkpoint(tmp_path / "run") == later
    assert find_checkpoint(folder) == later  # the checkpoints folder itself works too
    save_at_step(folder / "last.ckpt", 3, mtime=2e9)  # a kill between the two saves of step 4
    assert find_checkpoint(tmp_path / "run") == later
    last = save_at_step(folder / "last.ckpt", 4, mtime=1)
    assert find_checkpoint(tmp_path / "run") == last  # same step: last.ckpt, whatever its age
    assert find_checkpoint(folder / "best-step000002.ckpt") == folder / "best-step000002.ckpt"


def test_find_checkpoint_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such run folder or checkpoint file"):
        find_checkpoint(tmp_path / "nope")
    with pytest.raises(FileNotFoundError, match="holds no usable checkpoint"):
        find_checkpoint(tmp_path)
    (tmp_path / "model.safetensors").write_bytes(b"weights without their config")
    with pytest.raises(FileNotFoundError, match="holds model.safetensors but no config.json"):
        find_checkpoint(tmp_path)


def test_a_tokenizer_is_given_only_where_none_is_beside_the_weights(run):
    run_dir, _, _ = run
    with pytest.raises(CheckpointError, match="keeps its own tokenizer.json"):
        load_run(run_dir, run_dir / "tokenizer.json")


def test_a_folder_without_a_checkpoints_folder_is_said_to_have_none(tmp_path):
    """It said "looked for <folder>/last.ckpt", a path no run has: its checkpoints are in checkpoints/."""
    (tmp_path / "nockpt").mkdir()
    with pytest.raises(FileNotFoundError, match=r"nockpt holds no usable checkpoint: it has no checkpoints/"):
        find_checkpoint(tmp_path / "nockpt")


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "torch.save did not write it"),
        (b"definitely not a zip or a pickle", "torch.save did not write it"),
    ],
)
def test_load_checkpoint_refuses_garbage(tmp_path, content, message):
    (tmp_path / "bad.ckpt").write_bytes(content)
    with pytest.raises(CheckpointError, match=message):
        load_checkpoint(tmp_path / "bad.ckpt")


def test_a_checkpoint_in_torchs_legacy_format_is_read_and_a_folder_or_fifo_named(tmp_path):
    checkpoint = {"state_dict": {"model.w": torch.ones(2)}, "global_step": 3}
    torch.save(checkpoint, tmp_path / "old.ckpt", _use_new_zipfile_serialization=False)  # torch < 1.6
    assert read_metadata(tmp_path / "old.ckpt")["global_step"] == 3  # not memory-mapped: that needs zip
    assert torch.equal(load_checkpoint(tmp_path / "old.ckpt")["state_dict"]["model.w"], torch.ones(2))
    os.mkfifo(tmp_path / "pipe.ckpt")  # reading it would block
    with pytest.raises(CheckpointError, match=r"pipe\.ckpt is not a checkpoint: not a regular file"):
        read_metadata(tmp_path / "pipe.ckpt")
    # Found among a run's checkpoints (no run writes it so), it is passed over saying which format it is.
    assert inspect_checkpoint(tmp_path / "old.ckpt") == (
        None,
        "in torch's pre-1.6 format, which no lightning_llm run writes",
    )
    assert inspect_checkpoint(tmp_path / "pipe.ckpt")[0] is None


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


def untied(run_dir: Path, change) -> Path:
    """The run's checkpoint with its tied head saved apart from the embedding, ``change`` applied to it."""
    last = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(last)
    state = checkpoint["state_dict"]
    state["model.wte.weight"], state["model.lm_head.weight"] = change(
        state["model.wte.weight"].clone(), state["model.lm_head.weight"].clone()
    )
    torch.save(checkpoint, last)
    return last


def zero_head(wte, head):
    return wte, torch.zeros_like(head)


def nan_in_embedding(wte, head):
    wte[0, 0] = float("nan")
    return wte, head


@pytest.mark.parametrize("change", [zero_head, nan_in_embedding])
def test_tied_weights_saved_apart_must_be_equal(run, change):
    """The head is the embedding in a tied model: loading copied both into it and the head won, silently (NaN
    in the embedding alone then also passed generate's check of the loaded weights)."""
    run_dir, _, tokenizer = run
    untied(run_dir, change)
    expected = r"last\.ckpt: its lm_head\.weight differs from its wte\.weight, which the model ties it to"
    with pytest.raises(CheckpointError, match=expected):
        load_run(run_dir)
    fresh = registry.build("model", "gpt", vocab_size=tokenizer.vocab_size, **TINY_GPT)
    with pytest.raises(CheckpointError, match=expected):
        init_from(fresh, run_dir)


def test_tied_weights_saved_apart_but_equal_load(run):
    """Equal copies (also NaN in the same places: a diverged run is named by generate's finite check)."""
    run_dir, model, tokenizer = run
    untied(run_dir, lambda wte, head: (wte, wte.clone()))
    loaded, _, _ = load_run(run_dir)
    ids = torch.tensor([tokenizer.encode("the lazy dog")])
    assert torch.equal(loaded(ids), model(ids))
    untied(run_dir, lambda wte, head: (wte.fill_(float("nan")), wte.clone()))
    assert load_run(run_dir)[0].wte.weight.isnan().all()


# --------------------------------------------------------------------------- crash-safe writes, the resolver


def make_sharded(checkpoint: dict, path: Path, optimizer_states: list | None = None) -> Path:
    """``checkpoint`` written as a sharded directory by ShardedStrategy (one process, no process group)."""
    from lightning_llm.distributed.checkpointing import ShardedStrategy

    ShardedStrategy().save_checkpoint({**checkpoint, "optimizer_states": optimizer_states or []}, path)
    return path


def test_a_save_that_dies_mid_write_leaves_the_previous_checkpoint_intact(run, monkeypatch):
    from lightning_llm.distributed.checkpointing import AtomicCheckpointIO

    run_dir, model, _ = run
    last = run_dir / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    real_save, written_to = torch.save, []

    def dying_save(obj, file, *args, **kwargs):  # writes half the bytes, then the disk "fills up"
        buffer = io.BytesIO()
        real_save(obj, buffer)
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        written_to.append(Path(file.name))
        raise OSError("No space left on device")

    new = load_checkpoint(last) | {"global_step": 99}
    monkeypatch.setattr(torch, "save", dying_save)
    with pytest.raises(OSError, match="No space left"):
        AtomicCheckpointIO().save_checkpoint(new, last)
    monkeypatch.undo()
    (temporary,) = written_to  # it wrote beside, not in place
    assert temporary.parent == last.parent and temporary.name.startswith(f"last.ckpt.tmp-{os.getpid()}-")
    assert last.read_bytes() == before
    assert sorted(path.name for path in last.parent.iterdir()) == ["last.ckpt"]  # the temp file is gone
    assert find_checkpoint(run_dir) == last and load_checkpoint(last)["global_step"] == 1

    AtomicCheckpointIO().save_checkpoint(new, last)  # a save that completes replaces the file
    assert load_checkpoint(find_checkpoint(run_dir))["global_step"] == 99
    assert sorted(path.name for path in last.parent.iterdir()) == ["last.ckpt"]


def test_a_truncated_last_checkpoint_is_passed_over(tmp_path):
    """What an in-place writer leaves after kill -9: the resolver falls back to the previous complete one."""
    folder = tmp_path / "checkpoints"
    best = save_at_step(folder / "best-step000002.ckpt", 2)
    whole = save_at_step(folder / "last.ckpt", 4).read_bytes()
    (folder / "last.ckpt").write_bytes(whole[: len(whole) - 40])
    assert not is_complete(folder / "last.ckpt")
    assert find_checkpoint(tmp_path) == best


def test_temp_partial_and_deleting_names_are_never_picked(tmp_path):
    folder = tmp_path / "checkpoints"
    oldest = save_at_step(folder / "best-step000001.ckpt", 1)
    # Each of these is whole and at a later step, but its name says the write (or removal) did not finish.
    save_at_step(folder / f"last.ckpt.tmp-{os.getpid()}", 9)
    unfinished = [folder / "last.ckpt.tmp-12345", folder / "best-step000009.ckpt.partial"]
    save_at_step(unfinished[0], 9)
    make_sharded({"global_step": 9, "state_dict": {"model.w": torch.ones(2)}}, folder / "sharded.ckpt")
    for name in ("best-step000009.ckpt.partial", "best-step000008.ckpt.deleting-7"):
        shutil.copytree(folder / "sharded.ckpt", folder / name)
    shutil.rmtree(folder / "sharded.ckpt")
    assert latest_checkpoint(folder) == oldest
    assert find_checkpoint(tmp_path) == oldest
    for path in unfinished:
        assert not is_complete(path)
        with pytest.raises(CheckpointError, match="is an unfinished checkpoint"):
            find_checkpoint(path)


def test_latest_checkpoint_order(tmp_path):
    folder = tmp_path / "checkpoints"
    folder.mkdir()
    assert latest_checkpoint(folder) is None  # a fresh start, not an error
    save_at_step(folder / "a.ckpt", 2, mtime=3e9)
    sharded = make_sharded({"global_step": 4, "state_dict": {"model.w": torch.ones(2)}}, folder / "b.ckpt")
    os.utime(sharded, (1e9, 1e9))
    assert latest_checkpoint(folder) == sharded  # the higher step wins over the newer file; dirs compete
    newer = save_at_step(folder / "c.ckpt", 4, mtime=2e9)
    assert latest_checkpoint(folder) == newer  # same step: the newer one
    old = make_sharded({"global_step": 6, "state_dict": {"model.w": torch.ones(2)}}, folder / "last.ckpt.old")
    assert latest_checkpoint(folder) == old  # a crash mid-swap left the previous last.ckpt here
    # An incomplete last.ckpt (written elsewhere and moved in: saving it would delete the stale .old).
    make_sharded({"global_step": 7, "state_dict": {"model.w": torch.ones(2)}}, tmp_path / "elsewhere")
    (tmp_path / "elsewhere").rename(folder / "last.ckpt")
    (folder / "last.ckpt" / "meta.pt").unlink()
    assert latest_checkpoint(folder) == old  # more steps, but incomplete: never picked
    shutil.rmtree(folder / "last.ckpt")
    save_at_step(folder / "last.ckpt", 6, mtime=1)
    assert latest_checkpoint(folder) == folder / "last.ckpt"  # a tie in steps goes to last.ckpt


def test_a_checkpoint_deleted_while_it_is_read_is_neither_picked_nor_called_damaged(tmp_path, monkeypatch):
    """A live run replaces its best checkpoint while another process (a refused second launch, `report`)
    surveys the folder: the vanished file is passed over, not reported as damaged nor a traceback."""
    from lightning_llm import checkpoint

    folder = tmp_path / "checkpoints"
    kept = save_at_step(folder / "best-step000002.ckpt", 2)
    read = checkpoint.inspect_checkpoint
    for gone_before in (True, False):  # vanished before its read, or between its read and its stat
        doomed = save_at_step(folder / "best-step000009.ckpt", 9)

        def read_while_deleted(path, read=read, doomed=doomed, gone_before=gone_before):
            if path == doomed and gone_before:
                doomed.unlink()
            found = read(path)
            if path == doomed and not gone_before:
                doomed.unlink()
            return found

        monkeypatch.setattr(checkpoint, "inspect_checkpoint", read_while_deleted)
        assert checkpoint.survey_checkpoints(folder) == (kept, {})


def test_lightning_names_its_sharded_metadata_as_we_expect():
    from lightning.fabric.utilities.load import _METADATA_FILENAME

    from lightning_llm.checkpoint import META_FILE

    assert META_FILE == _METADATA_FILENAME


# --------------------------------------------------------------------------- sharded checkpoints


@pytest.fixture
def sharded_run(run):
    """The run with its last.ckpt rewritten as a sharded directory, optimizer state included."""
    run_dir, model, tokenizer = run
    last = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(last)
    last.unlink()
    weights = checkpoint["state_dict"]
    names = list(weights)
    optimizer = {
        "state": {
            name: {"exp_avg": torch.randn(value.shape)} for name, value in checkpoint["state_dict"].items()
        },
        "param_groups": [{"lr": 0.1, "params": names}],
    }
    make_sharded(checkpoint, last, optimizer_states=[optimizer])
    return run_dir, model, tokenizer


def test_consolidate_gives_the_models_tensors_in_the_single_file_layout(sharded_run, tmp_path):
    from lightning_llm.distributed.checkpointing import consolidate

    run_dir, model, tokenizer = sharded_run
    out = consolidate(run_dir / "checkpoints" / "last.ckpt", tmp_path / "model.pt")
    checkpoint = torch.load(out, weights_only=True)
    expected = {f"model.{key}": value for key, value in model.state_dict().items()}
    assert set(checkpoint["state_dict"]) == set(expected)
    for key, value in expected.items():
        assert torch.equal(checkpoint["state_dict"][key], value), key
    assert checkpoint["config"]["model"] == {"name": "gpt", **TINY_GPT}
    assert checkpoint["tokenizer_fingerprint"] == tokenizer.fingerprint()
    assert checkpoint["global_step"] == 1
    assert not [key for key in checkpoint if key.startswith("optimizer")]  # weights only


def test_a_sharded_run_loads_like_a_file_run(sharded_run):
    run_dir, model, tokenizer = sharded_run
    assert find_checkpoint(run_dir) == run_dir / "checkpoints" / "last.ckpt"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing a user cannot act on (DCP's "load in a single process")
        loaded, _, _ = load_run(run_dir)
    ids = torch.tensor([tokenizer.encode("the lazy dog")])
    assert torch.equal(loaded(ids), model(ids))
    torch.manual_seed(3)
    fresh = registry.build("model", "gpt", vocab_size=tokenizer.vocab_size, **TINY_GPT)
    loaded_names, new, skipped = init_from(fresh, run_dir)
    assert not new and not skipped
    assert all(torch.equal(a, b) for a, b in zip(fresh.parameters(), model.parameters(), strict=True))


def test_an_incomplete_sharded_checkpoint_is_refused(sharded_run):
    run_dir, _, _ = sharded_run
    last = run_dir / "checkpoints" / "last.ckpt"
    (last / ".metadata").unlink()
    with pytest.raises(CheckpointError, match=r"last\.ckpt is an incomplete sharded checkpoint"):
        find_checkpoint(last)
    with pytest.raises(CheckpointError, match=r"last\.ckpt is not a complete sharded checkpoint"):
        load_checkpoint(last)
    with pytest.raises(FileNotFoundError, match="holds no usable checkpoint"):
        load_run(run_dir)


def test_the_consolidate_command(sharded_run, capsys):
    run_dir, model, tokenizer = sharded_run
    assert main(["consolidate", str(run_dir)]) == 0
    out = run_dir / "checkpoints" / "last.consolidated.pt"
    assert capsys.readouterr().out.strip() == str(out)
    assert find_checkpoint(run_dir) == run_dir / "checkpoints" / "last.ckpt"  # not a .ckpt: never resumed
    loaded, _, _ = load_run(out)  # the run folder's tokenizer still goes with it
    ids = torch.tensor([tokenizer.encode("the lazy dog")])
    assert torch.equal(loaded(ids), model(ids))
    target = run_dir / "export" / "weights.pt"
    assert main(["consolidate", str(run_dir / "checkpoints" / "last.ckpt"), "--output", str(target)]) == 0
    assert torch.equal(
        torch.load(target, weights_only=True)["state_dict"]["model.wte.weight"], model.wte.weight
    )


@pytest.mark.parametrize("case", ["missing", "single-file"])
def test_the_consolidate_command_errors_name_the_path(run, tmp_path, capsys, case):
    run_dir, _, _ = run
    path = tmp_path / "nope" if case == "missing" else run_dir
    assert main(["consolidate", str(path)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and error.startswith("error: ") and str(path) in error
    if case == "single-file":
        assert "single-file checkpoint already" in error


def test_the_consolidate_command_never_replaces_a_file_it_did_not_write(sharded_run, tmp_path, capsys):
    run_dir, _, _ = sharded_run
    last = run_dir / "checkpoints" / "last.ckpt"
    mine = tmp_path / "notes.txt"
    mine.write_text("mine")
    tokenizer_json = (run_dir / "tokenizer.json").read_bytes()
    (run_dir / ".hydra").mkdir(exist_ok=True)  # a run launched by the command line: its config and lock
    (run_dir / ".lock").touch()
    other = tmp_path / "other_run"  # another run's folder: its next launch would refuse it as well
    (other / ".hydra").mkdir(parents=True)
    (other / ".lock").write_text("")
    refused = {
        str(other / "model.pt"): "is inside the run folder",
        str(mine): "exists; name a new file",
        str(run_dir / "tokenizer.json"): "is inside the run folder",
        str(run_dir / "model.pt"): "is inside the run folder",  # its next launch would refuse the folder
        str(last / "meta.pt"): "is inside the checkpoint",
        str(last / "new.pt"): "is inside the checkpoint",
        str(tmp_path): "is a folder",
    }
    for output, expected in refused.items():
        assert main(["consolidate", str(run_dir), "--output", output]) == 2
        error = capsys.readouterr().err
        assert error.count("\n") == 1 and expected in error and output in error, error
    assert mine.read_text() == "mine" and (run_dir / "tokenizer.json").read_bytes() == tokenizer_json
    assert main(["consolidate", str(run_dir)]) == 0  # its own output, beside the checkpoint, is renewed
    assert main(["consolidate", str(run_dir)]) == 0
    for below_a_file in (mine / "x.pt", mine / "sub" / "x.pt"):  # it said "cannot write ...: File exists"
        assert main(["consolidate", str(run_dir), "--output", str(below_a_file)]) == 2
        error = capsys.readouterr().err
        expected = f"--output {below_a_file}: {mine} is a file, not a folder; name another --output"
        assert error == f"error: {expected}\n"


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("n_layer", 5_000, "builds more than"),  # stopped after ~1,000 modules, not after 5,000 blocks
        ("n_embd", 2**40, "describes more than"),  # stopped at its first tensor: never allocated
        ("block_size", 10**9, "describes"),
    ],
)
def test_a_stored_config_far_larger_than_its_weights_is_refused_before_taking_memory(
    run, tmp_path, setting, value, expected
):
    """A checkpoint is a file anyone can hand over: its config must describe its weights before a model is
    built from it (to generate, evaluate, export, or fine-tune with model.init_from)."""
    from lightning_llm.parts import _check_source_config

    run_dir, _, _ = run
    checkpoint = torch.load(run_dir / "checkpoints" / "last.ckpt", weights_only=True)
    checkpoint["config"]["model"][setting] = value
    crafted = run_dir / "checkpoints" / "crafted.ckpt"
    torch.save(checkpoint, crafted)
    with pytest.raises(CheckpointError, match=expected):
        load_run(crafted)
    plugin, params = plugin_params("model", checkpoint["config"]["model"])  # model.init_from=crafted.ckpt
    vocab_size = Tokenizer.from_file(run_dir / "tokenizer.json", roles=()).vocab_size
    with pytest.raises(CheckpointError, match=expected):
        _check_source_config(str(crafted), lambda: plugin(vocab_size=vocab_size, **params))


def test_fine_tuning_refuses_a_run_whose_tokenizer_is_not_the_one_it_trained_with(run, make_cfg):
    """As generate, evaluate and export do: the weights only mean something with their own tokenizer."""
    from lightning_llm.parts import _tokenizer_of_run

    run_dir, _, _ = run
    make_tokenizer("another text, other characters: xyz 0123").save(run_dir / "tokenizer.json")
    with pytest.raises(CheckpointError, match=r"tokenizer.json is not the tokenizer .* was trained with"):
        _tokenizer_of_run(str(run_dir), make_cfg())


@pytest.mark.parametrize("content", [b"hello\n", b"", b"\x80\x02}q\x00X\x05\x00\x00\x00stateq\x01K\x05s."])
def test_a_file_that_is_no_checkpoint_is_one_error_naming_it(tmp_path, content):
    """Whatever the unpickler raises for it (KeyError for plain text, ...): a CheckpointError naming the file,
    from both readers (the whole checkpoint and its metadata, as model.init_from reads it)."""
    from lightning_llm.checkpoint import read_metadata

    path = tmp_path / "garbage.ckpt"
    path.write_bytes(content)
    for read in (load_checkpoint, read_metadata):
        with pytest.raises(CheckpointError, match=r"garbage\.ckpt"):
            read(path)


def test_a_hugging_face_folder_given_with_a_tilde_is_found(tmp_path, monkeypatch):
    """``~/models/gpt2`` is a Hugging Face folder wherever a path is taken, not one "without config.json"."""
    from lightning_llm import huggingface

    (tmp_path / "models" / "gpt2").mkdir(parents=True)
    (tmp_path / "models" / "gpt2" / "config.json").write_text("{}")
    (tmp_path / "models" / "run").mkdir()
    monkeypatch.setenv("HOME", str(tmp_path))
    assert huggingface.is_hf_folder("~/models/gpt2")
    with pytest.raises(FileNotFoundError, match=r"is a Hugging Face model folder \(config.json\), not a"):
        find_checkpoint(tmp_path / "models" / "gpt2")


# --------------------------------------------------------------------------- sharded checkpoints handed over


def rewrite_index(checkpoint: Path, change) -> None:
    """``checkpoint``'s DCP index with ``change`` applied to its entries (a damaged or crafted .metadata)."""
    import pickle

    from lightning_llm.dcp_index import read_dcp_metadata

    index = read_dcp_metadata(checkpoint / ".metadata")
    change(index.state_dict_metadata)
    with open(checkpoint / ".metadata", "wb") as file:
        pickle.dump(index, file)


def refused_in_one_line(checkpoint: Path, tmp_path: Path, capsys, expected: str) -> None:
    """Loading ``checkpoint`` (a sharded folder given directly) and consolidating it are refused, each in one
    line matching ``expected`` and naming it, and nothing is written."""
    import re

    with pytest.raises(CheckpointError, match=expected) as refused:
        load_checkpoint(checkpoint)
    assert str(checkpoint) in str(refused.value) and "\n" not in str(refused.value)
    output = tmp_path / "consolidated.pt"
    assert main(["consolidate", str(checkpoint), "--output", str(output)]) == 2
    error = capsys.readouterr().err
    assert error.count("\n") == 1 and str(checkpoint) in error and re.search(expected, error), error
    assert not output.exists()


def test_a_sharded_checkpoints_compressed_meta_pt_is_refused_before_it_is_read(sharded_run, tmp_path, capsys):
    """torch stores every entry uncompressed: a meta.pt re-zipped with DEFLATE could unpack a few KB into any
    amount of memory (and into the consolidated file). Refused as a single-file checkpoint is."""
    import zipfile

    run_dir, _, _ = sharded_run
    last = run_dir / "checkpoints" / "last.ckpt"
    meta = torch.load(last / "meta.pt", weights_only=True)
    buffer = io.BytesIO()
    torch.save({**meta, "padding": torch.zeros(2**20)}, buffer)  # 4 MB of zeros: DEFLATE packs them to KBs
    deflated = zipfile.ZipFile(last / "meta.pt", "w", zipfile.ZIP_DEFLATED)
    with zipfile.ZipFile(buffer) as stored, deflated as zipped:
        for entry in stored.infolist():
            zipped.writestr(entry.filename, stored.read(entry))
    assert (last / "meta.pt").stat().st_size < 2**20
    refused_in_one_line(last, tmp_path, capsys, r"meta\.pt .*compressed")


@pytest.mark.parametrize("inflated", ["size", "size and chunk"])
def test_a_sharded_checkpoint_declaring_more_than_its_shards_hold_is_refused_before_allocating(
    sharded_run, tmp_path, capsys, inflated
):
    """DCP's index declares each tensor's size; a full-size tensor is allocated from it before the shards are
    read. One declared larger than its stored bytes is refused, naming it, before anything is allocated."""
    run_dir, _, _ = sharded_run
    last = run_dir / "checkpoints" / "last.ckpt"

    def inflate(entries):
        entry = entries["state_dict.model.wte.weight"]
        entry.size = torch.Size([entry.size[0] * 1000, entry.size[1]])
        if inflated == "size and chunk":
            entry.chunks[0].sizes = entry.size

    rewrite_index(last, inflate)
    refused_in_one_line(last, tmp_path, capsys, r"state_dict\.model\.wte\.weight .*bytes")
    with pytest.raises(FileNotFoundError, match=r"1 unusable"):  # passed over when looked for in its run
        find_checkpoint(run_dir)


def test_a_sharded_checkpoint_whose_chunk_points_outside_its_shard_is_refused(sharded_run, tmp_path, capsys):
    import pickle

    from lightning_llm.dcp_index import read_dcp_metadata

    run_dir, _, _ = sharded_run
    last = run_dir / "checkpoints" / "last.ckpt"
    index = read_dcp_metadata(last / ".metadata")
    (shard,) = last.glob("*.distcp")
    for where in index.storage_data.values():
        if where.relative_path == shard.name:
            where.offset += shard.stat().st_size
    (last / ".metadata").write_bytes(pickle.dumps(index))
    refused_in_one_line(last, tmp_path, capsys, rf"{shard.name}")


@pytest.mark.parametrize("dtype", [torch.int32, torch.int64])
def test_a_sharded_checkpoints_integer_weight_is_refused_naming_it(sharded_run, tmp_path, capsys, dtype):
    """A float weight declared integer in DCP's index was read as zeros (the shard's floats cast), silently.
    Model weights are floating point; an optimizer's integer state (a step counter) is still fine."""
    run_dir, _, _ = sharded_run
    last = run_dir / "checkpoints" / "last.ckpt"

    def retype(entries):
        entries["state_dict.model.wte.weight"].properties.dtype = dtype

    rewrite_index(last, retype)
    refused_in_one_line(last, tmp_path, capsys, r"model\.wte\.weight")

    counted = tmp_path / "counted.ckpt"
    weights = {"model.w": torch.ones(2)}
    optimizer = {"state": {"model.w": {"step": torch.tensor(7)}}, "param_groups": [{"params": ["model.w"]}]}
    make_sharded({"global_step": 1, "state_dict": weights}, counted, optimizer_states=[optimizer])
    assert torch.equal(load_checkpoint(counted)["state_dict"]["model.w"], weights["model.w"])


def test_code_planted_in_a_shards_non_tensor_entry_is_refused_before_dcp_runs_it(sharded_run, tmp_path):
    """DCP reads a non-tensor entry (an optimizer's ``param_groups``) back with ``torch.load(weights_only=
    False)`` when Lightning resumes from a sharded checkpoint: the index check loads each with
    ``weights_only=True`` first, so a shard planted with code is refused, and the code never runs."""
    import pickle

    from lightning_llm.dcp_index import read_dcp_metadata
    from lightning_llm.distributed.checkpointing import ShardedStrategy

    run_dir, _, _ = sharded_run
    last = run_dir / "checkpoints" / "last.ckpt"
    marker = tmp_path / "it ran"

    class Planted:
        def __reduce__(self):
            return exec, (f"import pathlib; pathlib.Path({str(marker)!r}).touch()",)

    planted = io.BytesIO()
    torch.save(Planted(), planted)
    index = read_dcp_metadata(last / ".metadata")
    (shard,) = last.glob("*.distcp")
    end = shard.stat().st_size
    with open(shard, "ab") as file:
        file.write(planted.getvalue())
    (lr,) = [where for key, where in index.storage_data.items() if key.fqn == "optimizer_0.param_groups.0.lr"]
    lr.offset, lr.length = end, len(planted.getvalue())
    (last / ".metadata").write_bytes(pickle.dumps(index))

    expected = r"optimizer_0\.param_groups\.0\.lr\) holds pickled code or objects"
    with pytest.raises(CheckpointError, match=expected):
        ShardedStrategy().load_checkpoint(last)  # what resuming calls
    with pytest.raises(CheckpointError, match=expected):
        load_checkpoint(last)
    assert not marker.exists()


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        ({"tokenizer_fingerprint": 12345}, "its tokenizer_fingerprint is a int, not the str"),
        ({"tokens_seen": "lots"}, "its tokens_seen is a str, not the int"),
        ({"overrides": ["optim.lr=1", 3]}, "its overrides are not all strings"),
        ({"config": {"model": {"name": "gpt", "note": "${oc.env:HOME}"}}}, "holds the interpolation"),
        ({"global_step": 2**70}, "its global_step is not a count of 0 to 2"),
        (
            {"global_step": 10**5000},
            "its pickle uses instruction 139 \\(a number of over 600 digits\\), which nothing",
        ),  # was "pickled code"
        ({"epoch": -1}, "its epoch is not a count"),
        ({"tokens_seen": 2**63}, "its tokens_seen is not a count"),
    ],
)
def test_a_checkpoints_own_entries_of_other_types_are_refused_in_one_line(run, change, expected):
    """Each was a traceback (``'int' object is not subscriptable``) or, an interpolation, this machine's
    environment read into the run's config and logs."""
    run_dir, _, _ = run
    last = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(last)
    checkpoint.update(change)
    torch.save(checkpoint, last)
    for read in (load_run, read_metadata):  # (a run folder passes over it as unusable, naming why)
        with pytest.raises(CheckpointError, match=expected):
            read(last)


def test_integer_weights_for_float_ones_are_refused_naming_them(run):
    """An integer tensor loads into a float weight as whole numbers, silently."""
    run_dir, _, _ = run
    last = run_dir / "checkpoints" / "last.ckpt"
    checkpoint = load_checkpoint(last)
    name = next(iter(checkpoint["state_dict"]))
    checkpoint["state_dict"][name] = checkpoint["state_dict"][name].long()
    torch.save(checkpoint, last)
    with pytest.raises(
        CheckpointError, match=rf"type differs \(checkpoint vs model\): {name.removeprefix('model.')}"
    ):
        load_run(run_dir)


def test_consolidating_through_a_linked_checkpoints_folder_needs_an_output(sharded_run, tmp_path, capsys):
    """Beside a checkpoint reached through a link is beside the link's target: a folder the user did not
    name. With --output it is written where asked."""
    run_dir, _, _ = sharded_run
    elsewhere = tmp_path / "elsewhere"
    shutil.move(run_dir / "checkpoints", elsewhere)
    (run_dir / "checkpoints").symlink_to(elsewhere)
    assert main(["consolidate", str(run_dir)]) == 2
    assert "is reached through a link" in capsys.readouterr().err
    assert sorted(p.name for p in elsewhere.iterdir()) == ["last.ckpt"]
    assert main(["consolidate", str(run_dir), "--output", str(tmp_path / "model.pt")]) == 0


def test_an_adapters_only_checkpoint_is_held_to_its_bases_weights(run, tmp_path):
    """``frozen_fingerprint`` (adapters only: the base is read again from model.init_from) switched the size
    budget off: a 2 MB checkpoint describing a large model took gigabytes before the base was looked for."""
    run_dir, _, _ = run
    checkpoint = load_checkpoint(run_dir / "checkpoints" / "last.ckpt")
    crafted = run_dir / "checkpoints" / "adapters.ckpt"
    checkpoint["frozen_fingerprint"] = "0" * 64
    checkpoint["config"]["model"]["n_embd"] = 2**14
    torch.save(checkpoint, crafted)
    with pytest.raises(CheckpointError, match=r"its base model model.init_from=None is needed"):
        load_run(crafted)
    checkpoint["config"]["model"]["init_from"] = str(run_dir)  # a base, of the run's own small size
    torch.save(checkpoint, crafted)
    with pytest.raises(CheckpointError, match=r"describes more than"):
        load_run(crafted)


def test_a_sharded_index_sharing_one_long_chunk_list_among_its_keys_is_refused_at_once(
    sharded_run, tmp_path, capsys, monkeypatch
):
    """A pickle can share one list of N chunks among M entries: a 300 KB .metadata cost keys x chunks
    (3.6 GB, 40 s) before any shard was looked at."""
    import lightning_llm.dcp_index as dcp_index

    run_dir, _, _ = sharded_run
    last = run_dir / "checkpoints" / "last.ckpt"

    def share(entries):
        entry = entries["state_dict.model.wte.weight"]
        entry.chunks = entry.chunks * 50  # one chunk listed 50 times, and the list shared by 50 keys
        for i in range(50):
            entries[f"state_dict.model.extra{i}"] = entry

    rewrite_index(last, share)
    monkeypatch.setattr(dcp_index, "_MAX_CHUNKS", 1000)  # 2,500 here; the real bound is 2^20
    refused_in_one_line(last, tmp_path, capsys, r"lists 2,5\d\d chunks, over 1,000")


def test_a_checkpoint_path_that_is_a_device_is_named_so(tmp_path):
    """A link to /dev/zero was "no such run folder or checkpoint file", though the path is there."""
    (tmp_path / "zero.ckpt").symlink_to("/dev/zero")
    with pytest.raises(CheckpointError, match=r"zero\.ckpt is neither a checkpoint file nor a folder"):
        find_checkpoint(tmp_path / "zero.ckpt")
    with pytest.raises(FileNotFoundError, match="no such run folder or checkpoint file"):
        find_checkpoint(tmp_path / "missing.ckpt")
