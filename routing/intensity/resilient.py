"""The behaviour every provider shares: caching, stale flags and the fallback chain (live -> last known -> static).

``ResilientProvider`` wraps an ordered chain of providers plus an optional ``"last-known"`` step.
``current(region)`` walks the chain and returns the first answer, so an outage of the live
source never fails a request as long as the chain ends in a step that knows the region (the
static table). Each provider step caches its answer for its update period, and after a failure
is left alone for ``failure_backoff_s`` so a dead source is not called on every request.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any, Callable, Hashable, Mapping, Sequence

from wattgate.errors import ProviderUnavailable
from wattgate.metrics import MetricsRegistry

from .base import CarbonIntensityProvider, IntensityReading, NotSupported, UnknownRegion, signal_type, utcnow

__all__ = ["LAST_KNOWN", "ResilientProvider"]

LAST_KNOWN = "last-known"
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Step:
    name: str
    provider: CarbonIntensityProvider | None  # None: answer from the last live reading we kept
    ttl_s: float


class _BoundedLog:
    """At most one warning per key per ``interval_s``; the next one says how many were swallowed."""

    def __init__(self, logger: logging.Logger, interval_s: float, monotonic: Callable[[], float]) -> None:
        self._logger, self._interval_s, self._monotonic = logger, interval_s, monotonic
        self._lock = threading.Lock()
        self._last: dict[Hashable, float] = {}
        self._suppressed: dict[Hashable, int] = {}

    def warning(self, key: Hashable, message: str) -> None:
        now = self._monotonic()
        with self._lock:
            last = self._last.get(key)
            if last is not None and now - last < self._interval_s:
                self._suppressed[key] = self._suppressed.get(key, 0) + 1
                return
            self._last[key] = now
            suppressed = self._suppressed.pop(key, 0)
        if suppressed:
            message = f"{message} ({suppressed} similar suppressed in the last {self._interval_s:.0f} s)"
        self._logger.warning(message)


class ResilientProvider:
    """A ``CarbonIntensityProvider`` that caches, flags stale readings and falls back along a chain.

    ``chain`` items are ``(name, provider)`` pairs or the string ``"last-known"``. ``ttl_s`` maps
    step names to cache lifetimes (default: each provider's ``update_period_s``). A reading whose
    grid timestamp is more than ``max_age_s`` older than ``clock()`` gets ``stale=True``; the
    last-known step keeps readings for at most ``last_known_max_age_s`` (None: forever).
    """

    def __init__(
        self,
        chain: Sequence[tuple[str, CarbonIntensityProvider] | str],
        *,
        ttl_s: Mapping[str, float] | None = None,
        max_age_s: float = 3600.0,
        last_known_max_age_s: float | None = None,
        failure_backoff_s: float = 30.0,
        metrics: MetricsRegistry | None = None,
        clock: Callable[[], datetime] = utcnow,
        monotonic: Callable[[], float] = time.monotonic,
        log_interval_s: float = 60.0,
        logger: logging.Logger = log,
        signal: str | None = None,
    ) -> None:
        ttl_s = dict(ttl_s or {})
        steps: list[_Step] = []
        for item in chain:
            if item == LAST_KNOWN:
                steps.append(_Step(LAST_KNOWN, None, 0.0))
                continue
            name, provider = item  # type: ignore[misc]
            ttl = ttl_s.get(name, getattr(provider, "update_period_s", 300.0))
            steps.append(_Step(name, provider, float(ttl)))
        names = [s.name for s in steps]
        if not any(s.provider is not None for s in steps):
            raise ValueError("the intensity chain needs at least one provider")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate step in intensity chain {names}")
        unknown_ttl = set(ttl_s) - set(names)
        if unknown_ttl:
            raise ValueError(f"ttl_s names steps not in the chain: {sorted(unknown_ttl)}")
        self._steps = steps
        # The one signal type the chain serves ("average" | "marginal"; None: any but an index).
        self.signal = signal
        self.max_age_s = max_age_s
        self.last_known_max_age_s = last_known_max_age_s
        self.failure_backoff_s = failure_backoff_s
        self.clock = clock
        self._monotonic = monotonic
        self._log = _BoundedLog(logger, log_interval_s, monotonic)
        self._lock = threading.Lock()
        self._key_locks: dict[Hashable, threading.Lock] = {}
        self._cache: dict[Hashable, tuple[Any, float]] = {}
        self._down_until: dict[Hashable, float] = {}
        self._last_known: dict[str, IntensityReading] = {}
        registry = metrics or MetricsRegistry()
        self._fallbacks = registry.counter(
            "wattgate_intensity_fallback_total",
            "Times a provider in the intensity chain was passed over (error, back-off) for a region",
            ("provider", "region"),
        )
        self._fetches = registry.counter(
            "wattgate_intensity_fetch_total", "Intensity lookups per provider by result", ("provider", "result")
        )
        self._served = registry.gauge(
            "wattgate_intensity_g_per_kwh", "Last grid intensity served per region (g/kWh, see source/signal)", ("region",),
            merge="mean",
        )

    @property
    def chain(self) -> list[str]:
        return [s.name for s in self._steps]

    def providers(self) -> dict[str, CarbonIntensityProvider]:
        return {s.name: s.provider for s in self._steps if s.provider is not None}

    def close(self) -> None:
        for provider in self.providers().values():
            close = getattr(provider, "close", None)
            if close is not None:
                close()

    # -- plumbing -----------------------------------------------------------------------------

    def _key_lock(self, key: Hashable) -> threading.Lock:
        with self._lock:
            lock = self._key_locks.get(key)
            if lock is None:
                lock = self._key_locks[key] = threading.Lock()
            return lock

    def _cached(self, step: _Step, key: Hashable, fetch: Callable[[], Any], cache: bool = True) -> Any:
        """``fetch()`` at most once per ``step.ttl_s``; after a failure, fail fast for ``failure_backoff_s``."""
        # One lock per key: concurrent requests for a cold region wait for a single fetch.
        with self._key_lock(key):
            now = self._monotonic()
            hit = self._cache.get(key)
            if hit is not None and hit[1] > now:
                self._fetches.inc(provider=step.name, result="cached")
                return hit[0]
            down_until = self._down_until.get(key, 0.0)
            if down_until > now:
                self._fetches.inc(provider=step.name, result="backoff")
                raise ProviderUnavailable(f"{step.name}: failed recently, retrying in {down_until - now:.0f} s")
            try:
                value = fetch()
            except (UnknownRegion, NotSupported):
                raise
            except Exception:
                self._fetches.inc(provider=step.name, result="error")
                self._down_until[key] = self._monotonic() + self.failure_backoff_s
                raise
            self._fetches.inc(provider=step.name, result="ok")
            self._down_until.pop(key, None)
            if cache and step.ttl_s > 0:
                self._cache[key] = (value, self._monotonic() + step.ttl_s)
            return value

    def _judged(self, reading: IntensityReading, now: datetime) -> IntensityReading:
        stale = reading.age_s(now) > self.max_age_s
        return reading if stale == reading.stale else replace(reading, stale=stale)

    def _from_last_known(self, region: str, now: datetime) -> IntensityReading | None:
        with self._lock:
            kept = self._last_known.get(region)
        if kept is None:
            return None
        if self.last_known_max_age_s is not None and kept.age_s(now) > self.last_known_max_age_s:
            return None
        return replace(kept, kind="last-known")

    # -- the interface ------------------------------------------------------------------------

    def current(self, region: str) -> IntensityReading:
        """The first answer along the chain; raises only if no step can answer for ``region``."""
        passed_over: list[tuple[str, BaseException]] = []
        answer: IntensityReading | None = None
        for step in self._steps:
            if step.provider is None:
                answer = self._from_last_known(region, self.clock())
                if answer is not None:
                    break
                continue
            provider = step.provider
            try:
                answer = self._cached(step, ("current", step.name, region), lambda: provider.current(region))
                self._check_signal(answer)
                break
            except UnknownRegion:
                continue  # a configuration gap, not an outage: not counted as a fallback
            except Exception as exc:  # a malformed answer is as much an outage as a refused connection
                passed_over.append((step.name, exc))
        for name, exc in passed_over:
            self._fallbacks.inc(provider=name, region=region)
            self._log.warning(
                (name, region),
                f"intensity provider {name} failed for {region}, falling back along {self.chain}: "
                f"{type(exc).__name__}: {exc}",
            )
        if answer is None:
            if not passed_over:
                raise UnknownRegion(f"no intensity provider in {self.chain} knows region {region!r}")
            raise ProviderUnavailable(
                f"every intensity provider in {self.chain} failed for {region}: {passed_over[-1][1]}"
            ) from passed_over[-1][1]
        if answer.kind not in ("static", "last-known"):
            with self._lock:
                self._last_known[region] = answer
        self._served.set(answer.intensity_g_per_kwh, region=region)
        return self._judged(answer, self.clock())

    def _check_signal(self, reading: IntensityReading) -> None:
        """Never an index as g/kWh, never a marginal signal beside average ones (or the reverse)."""
        kind = signal_type(reading.signal)
        if kind == "index":
            raise ProviderUnavailable(f"{reading.source} serves {reading.signal!r}, an index, not g/kWh")
        if self.signal is not None and kind not in ("unknown", self.signal):
            raise ProviderUnavailable(
                f"{reading.source} serves a {kind} signal ({reading.signal!r}); this chain serves {self.signal} intensity"
            )

    async def acurrent(self, region: str) -> IntensityReading:
        """``current`` off the event loop: the HTTP clients are synchronous."""
        return await asyncio.to_thread(self.current, region)

    def _series(
        self, what: str, region: str, call: Callable[[CarbonIntensityProvider], list[IntensityReading]], args: tuple
    ) -> list[IntensityReading]:
        # Forecasts are cached per horizon; history windows rarely repeat (end=now moves), so caching
        # them would only grow memory. Keys stay bounded either way: back-off is per step and region.
        cache = what == "forecast"
        key_args = args if cache else ()
        errors: list[BaseException] = []
        for step in self._steps:
            if step.provider is None:
                continue
            provider = step.provider
            try:
                return self._cached(step, (what, step.name, region, key_args), lambda: call(provider), cache)
            except (UnknownRegion, NotSupported) as exc:
                errors.append(exc)
            except Exception as exc:
                errors.append(exc)
                self._log.warning((what, step.name, region), f"intensity {what} from {step.name} failed for {region}: {exc}")
        outages = [e for e in errors if not isinstance(e, (UnknownRegion, NotSupported))]
        if outages:
            raise ProviderUnavailable(f"no {what} for {region} from {self.chain}: {outages[-1]}") from outages[-1]
        if any(isinstance(e, NotSupported) for e in errors):
            raise NotSupported(f"no provider in {self.chain} offers a {what} for {region}")
        raise UnknownRegion(f"no intensity provider in {self.chain} knows region {region!r}")

    def history(self, region: str, start: datetime, end: datetime) -> list[IntensityReading]:
        return self._series("history", region, lambda p: p.history(region, start, end), (start, end))

    def forecast(self, region: str, hours: float) -> list[IntensityReading]:
        return self._series("forecast", region, lambda p: p.forecast(region, hours), (hours,))
