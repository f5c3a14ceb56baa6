"""The embedded default cache: an in-process LRU bounded in bytes (and entries) that honours TTLs."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from typing import Callable

# Rough per-entry bookkeeping (dict slot, tuple, float, bytes headers) so that a flood of tiny
# values cannot hold far more memory than max_bytes suggests.
ENTRY_OVERHEAD_BYTES = 128


class MemoryCache:
    """LRU over ``key -> (value, expires_at)``; a lock (not an asyncio one) makes it safe from threads too."""

    def __init__(
        self,
        max_bytes: int,
        max_entries: int | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_bytes <= 0:
            raise ValueError("max_bytes must be positive")
        self.max_bytes = max_bytes
        self.max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._entries: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._size_bytes = 0
        self.evictions = 0

    @property
    def size_bytes(self) -> int:
        return self._size_bytes

    def __len__(self) -> int:
        return len(self._entries)

    async def get(self, key: str) -> bytes | None:
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            if entry[1] <= now:
                self._drop(key)
                return None
            self._entries.move_to_end(key)
            return entry[0]

    async def set(self, key: str, value: bytes, ttl_s: float, *, only_if_absent: bool = False) -> bool:
        value = bytes(value)
        cost = _cost(key, value)
        if cost > self.max_bytes:
            return False
        now = self._clock()
        with self._lock:
            old = self._entries.get(key)
            if old is not None:
                if only_if_absent and old[1] > now:
                    return False
                self._drop(key)
            self._entries[key] = (value, now + ttl_s)
            self._size_bytes += cost
            self._evict()
            return True

    async def delete(self, key: str) -> None:
        with self._lock:
            if key in self._entries:
                self._drop(key)

    async def close(self) -> None:
        with self._lock:
            self._entries.clear()
            self._size_bytes = 0

    def _drop(self, key: str) -> None:
        value, _ = self._entries.pop(key)
        self._size_bytes -= _cost(key, value)

    def _evict(self) -> None:
        # Plain LRU order, no sweep for expired entries: a sweep is O(n) on every set of a full cache,
        # and an expired entry is dropped anyway when read or when it reaches the cold end.
        while self._size_bytes > self.max_bytes or (
            self.max_entries is not None and len(self._entries) > self.max_entries
        ):
            self._drop(next(iter(self._entries)))
            self.evictions += 1


def _cost(key: str, value: bytes) -> int:
    return len(value) + len(key) + ENTRY_OVERHEAD_BYTES
