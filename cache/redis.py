"""The Redis backend: redis-py's asyncio client behind a circuit breaker; every failure becomes CacheUnavailable."""

from __future__ import annotations

import asyncio
from typing import Any, Awaitable, Callable

from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError

from cache.breaker import CircuitBreaker
from cache.settings import CacheSettings, redact_url
from wattgate.errors import CacheUnavailable

# Errors that say "Redis is not there or not answering": they open the breaker. Other RedisErrors
# (OOM under noeviction, READONLY replica) come from a Redis that answered, so it stays reachable.
_UNREACHABLE = (RedisConnectionError, RedisTimeoutError, OSError, asyncio.TimeoutError, EOFError)


class RedisCache:
    def __init__(self, client: Redis, breaker: CircuitBreaker, description: str) -> None:
        self._client = client
        self.breaker = breaker
        self.description = description
        self._last_error = ""

    @classmethod
    def from_settings(cls, settings: CacheSettings) -> "RedisCache":
        assert settings.url, "RedisCache needs a redis://, rediss:// or unix:// URL"
        pool = BlockingConnectionPool.from_url(
            settings.url,
            max_connections=settings.max_connections,
            # Waiting for a free pooled connection is bounded like everything else.
            timeout=settings.socket_timeout_s,
            socket_timeout=settings.socket_timeout_s,
            socket_connect_timeout=settings.connect_timeout_s,
            # No retries inside redis-py: a failure goes straight to the breaker and the caller bypasses.
            retry=Retry(NoBackoff(), 0),
        )
        breaker = CircuitBreaker(settings.breaker_backoff_s, settings.breaker_max_backoff_s)
        return cls(Redis.from_pool(pool), breaker, f"redis at {redact_url(settings.url)}")

    async def get(self, key: str) -> bytes | None:
        return await self._call("GET", lambda: self._client.get(key))

    async def set(self, key: str, value: bytes, ttl_s: float, *, only_if_absent: bool = False) -> bool:
        ttl_ms = max(1, int(ttl_s * 1000))
        stored = await self._call("SET", lambda: self._client.set(key, value, px=ttl_ms, nx=only_if_absent))
        return bool(stored)

    async def delete(self, key: str) -> None:
        await self._call("DEL", lambda: self._client.delete(key))

    async def close(self) -> None:
        try:
            await self._client.aclose()
        except (RedisError, OSError):
            pass  # closing a pool whose server is gone is not worth an error at shutdown

    async def _call(self, op: str, fn: Callable[[], Awaitable[Any]]) -> Any:
        if not self.breaker.allow():
            raise CacheUnavailable(
                f"redis {op} skipped for {self.breaker.seconds_until_probe():.2f} s more "
                f"after a failure: {self._last_error}"
            )
        try:
            result = await fn()
        except _UNREACHABLE as exc:
            self._last_error = f"{type(exc).__name__}: {exc}"
            self.breaker.failure()
            raise CacheUnavailable(f"redis {op} failed: {self._last_error}") from exc
        except RedisError as exc:
            self.breaker.success()
            raise CacheUnavailable(f"redis {op} refused: {type(exc).__name__}: {exc}") from exc
        except asyncio.CancelledError:
            self.breaker.abandon()
            raise
        except Exception as exc:
            # Anything else from inside the client (e.g. a pool used from another event loop) must still
            # become a bypass, never an error out of the request.
            self._last_error = f"{type(exc).__name__}: {exc}"
            self.breaker.failure()
            raise CacheUnavailable(f"redis {op} failed unexpectedly: {self._last_error}") from exc
        self.breaker.success()
        return result
