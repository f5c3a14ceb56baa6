import threading

import pytest

from cache.memory import ENTRY_OVERHEAD_BYTES, MemoryCache


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def cost(key: str, value: bytes) -> int:
    return len(key) + len(value) + ENTRY_OVERHEAD_BYTES


@pytest.mark.asyncio
async def test_lru_evicts_least_recently_used_to_stay_within_bytes():
    entry = cost("k0", b"v" * 1000)
    cache = MemoryCache(max_bytes=3 * entry)
    for i in range(3):
        await cache.set(f"k{i}", b"v" * 1000, 60)
    assert await cache.get("k0") is not None  # k0 is now the most recently used
    await cache.set("k3", b"v" * 1000, 60)
    assert await cache.get("k1") is None
    assert all([await cache.get(k) for k in ("k0", "k2", "k3")])
    assert cache.size_bytes <= 3 * entry
    assert cache.evictions == 1


@pytest.mark.asyncio
async def test_one_big_value_evicts_as_many_small_ones_as_needed():
    cache = MemoryCache(max_bytes=10_000)
    for i in range(20):
        await cache.set(f"s{i:02d}", b"x" * 200, 60)
    assert len(cache) == 20
    await cache.set("big", b"y" * 8000, 60)
    assert await cache.get("big") == b"y" * 8000
    assert cache.size_bytes <= 10_000
    assert len(cache) < 20


@pytest.mark.asyncio
async def test_value_larger_than_the_whole_cache_is_not_stored():
    cache = MemoryCache(max_bytes=1000)
    await cache.set("keep", b"k", 60)
    assert await cache.set("huge", b"h" * 5000, 60) is False
    assert await cache.get("huge") is None
    assert await cache.get("keep") == b"k"


@pytest.mark.asyncio
async def test_entry_bound():
    cache = MemoryCache(max_bytes=1 << 20, max_entries=2)
    for k in ("a", "b", "c"):
        await cache.set(k, b"1", 60)
    assert await cache.get("a") is None
    assert len(cache) == 2


@pytest.mark.asyncio
async def test_ttl_is_honoured_and_expired_entries_free_their_bytes():
    clock = FakeClock()
    cache = MemoryCache(max_bytes=1 << 20, clock=clock)
    await cache.set("k", b"value", 5.0)
    clock.now += 4.9
    assert await cache.get("k") == b"value"
    clock.now += 0.2
    assert await cache.get("k") is None
    assert cache.size_bytes == 0


@pytest.mark.asyncio
async def test_only_if_absent_respects_live_entries_and_reuses_expired_ones():
    clock = FakeClock()
    cache = MemoryCache(max_bytes=1 << 20, clock=clock)
    assert await cache.set("m", b"a", 1.0, only_if_absent=True) is True
    assert await cache.set("m", b"b", 1.0, only_if_absent=True) is False
    assert await cache.get("m") == b"a"
    clock.now += 1.5
    assert await cache.set("m", b"c", 1.0, only_if_absent=True) is True
    await cache.delete("m")
    assert await cache.get("m") is None
    assert cache.size_bytes == 0


def test_concurrent_threads_keep_the_byte_accounting_exact():
    import asyncio

    cache = MemoryCache(max_bytes=50_000)

    def hammer(t: int) -> None:
        async def run():
            for i in range(400):
                await cache.set(f"t{t}-{i % 37}", b"z" * (i % 300), 60)
                await cache.get(f"t{(t + 1) % 4}-{i % 37}")
                if i % 11 == 0:
                    await cache.delete(f"t{t}-{(i * 7) % 37}")

        asyncio.run(run())

    threads = [threading.Thread(target=hammer, args=(t,)) for t in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    expected = sum(cost(k, v) for k, (v, _) in cache._entries.items())
    assert cache.size_bytes == expected
    assert cache.size_bytes <= 50_000
