"""Look up, compute once, store: the cache in front of the model, with coalescing and bypass on failure.

A request that finds its answer ran no model: ``status="hit"``. Identical requests that arrive while
one is being computed wait for it instead of computing (``coalesced=True``, also a hit):
in-process through a single-flight table, across gateway replicas through a short Redis marker
(``SET {key}:inflight NX PX inflight_ttl_ms``). A replica that loses that race polls the value for at
most the marker's TTL, then computes itself. If the leader's compute raises, its in-process followers
get the same exception (identical inputs would fail identically); if the leader is cancelled (client
gone), one follower takes over as leader. A cache that fails never fails the request: the request is
computed (``status="bypass"``) and the failure is counted and logged at a bounded rate.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Literal

from cache.base import PredictionCache
from cache.settings import CacheSettings, ModelCacheSettings
from cache.values import decode_outputs, encode_outputs
from wattgate.errors import CacheUnavailable
from wattgate.metrics import MetricsRegistry
from wattgate.tensors import Tensor

log = logging.getLogger(__name__)

CacheStatus = Literal["hit", "miss", "bypass", "off"]
Compute = Callable[[], Awaitable[tuple[list[Tensor], Any]]]
INFLIGHT_SUFFIX = ":inflight"
_MAX_POLL_S = 0.05


@dataclass(frozen=True)
class CacheOutcome:
    """The answer and how the cache produced it.

    ``extra`` is what ``compute`` returned second, set only when this request ran ``compute``.
    ``cache_latency_ms`` is wall time spent in cache I/O and value (de)coding, polls included, compute
    excluded. ``cache_cpu_s`` is this thread's CPU time over the same spans (method ``cost_method``):
    other coroutines that ran during an await are included, so under concurrency it is an upper bound.
    """

    outputs: list[Tensor]
    status: CacheStatus
    coalesced: bool
    extra: Any
    cache_cpu_s: float
    cache_latency_ms: float
    cost_method: str = "thread-time"

    @property
    def computed(self) -> bool:
        """This request ran the model; False for hits, coalesced ones included (they avoided a run)."""
        return self.status != "hit"


class _Cost:
    """Accumulates the wall and CPU time of the cache's own work within one request."""

    __slots__ = ("cpu_s", "wall_s")

    def __init__(self) -> None:
        self.cpu_s = 0.0
        self.wall_s = 0.0

    async def io(self, awaitable: Awaitable[Any]) -> Any:
        c0, t0 = time.thread_time(), time.perf_counter()
        try:
            return await awaitable
        finally:
            self.cpu_s += time.thread_time() - c0
            self.wall_s += time.perf_counter() - t0

    def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        c0, t0 = time.thread_time(), time.perf_counter()
        try:
            return fn(*args)
        finally:
            self.cpu_s += time.thread_time() - c0
            self.wall_s += time.perf_counter() - t0


class _RateLimitedWarning:
    def __init__(self, logger: logging.Logger, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self._logger = logger
        self._interval_s = interval_s
        self._clock = clock
        self._last: float | None = None
        self._suppressed = 0

    def warn(self, message: str) -> None:
        now = self._clock()
        if self._last is not None and now - self._last < self._interval_s:
            self._suppressed += 1
            return
        suffix = f" ({self._suppressed} more since the last warning)" if self._suppressed else ""
        self._logger.warning("%s%s", message, suffix)
        self._last = now
        self._suppressed = 0


class _LeaderGone:
    """Sent to in-process followers when the leader was cancelled: one of them leads instead."""


_LEADER_GONE = _LeaderGone()


class DecodedValues:
    """The last values this replica decoded, by key: a hit whose stored bytes are unchanged reuses the
    tensors instead of decoding them again (they are read-only views). Bounded by entries and bytes."""

    def __init__(self, max_entries: int = 1024, max_bytes: int = 16 << 20) -> None:
        self.max_entries, self.max_bytes = max_entries, max_bytes
        self._entries: OrderedDict[str, tuple[bytes, list[Tensor]]] = OrderedDict()
        self._bytes = 0

    def decode(self, key: str, raw: bytes) -> list[Tensor]:
        seen = self._entries.get(key)
        if seen is not None and (seen[0] is raw or seen[0] == raw):  # the same value: an identity or memcmp check
            self._entries.move_to_end(key)
            return list(seen[1])
        outputs = decode_outputs(raw)
        if seen is not None:
            self._forget(key)
        if len(raw) <= self.max_bytes:
            self._entries[key] = (raw, outputs)
            self._bytes += len(raw)
            while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
                self._forget(next(iter(self._entries)))
        return list(outputs)

    def _forget(self, key: str) -> None:
        raw, _ = self._entries.pop(key)
        self._bytes -= len(raw)

    def __len__(self) -> int:
        return len(self._entries)


class PredictionCacheService:
    """The cache in front of one gateway replica's models; use it from one event loop."""

    def __init__(self, backend: PredictionCache, settings: CacheSettings, metrics: MetricsRegistry) -> None:
        self.backend = backend
        self.settings = settings
        self._per_model: dict[str, ModelCacheSettings] = {}
        self._inflight: dict[str, asyncio.Future] = {}
        self._decoded = DecodedValues()
        self._warning = _RateLimitedWarning(log, settings.warn_interval_s)
        self.hits = metrics.counter("wattgate_cache_hits_total", "Requests answered without running the model", ["model"])
        self.misses = metrics.counter("wattgate_cache_misses_total", "Requests computed and stored in the cache", ["model"])
        self.bypasses = metrics.counter(
            "wattgate_cache_bypass_total", "Requests computed without the cache because it was unavailable", ["model"]
        )
        self.coalesced = metrics.counter(
            "wattgate_cache_coalesced_total", "Requests that waited for an identical in-flight request", ["model"]
        )
        self.errors = metrics.counter(
            "wattgate_cache_errors_total", "Failed cache operations (get, set, inflight, decode, encode)", ["model", "op"]
        )
        self.oversize = metrics.counter(
            "wattgate_cache_oversize_total", "Computed values not stored because they exceed max_value_bytes", ["model"]
        )
        self.energy_avoided = metrics.counter(
            "wattgate_energy_avoided_joules_total", "Estimated model energy not spent thanks to cache hits", ["model", "method"]
        )
        self.carbon_avoided = metrics.counter(
            "wattgate_carbon_avoided_grams_total", "Estimated carbon not emitted thanks to cache hits", ["model", "method"]
        )

    def model_settings(self, model: str) -> ModelCacheSettings:
        ms = self._per_model.get(model)
        if ms is None:
            ms = self._per_model[model] = self.settings.for_model(model)
        return ms

    def record_avoided(self, model: str, energy_j: float, carbon_g: float, *, method: str) -> None:
        """Count what a hit saved; ``method`` says where the figure came from (cache/avoided.py)."""
        self.energy_avoided.inc(max(0.0, energy_j), model=model, method=method)
        self.carbon_avoided.inc(max(0.0, carbon_g), model=model, method=method)

    async def get_or_compute(self, key: str, compute: Compute, *, model: str, version: str) -> CacheOutcome:
        ms = self.model_settings(model)
        if not ms.enabled:
            outputs, extra = await compute()
            return CacheOutcome(list(outputs), "off", False, extra, 0.0, 0.0)
        while True:
            leader = self._inflight.get(key)
            if leader is None:
                break
            result = await asyncio.shield(leader)
            if result is _LEADER_GONE:
                continue
            self.hits.inc(model=model)
            self.coalesced.inc(model=model)
            return CacheOutcome(list(result.outputs), "hit", True, None, 0.0, 0.0)

        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            outcome = await self._lead(key, compute, ms, model, version)
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # marks it retrieved: no "never retrieved" noise when nobody followed
            raise
        else:
            future.set_result(outcome)
            return outcome
        finally:
            if not future.done():  # cancelled (or interrupted): a follower leads instead
                future.set_result(_LEADER_GONE)
            if self._inflight.get(key) is future:
                del self._inflight[key]

    async def _lead(self, key: str, compute: Compute, ms: ModelCacheSettings, model: str, version: str) -> CacheOutcome:
        cost = _Cost()
        try:
            raw = await cost.io(self.backend.get(key))
        except CacheUnavailable as exc:
            return await self._bypass(exc, "get", compute, cost, model, version)
        if raw is not None:
            try:
                outputs = cost.run(self._decoded.decode, key, raw)
            except CacheUnavailable as exc:
                # Recomputing overwrites the bad value; the request is served as a miss.
                self.errors.inc(model=model, op="decode")
                self._warning.warn(f"cache value for {model}/{version} unreadable, recomputing: {exc}")
            else:
                self.hits.inc(model=model)
                return CacheOutcome(outputs, "hit", False, None, cost.cpu_s, cost.wall_s * 1e3)

        marker = key + INFLIGHT_SUFFIX
        try:
            owner = await cost.io(
                self.backend.set(marker, secrets.token_bytes(8), self.settings.inflight_ttl_ms / 1e3, only_if_absent=True)
            )
        except CacheUnavailable as exc:
            return await self._bypass(exc, "inflight", compute, cost, model, version)
        if not owner:
            try:
                outputs = await self._wait_for_other_replica(key, marker, cost)
            except CacheUnavailable as exc:
                return await self._bypass(exc, "get", compute, cost, model, version)
            if outputs is not None:
                self.hits.inc(model=model)
                self.coalesced.inc(model=model)
                return CacheOutcome(outputs, "hit", True, None, cost.cpu_s, cost.wall_s * 1e3)
        try:
            outputs, extra = await compute()
            await self._store(key, outputs, ms, model, cost)
        finally:
            if owner:
                # Store first, then release: a poller that sees the marker gone finds the value.
                try:
                    await cost.io(self.backend.delete(marker))
                except CacheUnavailable:
                    self.errors.inc(model=model, op="inflight")  # it expires on its own
        self.misses.inc(model=model)
        return CacheOutcome(list(outputs), "miss", False, extra, cost.cpu_s, cost.wall_s * 1e3)

    async def _wait_for_other_replica(self, key: str, marker: str, cost: _Cost) -> list[Tensor] | None:
        """Poll for the value another replica is computing; None when it gave up or the marker's TTL ran out."""
        deadline = time.monotonic() + self.settings.inflight_ttl_ms / 1e3
        pause_s = self.settings.inflight_poll_ms / 1e3
        while True:
            await asyncio.sleep(min(pause_s, max(0.0, deadline - time.monotonic())))
            pause_s = min(pause_s * 2, _MAX_POLL_S)
            outputs = await self._read(key, cost)
            if outputs is not None:
                return outputs
            if time.monotonic() >= deadline:
                return None
            if await cost.io(self.backend.get(marker)) is None:
                # The other replica finished or failed; it stores before releasing, so look once more.
                return await self._read(key, cost)

    async def _read(self, key: str, cost: _Cost) -> list[Tensor] | None:
        raw = await cost.io(self.backend.get(key))
        if raw is None:
            return None
        try:
            return cost.run(decode_outputs, raw)
        except CacheUnavailable:
            return None

    async def _store(self, key: str, outputs: list[Tensor], ms: ModelCacheSettings, model: str, cost: _Cost) -> None:
        try:
            value = cost.run(encode_outputs, outputs)
        except Exception as exc:  # an output we cannot serialise is served, just not cached
            self.errors.inc(model=model, op="encode")
            self._warning.warn(f"cannot encode {model} outputs for the cache: {exc!r}")
            return
        if len(value) > ms.max_value_bytes:
            self.oversize.inc(model=model)
            return
        try:
            await cost.io(self.backend.set(key, value, ms.ttl_s))
        except CacheUnavailable as exc:
            self.errors.inc(model=model, op="set")
            self._warning.warn(f"cache store for {model} failed, answer served uncached: {exc}")

    async def _bypass(
        self, exc: CacheUnavailable, op: str, compute: Compute, cost: _Cost, model: str, version: str
    ) -> CacheOutcome:
        self.bypasses.inc(model=model)
        self.errors.inc(model=model, op=op)
        self._warning.warn(f"cache unavailable, serving {model}/{version} without it: {exc}")
        outputs, extra = await compute()
        return CacheOutcome(list(outputs), "bypass", False, extra, cost.cpu_s, cost.wall_s * 1e3)

    async def close(self) -> None:
        await self.backend.close()
