import pickle

import numpy as np
import pytest
import torch

from lightning_llm.data.datasets import DatasetTooSmallError, PackedWindows


def test_windows_are_shifted_non_overlapping_and_int64():
    ds = PackedWindows(np.arange(21, dtype=np.uint16), block_size=4)
    assert len(ds) == 5
    first, last = ds[0], ds[4]
    assert first["input_ids"].dtype == first["labels"].dtype == torch.int64
    assert first["input_ids"].tolist() == [0, 1, 2, 3]
    assert first["labels"].tolist() == [1, 2, 3, 4]
    assert last["input_ids"].tolist() == [16, 17, 18, 19]
    assert ds[-1]["labels"].tolist() == last["labels"].tolist() == [17, 18, 19, 20]


def test_every_target_is_used_once_per_epoch():
    tokens = np.random.default_rng(0).integers(0, 60_000, size=1000).astype(np.uint16)
    ds = PackedWindows(tokens, block_size=7)
    assert len(ds) == 999 // 7
    labels = torch.cat([ds[i]["labels"] for i in range(len(ds))])
    assert labels.tolist() == tokens[1 : 1 + 7 * len(ds)].tolist()


def test_index_out_of_range():
    ds = PackedWindows(np.arange(9), block_size=4)
    assert len(ds) == 2
    with pytest.raises(IndexError, match="window 2 out of range for 2"):
        ds[2]


def test_too_few_tokens_names_split_count_and_block_size():
    PackedWindows(np.arange(5), block_size=4)  # exactly one window fits
    with pytest.raises(DatasetTooSmallError, match=r"the val split has 4 tokens.*block_size \+ 1 = 5"):
        PackedWindows(np.arange(4), block_size=4, split="val")
    with pytest.raises(ValueError, match="block_size must be > 0"):
        PackedWindows(np.arange(4), block_size=0)


def test_pickling_a_memmap_sends_the_file_name_not_the_data(tmp_path):
    path = tmp_path / "tokens.bin"
    np.arange(100_000, dtype=np.uint32).tofile(path)
    ds = PackedWindows(np.memmap(path, dtype=np.uint32, mode="r"), block_size=16)
    payload = pickle.dumps(ds)
    assert len(payload) < 1_000  # the file is 400 kB
    clone = pickle.loads(payload)
    assert isinstance(clone.tokens, np.memmap)
    assert torch.equal(clone[123]["labels"], ds[123]["labels"])

    sliced = PackedWindows(np.memmap(path, dtype=np.uint32, mode="r")[10:50], block_size=16)
    assert torch.equal(pickle.loads(pickle.dumps(sliced))[1]["input_ids"], sliced[1]["input_ids"])
