"""The in-process tier: a byte bound (keys and values), LRU eviction order, TTL, value cap."""

from __future__ import annotations

from speech_platform.cache.memory import MemoryLRU, entry_size
from tests.platform.cache.helpers import metric


class FakeClock:
    """Time that moves only when the test says, so TTL is checked exactly."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def key(i: int) -> str:
    return f"{i:064x}"


def test_byte_bound_evicts_least_recently_used_first() -> None:
    value = bytes(100)
    per_entry = entry_size(key(0), value)
    lru = MemoryLRU(per_entry * 3, max_value_bytes=1000, ttl_s=60)
    for i in range(3):
        assert lru.put(key(i), value)
    assert lru.get(key(0)) == value  # 0 becomes the most recent; 1 is now the oldest
    assert lru.put(key(3), value)
    assert lru.keys() == [key(2), key(0), key(3)]
    assert lru.get(key(1)) is None
    assert lru.nbytes == per_entry * 3


def test_large_value_evicts_as_many_as_needed_and_bound_always_holds() -> None:
    lru = MemoryLRU(1000, max_value_bytes=1000, ttl_s=60)
    for i in range(8):
        lru.put(key(i), bytes(50))
        assert lru.nbytes <= 1000
    big = bytes(1000 - len(key(99)))
    assert lru.put(key(99), big)  # exactly the budget
    assert lru.keys() == [key(99)]
    assert lru.nbytes == 1000


def test_values_over_the_cap_or_budget_are_not_stored() -> None:
    lru = MemoryLRU(10_000, max_value_bytes=500, ttl_s=60)
    assert lru.put(key(1), bytes(500))
    assert not lru.put(key(2), bytes(501))
    assert lru.get(key(2)) is None
    small_budget = MemoryLRU(100, max_value_bytes=500, ttl_s=60)
    assert not small_budget.put(key(3), bytes(90))  # 64-byte key + 90 > 100
    assert len(small_budget) == 0


def test_replacing_a_key_keeps_the_byte_count_exact() -> None:
    lru = MemoryLRU(10_000, max_value_bytes=5000, ttl_s=60)
    lru.put(key(1), bytes(300))
    lru.put(key(1), bytes(100))
    assert lru.nbytes == entry_size(key(1), bytes(100))
    assert len(lru) == 1


def test_entries_expire_after_ttl() -> None:
    clock = FakeClock()
    lru = MemoryLRU(10_000, max_value_bytes=5000, ttl_s=30, clock=clock)
    lru.put(key(1), b"audio")
    clock.now += 29.9
    assert lru.get(key(1)) == b"audio"
    clock.now += 0.2
    assert lru.get(key(1)) is None
    assert lru.nbytes == 0


def test_bytes_gauge_follows_every_instance() -> None:
    before = metric("speech_cache_memory_bytes")
    first = MemoryLRU(10_000, max_value_bytes=5000, ttl_s=60)
    second = MemoryLRU(10_000, max_value_bytes=5000, ttl_s=60)
    first.put(key(1), bytes(10))
    second.put(key(2), bytes(20))
    assert metric("speech_cache_memory_bytes") - before == first.nbytes + second.nbytes
    first.clear()
    second.clear()
    assert metric("speech_cache_memory_bytes") == before
