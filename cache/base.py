"""The PredictionCache interface and the one factory that picks Redis or the in-process LRU from settings."""

from __future__ import annotations

from typing import Protocol, runtime_checkable
from urllib.parse import urlsplit

from cache.memory import MemoryCache
from cache.redis import RedisCache
from cache.settings import REDIS_SCHEMES, CacheSettings, redact_url
from wattgate.errors import BadRequest


@runtime_checkable
class PredictionCache(Protocol):
    """Bytes in, bytes out, with a TTL. Every failure surfaces as ``wattgate.errors.CacheUnavailable``."""

    async def get(self, key: str) -> bytes | None: ...

    async def set(self, key: str, value: bytes, ttl_s: float, *, only_if_absent: bool = False) -> bool:
        """Store ``value``; with ``only_if_absent`` store only when the key is free. True when stored."""
        ...

    async def delete(self, key: str) -> None: ...

    async def close(self) -> None: ...


def make_cache(settings: CacheSettings) -> PredictionCache:
    """``redis://``, ``rediss://`` or ``unix://`` -> Redis; no URL -> in-process LRU; anything else raises."""
    url = settings.url
    if url is None or url == "":
        return MemoryCache(max_bytes=settings.memory_max_bytes, max_entries=settings.memory_max_entries)
    scheme = urlsplit(url).scheme
    if scheme in REDIS_SCHEMES:
        return RedisCache.from_settings(settings)
    raise BadRequest(
        f"cache url {redact_url(url)!r}: unknown scheme {scheme!r}; "
        f"use {', '.join(s + '://' for s in REDIS_SCHEMES)} or leave it unset for the in-process cache"
    )


def describe(settings: CacheSettings) -> str:
    """A log line naming the active cache, password removed: 'redis at redis://127.0.0.1:6379/0'."""
    if not settings.enabled:
        return "cache off"
    if not settings.url:
        entries = f", {settings.memory_max_entries} entries" if settings.memory_max_entries else ""
        return f"in-process LRU, {_human_bytes(settings.memory_max_bytes)}{entries}"
    return f"redis at {redact_url(settings.url)}"


def _human_bytes(n: int) -> str:
    for unit, size in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n >= size and n % size == 0:
            return f"{n // size} {unit}"
    return f"{n} bytes"
