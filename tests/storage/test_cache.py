"""The block cache (quanta/_storage/cache.py): LRU order, the byte bound, evict_file."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from quanta._storage.cache import BlockCache, CacheStats


def test_get_and_put() -> None:
    cache = BlockCache(100)
    assert cache.get((1, 0)) is None
    cache.put((1, 0), "block", 10)
    assert cache.get((1, 0)) == "block"
    assert cache.stats == CacheStats(hits=1, misses=1, bytes=10, entries=1)


def test_least_recently_used_goes_first() -> None:
    cache = BlockCache(30)
    for i in range(3):
        cache.put((1, i), i, 10)
    assert cache.get((1, 0)) == 0  # now (1, 1) is the least recently used
    cache.put((1, 3), 3, 10)
    assert (1, 1) not in cache
    assert [(1, 0) in cache, (1, 2) in cache, (1, 3) in cache] == [True, True, True]
    cache.put((1, 4), 4, 10)
    assert (1, 2) not in cache and (1, 0) in cache


def test_put_evicts_as_many_as_needed() -> None:
    cache = BlockCache(100)
    for i in range(10):
        cache.put((1, i), i, 10)
    cache.put((2, 0), "big", 65)
    assert cache.bytes == 95 and len(cache) == 4
    assert [(1, i) in cache for i in range(10)] == [False] * 7 + [True] * 3


def test_item_larger_than_the_capacity_is_not_cached() -> None:
    cache = BlockCache(100)
    cache.put((1, 0), "a", 60)
    cache.put((1, 1), "huge", 101)
    assert (1, 1) not in cache and (1, 0) in cache and cache.bytes == 60


def test_item_of_exactly_the_capacity_is_cached() -> None:
    cache = BlockCache(100)
    cache.put((1, 0), "a", 60)
    cache.put((1, 1), "b", 100)
    assert (1, 1) in cache and (1, 0) not in cache and cache.bytes == 100


def test_replacing_a_key_replaces_its_charge() -> None:
    cache = BlockCache(100)
    cache.put((1, 0), "old", 60)
    cache.put((1, 0), "new", 20)
    assert cache.get((1, 0)) == "new" and cache.bytes == 20 and len(cache) == 1
    cache.put((1, 0), "too big", 200)  # the stale value must not survive either
    assert (1, 0) not in cache and cache.bytes == 0


def test_evict_file_drops_only_that_file() -> None:
    cache = BlockCache(1000)
    for f in (1, 2, 3):
        for b in range(4):
            cache.put((f, b), (f, b), 10)
    cache.evict_file(2)
    assert [(f, b) in cache for f in (1, 2, 3) for b in range(4)] == [True] * 4 + [False] * 4 + [True] * 4
    assert cache.bytes == 80 and len(cache) == 8
    cache.evict_file(2)  # again: nothing to do
    cache.evict_file(99)
    assert cache.bytes == 80
    # Eviction order is unaffected for the rest.
    cache.put((4, 0), "x", 930)
    assert cache.bytes == 1000 and (1, 0) not in cache and (3, 3) in cache


def test_capacity_zero_disables_caching() -> None:
    cache = BlockCache(0)
    cache.put((1, 0), "a", 0)
    cache.put((1, 1), "b", 10)
    assert cache.get((1, 0)) is None and len(cache) == 0 and cache.bytes == 0
    assert cache.stats.misses == 1


def test_negative_capacity_is_rejected() -> None:
    with pytest.raises(ValueError):
        BlockCache(-1)


def test_clear() -> None:
    cache = BlockCache(100)
    cache.put((1, 0), "a", 10)
    cache.clear()
    assert len(cache) == 0 and cache.bytes == 0 and cache.get((1, 0)) is None


class _ModelLRU:
    """The obvious (slow) LRU: a list in recency order."""

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.items: list[tuple[tuple[int, int], int, int]] = []  # key, value, charge

    def get(self, key: tuple[int, int]) -> int | None:
        for i, item in enumerate(self.items):
            if item[0] == key:
                self.items.append(self.items.pop(i))
                return item[1]
        return None

    def put(self, key: tuple[int, int], value: int, charge: int) -> None:
        self.items = [it for it in self.items if it[0] != key]
        if charge > self.capacity or not self.capacity:
            return
        self.items.append((key, value, charge))
        while sum(it[2] for it in self.items) > self.capacity:
            self.items.pop(0)

    def evict_file(self, number: int) -> None:
        self.items = [it for it in self.items if it[0][0] != number]


keys_st = st.tuples(st.integers(0, 3), st.integers(0, 5))
ops_st = st.lists(
    st.one_of(
        st.tuples(st.just("get"), keys_st, st.just(0), st.just(0)),
        st.tuples(st.just("put"), keys_st, st.integers(0, 1000), st.integers(0, 60)),
        st.tuples(st.just("evict"), keys_st, st.just(0), st.just(0)),
    ),
    max_size=80,
)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, 150), ops_st)
def test_behaves_like_the_model(capacity: int, ops: list[tuple[str, tuple[int, int], int, int]]) -> None:
    cache, model = BlockCache(capacity), _ModelLRU(capacity)
    hits = misses = 0
    for op, key, value, charge in ops:
        if op == "get":
            want = model.get(key)
            assert cache.get(key) == want
            hits, misses = hits + (want is not None), misses + (want is None)
        elif op == "put":
            cache.put(key, value, charge)
            model.put(key, value, charge)
        else:
            cache.evict_file(key[0])
            model.evict_file(key[0])
        assert cache.bytes == sum(it[2] for it in model.items) <= capacity
        assert len(cache) == len(model.items)
    assert cache.stats == CacheStats(hits=hits, misses=misses, bytes=cache.bytes, entries=len(model.items))
    assert [cache.get(it[0]) for it in list(model.items)] == [it[1] for it in model.items]
