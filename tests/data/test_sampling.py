"""The batch samplers: W processes see what one process sees, every rank steps equally, resume is exact."""

import pytest

from lightning_llm.data.sampling import EvalBatchSampler, TrainBatchSampler, epoch_order


def rank_batches(sampler_cls, n: int, batch_size: int, world_size: int, **kwargs) -> list[list[list[int]]]:
    """Each rank's batches: ``[rank][step] -> indices``."""
    return [
        list(sampler_cls(n, batch_size, world_size=world_size, rank=rank, **kwargs))
        for rank in range(world_size)
    ]


def steps_union(per_rank: list[list[list[int]]]) -> list[list[int]]:
    """The global batch of each step: the ranks' batches concatenated in rank order."""
    assert len({len(batches) for batches in per_rank}) == 1  # every rank steps equally often
    return [sum(step, []) for step in zip(*per_rank, strict=True)]


@pytest.mark.parametrize("drop_last", [True, False])
@pytest.mark.parametrize(("n", "world_size", "batch_size"), [(64, 2, 4), (50, 2, 3), (37, 3, 2), (100, 4, 5)])
def test_world_size_ranks_of_b_see_what_one_process_of_b_times_w_sees(n, world_size, batch_size, drop_last):
    for epoch in (0, 3):
        single = TrainBatchSampler(n, batch_size * world_size, shuffle_seed=7, drop_last=drop_last)
        single.set_epoch(epoch)
        samplers = [
            TrainBatchSampler(
                n, batch_size, world_size=world_size, rank=r, shuffle_seed=7, drop_last=drop_last
            )
            for r in range(world_size)
        ]
        for sampler in samplers:
            sampler.set_epoch(epoch)
        per_rank = [list(s) for s in samplers]
        union = steps_union(per_rank)
        expected = list(single)
        last = len(union) - 1
        assert union[:last] == expected[:last]  # same step, same items, same order
        # The last step too, except that a remainder too short for every rank is folded into it.
        assert union[last] == sum(expected[last:], [])
        assert len(expected) - len(union) == (
            not drop_last and 0 < n % (batch_size * world_size) < world_size
        )
        assert all(len(batch) == batch_size for batches in per_rank for batch in batches[:last])
        assert len(samplers[0]) == len(per_rank[0])
        # Over the epoch: each item at most once, and with drop_last=False every item once.
        seen = [i for step in union for i in step]
        assert len(seen) == len(set(seen))
        assert sorted(seen) == (sorted(range(n)) if not drop_last else sorted(seen))
        assert seen == epoch_order(n, 7, epoch).tolist()[: len(seen)]


@pytest.mark.parametrize(
    ("n", "world_size", "batch_size"), [(10, 3, 4), (7, 2, 3), (25, 4, 3), (5, 5, 1), (13, 4, 2)]
)
def test_eval_every_item_once_equal_batch_counts(n, world_size, batch_size):
    per_rank = rank_batches(EvalBatchSampler, n, batch_size, world_size)
    counts = [len(batches) for batches in per_rank]
    assert len(set(counts)) == 1 and counts[0] == len(EvalBatchSampler(n, batch_size, world_size=world_size))
    assert all(batch for batches in per_rank for batch in batches)  # no rank ever gets an empty batch
    items = sorted(i for batches in per_rank for batch in batches for i in batch)
    assert items == list(range(n))
    assert [i for step in steps_union(per_rank) for i in step] == list(range(n))  # in order


def test_eval_single_process_is_plain_in_order_batches():
    assert list(EvalBatchSampler(10, 4)) == [[0, 1, 2, 3], [4, 5, 6, 7], [8, 9]]
    assert len(EvalBatchSampler(10, 4)) == 3


def test_eval_fewer_items_than_processes_is_an_error():
    with pytest.raises(ValueError, match="2 items, fewer than the 3 processes"):
        EvalBatchSampler(2, 4, world_size=3)


def test_short_final_batch_spread_evenly_or_folded():
    # n=13, batch 2 x 4 ranks: one full global batch of 8, then 5 items -> ranks get 2,1,1,1.
    per_rank = rank_batches(EvalBatchSampler, 13, 2, 4)
    assert per_rank == [[[0, 1], [8, 9]], [[2, 3], [10]], [[4, 5], [11]], [[6, 7], [12]]]
    # n=10: 2 items left for 4 ranks, folded into the previous batch: 10 items over 4 ranks -> 3,3,2,2.
    per_rank = rank_batches(EvalBatchSampler, 10, 2, 4)
    assert per_rank == [[[0, 1, 2]], [[3, 4, 5]], [[6, 7]], [[8, 9]]]
    # The same rules for train with drop_last=False, on the epoch's permutation.
    order = epoch_order(10, 0, 0).tolist()
    per_rank = rank_batches(TrainBatchSampler, 10, 2, 4, drop_last=False)
    assert per_rank == [[order[0:3]], [order[3:6]], [order[6:8]], [order[8:10]]]
    # drop_last=True drops the 2 extra items instead.
    per_rank = rank_batches(TrainBatchSampler, 10, 2, 4, drop_last=True)
    assert [batches[0] for batches in per_rank] == [order[0:2], order[2:4], order[4:6], order[6:8]]


def test_epochs_differ_and_seed_epoch_pairs_repeat():
    def epoch_batches(seed: int, epoch: int) -> list[list[int]]:
        sampler = TrainBatchSampler(40, 4, shuffle_seed=seed)
        sampler.set_epoch(epoch)
        return list(sampler)

    assert epoch_batches(1, 0) == epoch_batches(1, 0)
    assert epoch_batches(1, 2) == epoch_batches(1, 2)
    assert epoch_batches(1, 0) != epoch_batches(1, 1)
    assert epoch_batches(1, 0) != epoch_batches(2, 0)
    sampler = TrainBatchSampler(40, 4, shuffle_seed=1)
    assert list(sampler) == list(sampler)  # iterating twice without set_epoch repeats the epoch


def test_start_at_skips_exactly_then_later_epochs_are_whole():
    sampler = TrainBatchSampler(40, 2, world_size=2, rank=1, shuffle_seed=3)
    full = {}
    for epoch in (1, 2):
        sampler.set_epoch(epoch)
        full[epoch] = list(sampler)
    resumed = TrainBatchSampler(40, 2, world_size=2, rank=1, shuffle_seed=3)
    resumed.start_at(1, 12)  # 3 global batches of 4
    assert len(resumed) == len(full[1]) == 10  # len is always the whole epoch
    assert list(resumed) == full[1][3:]
    resumed.set_epoch(1)
    assert list(resumed) == full[1]  # the skip applies to one pass only
    resumed.set_epoch(2)
    assert list(resumed) == full[2]


def test_start_at_survives_set_epoch_of_the_same_epoch_but_not_another():
    reference = TrainBatchSampler(24, 4, shuffle_seed=0)
    reference.set_epoch(5)
    expected = list(reference)
    sampler = TrainBatchSampler(24, 4, shuffle_seed=0)
    sampler.start_at(5, 8)
    sampler.set_epoch(5)  # Lightning sets the resumed epoch again before its pass
    assert list(sampler) == expected[2:]
    sampler.start_at(5, 8)
    sampler.set_epoch(6)  # a position of epoch 5 says nothing about epoch 6
    reference.set_epoch(6)
    assert list(sampler) == list(reference)


def test_start_at_needs_whole_global_batches():
    sampler = TrainBatchSampler(40, 3, world_size=2)
    with pytest.raises(ValueError, match="after 9 samples: not a multiple of the global batch of 6"):
        sampler.start_at(0, 9)
    with pytest.raises(ValueError, match="only 6 global batches"):
        sampler.start_at(0, 42)


@pytest.mark.parametrize(("saved_world", "resumed_world"), [(2, 1), (1, 4), (4, 2)])
def test_position_in_samples_resumes_under_another_world_size(saved_world, resumed_world):
    global_batch, n, consumed = 8, 70, 24

    def global_steps(world_size: int, position: int | None) -> list[list[int]]:
        samplers = [
            TrainBatchSampler(n, global_batch // world_size, world_size=world_size, rank=r, shuffle_seed=9)
            for r in range(world_size)
        ]
        for sampler in samplers:
            if position is None:
                sampler.set_epoch(2)
            else:
                sampler.start_at(2, position)
        return steps_union([list(s) for s in samplers])

    uninterrupted = global_steps(saved_world, None)
    assert global_steps(resumed_world, consumed) == uninterrupted[consumed // global_batch :]


def test_train_split_smaller_than_one_global_batch_is_an_error():
    with pytest.raises(ValueError, match="train split has 7 items, fewer than one global batch"):
        TrainBatchSampler(7, 4, world_size=2)
    assert len(TrainBatchSampler(7, 4, world_size=2, drop_last=False)) == 1
