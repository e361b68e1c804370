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


class _SlicedOnly:
    """A token store that, like TokenShards, answers contiguous slices only."""

    def __init__(self, tokens: np.ndarray) -> None:
        self.tokens = tokens

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, key: slice) -> np.ndarray:
        assert isinstance(key, slice) and key.step is None
        return self.tokens[key]


@pytest.mark.parametrize("store", [np.asarray, _SlicedOnly])
def test_a_batch_read_together_equals_the_items_read_one_by_one(store):
    tokens = np.random.default_rng(1).integers(0, 500, size=300).astype(np.uint16)
    ds = PackedWindows(store(tokens), block_size=8, vocab_size=500)
    indices = [5, 0, -1, 17, 5]
    batch = ds.__getitems__(indices)
    assert len(batch) == len(indices)
    for index, item in zip(indices, batch, strict=True):
        expected = ds[index]
        assert item.keys() == expected.keys()
        for key in item:
            assert item[key].dtype == torch.int64
            assert torch.equal(item[key], expected[key])
        start = (index % len(ds)) * 8
        assert item["labels"].tolist() == tokens[start + 1 : start + 9].tolist()
    assert ds.__getitems__([]) == []


def test_a_dataloader_batch_is_the_stack_of_its_items():
    ds = PackedWindows(np.arange(200, dtype=np.uint16), block_size=4)
    sampler = torch.utils.data.BatchSampler(range(len(ds)), batch_size=3, drop_last=True)
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_sampler=sampler)))
    assert torch.equal(batch["input_ids"], torch.stack([ds[i]["input_ids"] for i in range(3)]))
    assert torch.equal(batch["labels"], torch.stack([ds[i]["labels"] for i in range(3)]))


def test_a_batch_names_the_window_out_of_range_or_outside_the_vocabulary():
    ds = PackedWindows(np.arange(21, dtype=np.uint16), block_size=4)
    with pytest.raises(IndexError, match="window 7 out of range for 5"):
        ds.__getitems__([0, 7, 1])
    with pytest.raises(IndexError, match="window -6 out of range for 5"):
        ds.__getitems__([-6])
    damaged = PackedWindows(np.arange(21, dtype=np.uint16), block_size=4, vocab_size=13, source="the cache")
    with pytest.raises(ValueError, match=r"the cache holds id 1[3-6].*the train split's window 3\)"):
        damaged.__getitems__([0, 1, 3, 4])
    with pytest.raises(ValueError, match=r"holds id 16.*window 3\)"):
        damaged[3]
