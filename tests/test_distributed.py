import pytest

from pmv.engine.distributed import ShardedSampler


def test_sharded_sampler_covers_each_item_once_without_padding():
    for size, world in [(10, 3), (7, 2), (2, 4), (9, 3)]:
        shards = [list(ShardedSampler(size, rank=r, world_size=world, shuffle=False, drop_last=False))
                  for r in range(world)]
        flat = sorted(i for shard in shards for i in shard)
        assert flat == list(range(size))
        assert [len(ShardedSampler(size, rank=r, world_size=world, drop_last=False)) for r in range(world)] == \
            [len(s) for s in shards]


def test_train_sampler_is_deterministic_per_epoch_and_equal_per_rank():
    a = ShardedSampler(11, rank=1, world_size=2, seed=5)
    b = ShardedSampler(11, rank=1, world_size=2, seed=5)
    a.set_epoch(3), b.set_epoch(3)
    assert list(a) == list(b) and len(list(a)) == 5 == len(a)
    b.set_epoch(4)
    assert list(a) != list(b)
    both = set(ShardedSampler(11, rank=0, world_size=2, seed=5)) | set(ShardedSampler(11, rank=1, world_size=2, seed=5))
    assert len(both) == 10  # the odd item is dropped, never duplicated


def test_sampler_resumes_mid_epoch():
    full = ShardedSampler(20, seed=1)
    full.set_epoch(2)
    order = list(full)
    resumed = ShardedSampler(20, seed=1)
    resumed.set_epoch(2)
    resumed.start_at(8)
    assert list(resumed) == order[8:] and len(resumed) == 12
    resumed.set_epoch(3)
    assert len(list(resumed)) == 20


def test_bad_rank():
    with pytest.raises(ValueError):
        ShardedSampler(4, rank=2, world_size=2)
