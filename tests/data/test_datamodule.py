import itertools
import json
import logging
import random

import numpy as np
import pytest
import torch

from lightning_llm import registry
from lightning_llm.data import DatasetTooSmallError, TextDataModule, streams
from lightning_llm.data.settings import DataSettings
from lightning_llm.data.shards import TokenCacheError, prepared_dir, read_manifest
from lightning_llm.data.streams import Corpus

BLOCK, BATCH = 32, 4
WORDS = ["the", "quick", "brown", "fox", "jumps", "over", "a", "lazy", "dog", "while", "seven", "wizards"]


@pytest.fixture(scope="module")
def pydoc_cache(tmp_path_factory, make_tokenizer):
    """A cache dir holding the pydoc token caches, built once for the module."""
    cache_dir = tmp_path_factory.mktemp("cache")
    dm = registry.build(
        "data", "pydoc", tokenizer=make_tokenizer(), cache_dir=cache_dir, block_size=BLOCK, batch_size=BATCH
    )
    dm.prepare_data()
    return cache_dir


def pydoc_module(tokenizer, cache_dir, **params):
    dm = registry.build(
        "data",
        "pydoc",
        tokenizer=tokenizer,
        cache_dir=cache_dir,
        **{"block_size": BLOCK, "batch_size": BATCH, **params},
    )
    dm.prepare_data()
    dm.setup("fit")
    return dm


def write_paragraphs(path, n=400, seed=0):
    rng = random.Random(seed)
    path.write_text("\n\n".join(" ".join(rng.choices(WORDS, k=12)) for _ in range(n)))
    return path


def assert_causal_batch(batch, tokenizer, batch_size=BATCH, block_size=BLOCK):
    assert set(batch) == {"input_ids", "labels"}
    assert batch["input_ids"].shape == batch["labels"].shape == (batch_size, block_size)
    assert batch["input_ids"].dtype == batch["labels"].dtype == torch.int64
    assert torch.equal(batch["labels"][:, :-1], batch["input_ids"][:, 1:])
    assert int(batch["input_ids"].max()) < tokenizer.vocab_size


def window_texts(ids, tokenizer):
    """The text pieces of a window between eos tokens; bytes of a character cut at the edge are dropped."""
    pieces, piece = [], []
    for i in ids.tolist() + [tokenizer.eos_id]:
        if i == tokenizer.eos_id:
            pieces.append(bytes(b - tokenizer.offset for b in piece).decode(errors="ignore"))
            piece = []
        else:
            piece.append(i)
    return [p for p in pieces if p]


def first_batches(loader, n=3):
    return [batch["input_ids"] for batch in itertools.islice(loader, n)]


def cache_folder(dm, tokenizer, cache_dir):
    return prepared_dir(cache_dir, dm.corpus.fingerprint(), dm.rule, tokenizer.fingerprint())


def test_constructor_reads_and_tokenizes_nothing(tokenizer, tmp_path):
    (tmp_path / "a.txt").write_text("only paragraph\n")
    corpus = Corpus("text", (str(tmp_path / "a.txt"),))
    dm = TextDataModule(tokenizer, tmp_path / "cache", corpus, DataSettings(val_fraction=0, test_fraction=0))
    assert tokenizer.calls == 0 and not (tmp_path / "cache").exists()
    assert dm.block_size == 256 and dm.batch_size == 16
    assert dm.texts("train") == ["only paragraph"] and dm.texts("val") == []
    assert dm.fingerprint() == dm.fingerprint()
    with pytest.raises(ValueError, match="unknown split 'dev'; valid splits: train, val, test"):
        dm.texts("dev")


def test_a_prepared_corpus_is_never_read_again(tokenizer, tmp_path, monkeypatch):
    """The cache is found from the files' metadata: a second run reads no corpus text at all."""
    write_paragraphs(tmp_path / "a.txt")
    params = dict(paths=[str(tmp_path / "a.txt")], block_size=8, batch_size=2)
    first = registry.build("data", "text", tokenizer=tokenizer, cache_dir=tmp_path / "cache", **params)
    first.prepare_data()

    def no_reading(*args, **kwargs):
        raise AssertionError("the corpus was read")

    monkeypatch.setattr(streams, "parts", no_reading)
    monkeypatch.setattr("lightning_llm.data.shards.parts", no_reading)
    monkeypatch.setattr(streams.Corpus, "units", no_reading)  # not even planned
    second = registry.build("data", "text", tokenizer=tokenizer, cache_dir=tmp_path / "cache", **params)
    second.prepare_data()
    second.setup("fit")
    assert_causal_batch(next(iter(second.train_dataloader())), tokenizer, batch_size=2, block_size=8)
    (tmp_path / "a.txt").write_text((tmp_path / "a.txt").read_text() + "\n\nmore")  # an edit: prepare again
    third = registry.build("data", "text", tokenizer=tokenizer, cache_dir=tmp_path / "cache", **params)
    with pytest.raises(AssertionError, match="the corpus was read"):
        third.prepare_data()


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"block_size": 0}, r"data\.block_size must be > 0, got 0"),
        ({"batch_size": -1}, r"data\.batch_size must be > 0"),
        ({"val_fraction": 0.5}, r"data\.val_fraction must be in \[0, 0\.5\)"),
        ({"test_fraction": -0.1}, r"data\.test_fraction must be in"),
        ({"num_workers": -1}, r"data\.num_workers must be >= 0"),
    ],
)
def test_bad_params_name_the_key(tokenizer, tmp_path, params, message):
    with pytest.raises(ValueError, match=message):
        registry.build("data", "pydoc", tokenizer=tokenizer, cache_dir=tmp_path, **params)


def test_source_params_are_checked(tokenizer, tmp_path):
    with pytest.raises(ValueError, match=r"data\.paths must name at least one file"):
        registry.build("data", "text", tokenizer=tokenizer, cache_dir=tmp_path, paths=[])
    with pytest.raises(ValueError, match=r"data\.field must name"):
        registry.build("data", "jsonl", tokenizer=tokenizer, cache_dir=tmp_path, paths=["x.jsonl"], field="")
    with pytest.raises(FileNotFoundError, match="no files match"):
        registry.build(
            "data", "text", tokenizer=tokenizer, cache_dir=tmp_path, paths=[str(tmp_path / "*.txt")]
        ).texts("train")


def test_plugins_are_registered_with_typed_params(tokenizer, tmp_path):
    assert {"pydoc", "text", "jsonl", "parquet"} <= set(registry.names("data"))
    params = {p.name: p for p in registry.get("data", "jsonl").parameters()}
    assert list(params)[0] == "block_size" and list(params)[-2:] == ["paths", "field"]  # shared ones first
    assert params["paths"].default is params["paths"].empty  # required
    assert params["block_size"].default == 256 and params["val_fraction"].default == 0.05
    dm = registry.build("data", "pydoc", tokenizer=tokenizer, cache_dir=tmp_path)
    assert isinstance(dm, TextDataModule)


def test_pydoc_end_to_end(tokenizer, pydoc_cache):
    dm = pydoc_module(tokenizer, pydoc_cache)
    assert tokenizer.calls == 0  # the module fixture already built the cache
    cache = cache_folder(dm, tokenizer, pydoc_cache)
    assert sorted(p.name for p in cache.iterdir()) == ["manifest.json", "units"]
    files = [".prepare.lock", "000000.json", "000000.test.bin", "000000.train.bin", "000000.val.bin"]
    assert sorted(p.name for p in (cache / "units").iterdir()) == files
    assert read_manifest(cache)["tokens"]["train"] == len(dm._datasets["train"].tokens)
    train = dm.train_dataloader()
    assert len(train) == len(train.dataset) // BATCH  # drop_last
    batch = next(iter(train))
    assert_causal_batch(batch, tokenizer)
    train_text = "\n".join(dm.texts("train"))
    for window in batch["input_ids"]:
        assert all(piece in train_text for piece in window_texts(window, tokenizer))
    val = dm.val_dataloader()
    assert_causal_batch(next(iter(val)), tokenizer)
    assert sum(len(b["input_ids"]) for b in val) == len(val.dataset)  # no drop_last
    dm.setup("test")
    assert_causal_batch(next(iter(dm.test_dataloader())), tokenizer)
    assert dm.state_dict() == {"epoch": 0, "samples": 0}


def test_cache_build_and_reuse_are_logged(make_tokenizer, tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="lightning_llm.data")
    first = make_tokenizer()
    pydoc_module(first, tmp_path)
    assert first.calls > 0 and caplog.text.count("prepared 1 of 1 units") == 1
    second = make_tokenizer()
    pydoc_module(second, tmp_path)
    assert second.calls == 0 and caplog.text.count("token cache hit") >= 1


def test_text_files_end_to_end(tokenizer, tmp_path):
    write_paragraphs(tmp_path / "a.txt", seed=1)
    write_paragraphs(tmp_path / "b.txt", seed=2)
    dm = registry.build(
        "data",
        "text",
        tokenizer=tokenizer,
        cache_dir=tmp_path / "cache",
        paths=[str(tmp_path / "*.txt")],
        block_size=16,
        batch_size=2,
    )
    dm.prepare_data()
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert_causal_batch(batch, tokenizer, batch_size=2, block_size=16)
    words = set(tokenizer.decode(batch["input_ids"][0]).replace("\n", " ").split()[1:-1])
    assert words <= set(WORDS)


def test_jsonl_end_to_end(tokenizer, tmp_path):
    rng = random.Random(0)
    lines = [json.dumps({"body": " ".join(rng.choices("abcdefgh", k=30))}) for _ in range(300)]
    (tmp_path / "d.jsonl").write_text("\n".join(lines))
    path = str(tmp_path / "d.jsonl")
    dm = registry.build(
        "data",
        "jsonl",
        tokenizer=tokenizer,
        cache_dir=tmp_path,
        paths=[path],
        field="body",
        block_size=8,
        batch_size=2,
    )
    dm.prepare_data()
    dm.setup("fit")
    assert_causal_batch(next(iter(dm.train_dataloader())), tokenizer, batch_size=2, block_size=8)


def test_shuffle_is_reproducible_and_seeded(tokenizer, pydoc_cache):
    def epochs(seed):
        loader = pydoc_module(tokenizer, pydoc_cache, shuffle_seed=seed).train_dataloader()
        first = first_batches(loader)
        loader.batch_sampler.set_epoch(1)  # Lightning does this at each epoch start
        return first, first_batches(loader)

    first, second = epochs(0), epochs(0)
    assert all(torch.equal(a, b) for a, b in zip(first[0] + first[1], second[0] + second[1], strict=True))
    assert not torch.equal(first[0][0], first[1][0])  # a new order each epoch
    assert not torch.equal(epochs(1)[0][0], first[0][0])


def test_zero_fraction_turns_a_split_off(tokenizer, pydoc_cache):
    dm = pydoc_module(tokenizer, pydoc_cache, val_fraction=0.0)
    assert dm.texts("val") == [] and dm.val_dataloader() == []
    assert not dm.has_split("val") and dm.has_split("train") and dm.has_split("test")
    assert read_manifest(cache_folder(dm, tokenizer, pydoc_cache))["tokens"]["val"] == 0
    assert_causal_batch(next(iter(dm.train_dataloader())), tokenizer)


def test_too_small_split_is_a_clear_error(tokenizer, pydoc_cache):
    with pytest.raises(
        DatasetTooSmallError,
        match=r"the val split has \d+ tokens.*block_size \+ 1 = 100001.*data\.val_fraction=0",
    ):
        pydoc_module(tokenizer, pydoc_cache, block_size=100_000, batch_size=1)
    with pytest.raises(DatasetTooSmallError, match=r"fewer than data\.batch_size=100000"):
        pydoc_module(tokenizer, pydoc_cache, batch_size=100_000)


def test_loader_options(tokenizer, pydoc_cache):
    dm = pydoc_module(tokenizer, pydoc_cache, num_workers=2)
    train, val = dm.train_dataloader(), dm.val_dataloader()
    assert train.batch_sampler.drop_last and not val.batch_sampler.drop_last
    assert train.num_workers == 2 and train.persistent_workers
    assert train.pin_memory == torch.cuda.is_available()


def test_loaders_before_setup_explain(tokenizer, tmp_path):
    dm = registry.build("data", "pydoc", tokenizer=tokenizer, cache_dir=tmp_path)
    with pytest.raises(RuntimeError, match=r"the train split is not set up; call setup\(\) first"):
        dm.train_dataloader()


@pytest.mark.parametrize("off", ["val", "test"])
def test_a_split_turned_off_has_no_data_and_an_empty_loader_at_every_stage(tokenizer, pydoc_cache, off):
    dm = registry.build(
        "data",
        "pydoc",
        tokenizer=tokenizer,
        cache_dir=pydoc_cache,
        block_size=BLOCK,
        batch_size=BATCH,
        **{f"{off}_fraction": 0},
    )
    assert not dm.has_split(off)
    assert getattr(dm, f"{off}_dataloader")() == []  # before setup too: nothing to set up
    dm.prepare_data()
    for stage in ("fit", "validate", "test", None):
        dm.setup(stage)
    assert getattr(dm, f"{off}_dataloader")() == []
    on = {"val": "test", "test": "val"}[off]
    assert dm.has_split(on) and len(getattr(dm, f"{on}_dataloader")()) > 0


def test_has_split_refuses_an_unknown_split(tokenizer, tmp_path):
    with pytest.raises(ValueError, match="unknown split 'validation'; valid splits: train, val, test"):
        registry.build("data", "pydoc", tokenizer=tokenizer, cache_dir=tmp_path).has_split("validation")


def test_a_damaged_token_cache_is_refused_when_set_up(tokenizer, tmp_path):
    """The manifest's largest id is checked at setup (no token read); an id rewritten in place is refused
    by the window that holds it, when it is read."""
    dm = pydoc_module(tokenizer, tmp_path)
    cache = cache_folder(dm, tokenizer, tmp_path)
    manifest = read_manifest(cache)
    damaged = {**manifest, "max_id": {**manifest["max_id"], "train": 999}}
    (cache / "manifest.json").write_text(json.dumps(damaged))
    fresh = registry.build(
        "data", "pydoc", tokenizer=tokenizer, cache_dir=tmp_path, block_size=BLOCK, batch_size=BATCH
    )
    fresh.prepare_data()  # sizes match: the cache counts as built
    with pytest.raises(TokenCacheError, match=f"token cache {cache} holds id 999.*delete it"):
        fresh.setup("fit")
    (cache / "manifest.json").write_text(json.dumps(manifest))
    path = cache / "units" / "000000.train.bin"
    tokens = np.fromfile(path, dtype=np.uint16)
    tokens[BLOCK // 2] = tokenizer.vocab_size  # one id past the vocabulary, in window 0
    tokens.tofile(path)
    fresh = registry.build(
        "data", "pydoc", tokenizer=tokenizer, cache_dir=tmp_path, block_size=BLOCK, batch_size=BATCH
    )
    fresh.setup("fit")
    with pytest.raises(ValueError, match=f"token cache {cache} holds id {tokenizer.vocab_size}.*window 0"):
        fresh._datasets["train"][0]
