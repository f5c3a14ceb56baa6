"""The grid-intensity reading and the one interface every intensity provider implements.

Errors a provider raises (all under ``wattgate.errors``)::

    ProviderUnavailable (502)   outage, timeout, 5xx, 429 back-off, rejected credentials
    └── AuthRejected            401/403 from the source (WattTime renews its token on this)
    NotSupported (501)          the source has no history/forecast endpoint
    UnknownRegion (404)         the wattgate region is not in this provider's zone map
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Literal, Mapping, Protocol, runtime_checkable

from wattgate.errors import NotFound, ProviderUnavailable, WattgateError

__all__ = [
    "AuthRejected",
    "CarbonIntensityProvider",
    "IntensityReading",
    "LB_PER_MWH_TO_G_PER_KWH",
    "NotSupported",
    "ReadingKind",
    "SignalType",
    "signal_type",
    "UnknownRegion",
    "utcnow",
    "zone_for",
]

ReadingKind = Literal["live", "forecast", "history", "replay", "static", "last-known"]

SignalType = Literal["average", "marginal", "index", "unknown"]

# 1 lb = 453.592 g and 1 MWh = 1000 kWh, so 1 lb/MWh = 0.453592 g/kWh (WattTime reports lbs/MWh).
LB_PER_MWH_TO_G_PER_KWH = 0.453592


class NotSupported(WattgateError):
    """The source has no such endpoint (e.g. no forecast); callers try the next provider."""

    status_code = 501


class UnknownRegion(NotFound):
    """A wattgate region that this provider has no zone for: a configuration gap, not an outage."""


class AuthRejected(ProviderUnavailable):
    """The source answered 401/403: missing, wrong or expired credentials."""


def signal_type(signal: str) -> SignalType:
    """What kind of number a reading's ``signal`` is: average or marginal g/kWh, or an index (a
    percentile such as WattTime's signal-index, never to be used as g/kWh)."""
    s = signal.lower()
    if "percentile" in s or "index" in s:
        return "index"
    if s.startswith("moer") or s.startswith("marginal"):
        return "marginal"
    if s.startswith("average"):
        return "average"
    return "unknown"


def utcnow() -> datetime:
    return datetime.now(timezone.utc)


@dataclass(frozen=True)
class IntensityReading:
    """One grid carbon-intensity value and how it was obtained.

    ``timestamp`` is when the grid value applies (UTC); ``fetched_at`` is when we obtained it, on
    the provider's clock (wall time, or the replay clock for replayed traces). ``signal`` says what
    the number is: ``average-lca`` / ``average-direct`` (average intensity, life-cycle or
    combustion-only factors), ``moer`` (marginal, WattTime) or ``moer-percentile`` (WattTime's
    signal-index: a 0-100 percentile, *not* g/kWh despite the field name, so never compare it with
    g/kWh values). ``estimated`` is None where the source does not say.
    """

    region: str
    intensity_g_per_kwh: float
    timestamp: datetime
    fetched_at: datetime
    source: str
    kind: ReadingKind
    signal: str
    stale: bool = False
    estimated: bool | None = None

    def __post_init__(self) -> None:
        for name in ("timestamp", "fetched_at"):
            value = getattr(self, name)
            if value.tzinfo is None:
                raise ValueError(f"IntensityReading.{name} must be timezone-aware, got {value!r}")
            object.__setattr__(self, name, value.astimezone(timezone.utc))
        object.__setattr__(self, "intensity_g_per_kwh", float(self.intensity_g_per_kwh))

    def age_s(self, now: datetime) -> float:
        """Seconds between the grid value's timestamp and ``now`` (negative for future points)."""
        return (now - self.timestamp).total_seconds()


@runtime_checkable
class CarbonIntensityProvider(Protocol):
    """A source of grid carbon intensity for wattgate regions ("DE", "FR", "GB", "eu-west", ...)."""

    def current(self, region: str) -> IntensityReading:
        """The latest value for ``region``; raises ProviderUnavailable on outage."""
        ...

    def history(self, region: str, start: datetime, end: datetime) -> list[IntensityReading]:
        """Values with ``start <= timestamp <= end``, oldest first; NotSupported where the source has none."""
        ...

    def forecast(self, region: str, hours: float) -> list[IntensityReading]:
        """Values for the next ``hours``, oldest first; NotSupported where the source has none."""
        ...


def zone_for(provider: str, zones: Mapping[str, str], region: str) -> str:
    """Map a wattgate region to the provider's zone id, or raise UnknownRegion."""
    try:
        return zones[region]
    except KeyError:
        raise UnknownRegion(f"{provider}: no zone configured for region {region!r} (known: {sorted(zones)})") from None
