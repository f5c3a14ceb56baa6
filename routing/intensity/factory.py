"""Builds the configured intensity chain from ``IntensitySettings``; unknown names fail loudly."""

from __future__ import annotations

from datetime import datetime
from typing import Callable

from wattgate.errors import BadRequest
from wattgate.metrics import MetricsRegistry

from .base import CarbonIntensityProvider, utcnow
from .carbon_aware_sdk import CarbonAwareSdkProvider
from .electricitymaps import ElectricityMapsProvider
from .replay import ReplayClock, ReplayProvider
from .resilient import LAST_KNOWN, ResilientProvider
from .settings import IntensitySettings
from .static import StaticProvider
from .traces import load_trace
from .ukci import UKCarbonIntensityProvider
from .watttime import WattTimeProvider

__all__ = ["make_provider", "make_replay_clock", "make_single_provider"]

Clock = Callable[[], datetime]


def _secret(value) -> str | None:
    return value.get_secret_value() if value is not None else None


def _electricitymaps(s: IntensitySettings, clock: Clock) -> CarbonIntensityProvider:
    c = s.electricitymaps
    return ElectricityMapsProvider(
        c.zones, _secret(c.api_key), base_url=c.base_url, emission_factor_type=c.emission_factor_type,
        timeout_s=c.timeout_s, max_retry_wait_s=c.max_retry_wait_s, clock=clock,
    )


def _watttime(s: IntensitySettings, clock: Clock) -> CarbonIntensityProvider:
    c = s.watttime
    if not (c.username and c.password):
        raise BadRequest("watttime needs watttime.username and watttime.password")
    return WattTimeProvider(
        c.zones, c.username, c.password.get_secret_value(), base_url=c.base_url,
        current_endpoint=c.current_endpoint, token_ttl_s=c.token_ttl_s, timeout_s=c.timeout_s,
        max_retry_wait_s=c.max_retry_wait_s, clock=clock,
    )


def _ukci(s: IntensitySettings, clock: Clock) -> CarbonIntensityProvider:
    c = s.ukci
    return UKCarbonIntensityProvider(
        c.zones, base_url=c.base_url, timeout_s=c.timeout_s, max_retry_wait_s=c.max_retry_wait_s, clock=clock
    )


def _carbon_aware_sdk(s: IntensitySettings, clock: Clock) -> CarbonAwareSdkProvider:
    c = s.carbon_aware_sdk
    return CarbonAwareSdkProvider(
        c.zones, base_url=c.base_url, signal=c.signal, lookback_s=c.lookback_s, timeout_s=c.timeout_s,
        max_retry_wait_s=c.max_retry_wait_s, clock=clock,
    )


def _replay(s: IntensitySettings, clock: Clock) -> CarbonIntensityProvider:
    traces = {region: load_trace(path, region=region) for region, path in s.replay.files.items()}
    return ReplayProvider(traces, clock, signal=s.replay.signal)


def _static(s: IntensitySettings, clock: Clock) -> CarbonIntensityProvider:
    return StaticProvider(s.static.table, signal=s.static.signal, clock=clock)


_BUILDERS: dict[str, Callable[[IntensitySettings, Clock], CarbonIntensityProvider]] = {
    "electricitymaps": _electricitymaps,
    "watttime": _watttime,
    "ukci": _ukci,
    "carbon-aware-sdk": _carbon_aware_sdk,
    "replay": _replay,
    "static": _static,
}


def make_replay_clock(settings: IntensitySettings) -> ReplayClock:
    """The replay clock the settings ask for: at ``replay.start`` (default: earliest trace start), running at ``replay.speed``."""
    start = settings.replay.start
    if start is None:
        if not settings.replay.files:
            raise BadRequest("replay.start is unset and replay.files is empty: nothing to start the clock at")
        start = min(load_trace(p).start for p in settings.replay.files.values())
    return ReplayClock(start, settings.replay.speed)


def make_single_provider(name: str, settings: IntensitySettings, clock: Clock = utcnow) -> CarbonIntensityProvider:
    """One raw provider by name, without caching or fallback."""
    try:
        builder = _BUILDERS[name]
    except KeyError:
        raise BadRequest(f"unknown intensity provider {name!r}; choose from {sorted(_BUILDERS)}") from None
    return builder(settings, clock)


def make_provider(
    settings: IntensitySettings,
    *,
    metrics: MetricsRegistry | None = None,
    replay_clock: ReplayClock | None = None,
) -> ResilientProvider:
    """The configured chain (``provider`` then ``fallback``) wrapped with caching, stale flags and fallback.

    With ``provider="replay"`` every step (static, staleness) runs on the replay clock, reachable
    afterwards as ``provider.clock`` to set or speed up the replay at run time.
    """
    for name in settings.chain:
        if name != LAST_KNOWN and name not in _BUILDERS:
            raise BadRequest(f"unknown intensity provider {name!r}; choose from {sorted(_BUILDERS)}")
    clock: Clock = utcnow
    own_clock: ReplayClock | None = None
    if settings.provider == "replay":
        if replay_clock is None:
            # Placeholder start; set below once the traces are loaded (we need their start anyway).
            replay_clock = own_clock = ReplayClock(settings.replay.start or utcnow(), settings.replay.speed)
        clock = replay_clock
    chain: list = []
    ttl_s: dict[str, float] = {}
    for name in settings.chain:
        if name == LAST_KNOWN:
            chain.append(LAST_KNOWN)
            continue
        chain.append((name, make_single_provider(name, settings, clock)))
        sub = getattr(settings, name.replace("-", "_"), None)
        if getattr(sub, "ttl_s", None) is not None:
            ttl_s[name] = sub.ttl_s
    if own_clock is not None:
        # Loading traces takes a moment; a running replay should begin at its start time now.
        own_clock.set(settings.replay.start or min(t.start for t in chain[0][1].traces.values()))
    return ResilientProvider(
        chain,
        ttl_s=ttl_s,
        max_age_s=settings.max_age_s,
        last_known_max_age_s=settings.last_known_max_age_s,
        failure_backoff_s=settings.failure_backoff_s,
        metrics=metrics,
        clock=clock,
        log_interval_s=settings.log_interval_s,
        signal=settings.signal_type,
    )
