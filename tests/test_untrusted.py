"""Checks on files anyone may hand over: what a crafted checkpoint's plain data and tensors may claim."""

from __future__ import annotations

import time

import pytest
import torch
from torch import nn

from lightning_llm.errors import CheckpointError
from lightning_llm.untrusted import check_plain_structure, check_stored_config, stored_elements


def test_shared_references_that_multiply_a_walk_are_refused_at_once():
    """A pickle keeps shared references: 30 levels of a list holding one list ten times is a 2 MB file that
    a walk over (the check for code in a config, OmegaConf) would visit 10^30 times."""
    bomb: list = ["x"]
    for _ in range(30):
        bomb = [bomb] * 10
    started = time.monotonic()
    with pytest.raises(CheckpointError, match=r"ckpt: its data holds over 1,000,000 entries"):
        check_plain_structure({"config": {"extra": bomb}}, "ckpt")
    assert time.monotonic() - started < 10


def test_deep_nesting_is_refused_and_a_checkpoint_passes():
    deep: dict = {}
    for _ in range(5_000):
        deep = {"a": deep}
    with pytest.raises(CheckpointError, match="nests deeper than 100"):
        check_plain_structure({"config": deep}, "ckpt")
    weights = {f"layer{i}.weight": torch.zeros(2, 2) for i in range(1_000)}
    optimizer = {"state": {i: {"step": torch.tensor(1.0), "exp_avg": torch.zeros(2)} for i in range(1_000)}}
    check_plain_structure(
        {"state_dict": weights, "optimizer_states": [optimizer], "config": {"a": [1]}}, "ok"
    )


def test_a_tensor_expanded_from_one_element_counts_as_what_it_stores():
    """``torch.zeros(1).expand(10**11)`` pickles as one element with stride 0: it must not make room for a
    config of 10^11 weights (a 2 MB file took 3.5 GB and more before)."""
    claimed = {"pad": torch.zeros(1).expand(10**11), "w": torch.zeros(4, 4)}
    assert stored_elements(claimed) == 1 + 16
    with pytest.raises(CheckpointError, match="describes more than"):
        check_stored_config(lambda: nn.Linear(2**14, 2**14), claimed)


def test_a_stored_entry_claiming_more_bytes_than_the_file_has_is_refused(tmp_path):
    """torch reads an entry at the size its directory claims: an uncompressed entry may not claim more."""
    from lightning_llm.untrusted import torch_file_is_zip

    path = tmp_path / "model.ckpt"
    torch.save({"w": torch.zeros(4)}, path)
    assert torch_file_is_zip(path)
    data = bytearray(path.read_bytes())
    record = data.index(b"PK\x01\x02")  # the first entry's central directory record
    data[record + 24 : record + 28] = (2**31 - 1).to_bytes(4, "little")  # its uncompressed size
    path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match=r"claims 2,147,483,647 bytes, the file has"):
        torch_file_is_zip(path)


def test_views_of_one_storage_count_it_once():
    """A thousand views ``big[i:]`` of one storage held a thousand times its elements in the budget."""
    big = torch.zeros(1000)
    views = {f"v{i}": big[i:] for i in range(1000)}
    assert stored_elements(views) == 1000
    tied = torch.zeros(4, 4)
    assert stored_elements({"wte": tied, "lm_head": tied, "other": torch.zeros(3)}) == 16 + 3
    assert stored_elements({"a": torch.empty(8, device="meta"), "b": torch.empty(8, device="meta")}) == 16


def test_a_pickle_that_expands_through_shared_references_is_refused_before_it_is_built(tmp_path):
    """1 KB described a tuple of 8 copies of a tuple of 8 copies ... 13 deep: a dict keyed by it is hashed
    while torch unpickles, 8^13 steps (an hour) before any check on the loaded data could run."""
    from lightning_llm.untrusted import check_pickle_expansion, torch_file_is_zip

    nested: tuple = ("x",)
    for _ in range(13):
        nested = (nested,) * 8
    path = tmp_path / "bomb.ckpt"
    torch.save({"state_dict": {}, "extra": [nested]}, path)
    assert path.stat().st_size < 10_000
    started = time.monotonic()
    with pytest.raises(CheckpointError, match=r"bomb\.ckpt: its pickled data expands to over 10,000,000"):
        torch_file_is_zip(path)
    assert time.monotonic() - started < 5
    ordinary = {"state_dict": {f"w{i}": torch.zeros(2) for i in range(2_000)}, "config": {"a": [1, 2]}}
    torch.save(ordinary, tmp_path / "ok.ckpt")
    assert torch_file_is_zip(tmp_path / "ok.ckpt")
    import pickle

    check_pickle_expansion(pickle.dumps(ordinary["config"]), "ok")
    check_pickle_expansion(b"not a pickle", "garbage")  # left to the unpickler to name


def test_the_legacy_format_is_held_to_the_same_expansion_bound(tmp_path):
    from lightning_llm.untrusted import torch_file_is_zip

    nested: tuple = ("x",)
    for _ in range(13):
        nested = (nested,) * 8
    path = tmp_path / "old.ckpt"
    torch.save({"extra": [nested]}, path, _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match=r"old\.ckpt: its pickled data expands to over"):
        torch_file_is_zip(path)
    torch.save({"w": torch.ones(3)}, path, _use_new_zipfile_serialization=False)
    assert torch_file_is_zip(path) is False  # an ordinary one is read, as before


def test_numbers_built_to_collide_in_a_dict_and_twice_named_entries_are_refused(tmp_path):
    """Keys k * (2^61 - 1) all hash to 0: 80,000 of them (1 MB) took 28 s to unpickle, 4M would take hours.
    A second entry named like the first was the one torch read, not the one checked."""
    import zipfile

    from lightning_llm.untrusted import pickle_problem, torch_file_is_zip

    colliding = {k * (2**61 - 1): 0 for k in range(1, 200)}  # built here at 200: quadratic, but small
    path = tmp_path / "collide.ckpt"
    torch.save({"extra": colliding}, path)
    with pytest.raises(CheckpointError, match="holds over 64 distinct numbers of one hash value"):
        torch_file_is_zip(path)
    assert pickle_problem(torch.zeros(3).tolist().__repr__().encode()) is None  # not a pickle: left alone
    twice = tmp_path / "twice.ckpt"
    torch.save({"w": torch.zeros(2)}, twice)
    with zipfile.ZipFile(twice) as archive:
        name = next(n for n in archive.namelist() if n.endswith("/data.pkl"))
    with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(twice, "a") as archive:
        archive.writestr(name, b"\x80\x02}q\x00.")
    with pytest.raises(CheckpointError, match=r"holds .*data\.pkl twice"):
        torch_file_is_zip(twice)


def test_every_pickle_of_the_legacy_format_is_scanned(tmp_path):
    """The legacy stream is five pickles; a bomb in the first (the magic number's place) or the last (the
    storages' keys) was unpickled before torch failed on it."""
    import pickle

    from lightning_llm.untrusted import torch_file_is_zip

    nested: tuple = ("x",)
    for _ in range(13):
        nested = (nested,) * 8
    path = tmp_path / "old.ckpt"
    with open(path, "wb") as file:
        pickle.dump(nested, file, protocol=2)  # where the magic number goes
    with pytest.raises(CheckpointError, match="expands to over"):
        torch_file_is_zip(path)


def test_a_damaged_entry_is_one_checkpoint_error_and_a_replaced_file_is_read_as_opened(tmp_path):
    """A flipped byte in the pickled structure fails the zip's CRC: a ``CheckpointError`` (it was a
    ``BadZipFile`` traceback). A live run replacing the file (an atomic rename) while it is checked changes
    nothing: the check reads the one file it opened."""
    import os
    import zipfile

    from lightning_llm.untrusted import torch_file_is_zip

    path = tmp_path / "last.ckpt"
    torch.save({"global_step": 3, "state_dict": {"w": torch.ones(2)}}, path)
    with zipfile.ZipFile(path) as archive:
        entry = next(e for e in archive.infolist() if e.filename.endswith("/data.pkl"))
    data = bytearray(path.read_bytes())
    header = entry.header_offset
    name_length, extra_length = (
        int.from_bytes(data[header + k : header + k + 2], "little") for k in (26, 28)
    )
    start = header + 30 + name_length + extra_length  # the entry's bytes, after its local header
    data[start + entry.file_size - 2] ^= 0xFF  # inside the pickle, before its STOP
    damaged = tmp_path / "damaged.ckpt"
    damaged.write_bytes(bytes(data))
    with pytest.raises(
        CheckpointError, match="damaged.ckpt is not a readable checkpoint: corrupt or truncated"
    ):
        torch_file_is_zip(damaged)

    real_open = open

    def open_then_replace(file, *args, **kwargs):  # the rename lands just after the check opened the file
        opened = real_open(file, *args, **kwargs)
        if file == path:
            os.replace(damaged, path)
        return opened

    import builtins

    builtins_open, builtins.open = builtins.open, open_then_replace
    try:
        assert torch_file_is_zip(path)
    finally:
        builtins.open = builtins_open
