"""Typed settings for the grid-intensity providers; composed into the global wattgate settings."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator

from .static import DEFAULT_INTENSITY_G_PER_KWH

__all__ = [
    "PROVIDER_NAMES",
    "CarbonAwareSdkSettings",
    "ElectricityMapsSettings",
    "IntensitySettings",
    "ReplaySettings",
    "StaticSettings",
    "UKCISettings",
    "WattTimeSettings",
]

ProviderName = Literal["electricitymaps", "watttime", "ukci", "carbon-aware-sdk", "replay", "static"]
PROVIDER_NAMES: tuple[str, ...] = ProviderName.__args__  # type: ignore[attr-defined]
LAST_KNOWN = "last-known"


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class _HttpSettings(_Strict):
    base_url: str
    zones: dict[str, str] = Field(default_factory=dict, description="wattgate region -> provider zone/region id")
    ttl_s: float | None = Field(None, ge=0, description="cache lifetime; None = the provider's update period")
    timeout_s: float = Field(5.0, gt=0)
    max_retry_wait_s: float = Field(
        2.0, ge=0, description="longest HTTP 429 Retry-After we wait out in-line; longer ones pause the source"
    )

    @field_validator("base_url")
    @classmethod
    def _http_url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError(f"base_url must start with http:// or https://, not {value!r}")
        return value.rstrip("/")


class ElectricityMapsSettings(_HttpSettings):
    base_url: str = "https://api.electricitymap.org"
    zones: dict[str, str] = Field(default_factory=lambda: {"DE": "DE", "FR": "FR", "GB": "GB"})
    api_key: SecretStr | None = None
    emission_factor_type: Literal["lifecycle", "direct"] = "lifecycle"


class WattTimeSettings(_HttpSettings):
    base_url: str = "https://api.watttime.org"
    username: str | None = None
    password: SecretStr | None = None
    current_endpoint: Literal["forecast", "signal-index"] = Field(
        "forecast", description="'signal-index' (free tier) yields a 0-100 percentile, not g/kWh"
    )
    token_ttl_s: float = Field(1800.0, gt=60)


class UKCISettings(_HttpSettings):
    base_url: str = "https://api.carbonintensity.org.uk"
    zones: dict[str, str] = Field(default_factory=lambda: {"GB": "national"})


class CarbonAwareSdkSettings(_HttpSettings):
    base_url: str = "http://127.0.0.1:8080"
    signal: str = Field("unspecified", description="what the SDK's data source reports, e.g. 'moer' or 'average-lca'")
    lookback_s: float = Field(3600.0, gt=0)


class ReplaySettings(_Strict):
    files: dict[str, Path] = Field(default_factory=dict, description="wattgate region -> trace CSV")
    start: datetime | None = Field(None, description="replay time at start-up; None = the earliest trace start")
    speed: float = Field(1.0, ge=0, description="replayed seconds per wall second; 0 holds the clock at start")
    signal: str = "average"
    ttl_s: float | None = Field(None, ge=0)

    @field_validator("start")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=timezone.utc)
        return value


class StaticSettings(_Strict):
    table: dict[str, float] = Field(
        default_factory=lambda: dict(DEFAULT_INTENSITY_G_PER_KWH),
        description="wattgate region -> g/kWh (defaults: Ember 2023 country averages)",
    )
    signal: str = "average-lca"

    @field_validator("table")
    @classmethod
    def _non_negative(cls, table: dict[str, float]) -> dict[str, float]:
        bad = {k: v for k, v in table.items() if not v >= 0}
        if bad:
            raise ValueError(f"static intensities must be >= 0 g/kWh: {bad}")
        return table


class IntensitySettings(_Strict):
    """Which source is live, what backs it up, and how fresh readings must be."""

    provider: ProviderName = "static"
    fallback: list[str] | None = Field(
        None,
        description="steps tried after `provider`, in order: provider names or 'last-known'; "
        "None = ['last-known', 'static'] (none when the provider is 'static')",
    )
    max_age_s: float = Field(3600.0, gt=0, description="readings older than this are flagged stale")
    signal_type: Literal["average", "marginal"] = Field(
        "average",
        description="the one kind of signal the chain may serve: average or marginal intensity (g/kWh); a step "
        "whose readings are of another kind, or an index, is passed over",
    )
    last_known_max_age_s: float | None = Field(86400.0, gt=0, description="older last-known readings are not used")
    failure_backoff_s: float = Field(30.0, ge=0, description="how long a failed provider is skipped")
    log_interval_s: float = Field(60.0, ge=0, description="at most one fallback warning per provider/region per interval")
    electricitymaps: ElectricityMapsSettings = Field(default_factory=ElectricityMapsSettings)
    watttime: WattTimeSettings = Field(default_factory=WattTimeSettings)
    ukci: UKCISettings = Field(default_factory=UKCISettings)
    carbon_aware_sdk: CarbonAwareSdkSettings = Field(default_factory=CarbonAwareSdkSettings)
    replay: ReplaySettings = Field(default_factory=ReplaySettings)
    static: StaticSettings = Field(default_factory=StaticSettings)

    @property
    def chain(self) -> list[str]:
        if self.fallback is not None:
            return [self.provider, *self.fallback]
        if self.provider == "static":
            return ["static"]  # a table never fails; nothing to fall back to
        return [self.provider, LAST_KNOWN, "static"]

    @model_validator(mode="after")
    def _check_chain(self) -> "IntensitySettings":
        allowed = set(PROVIDER_NAMES) | {LAST_KNOWN}
        unknown = [name for name in self.fallback or () if name not in allowed]
        if unknown:
            raise ValueError(f"unknown fallback step(s) {unknown}; choose from {sorted(allowed)}")
        if len(set(self.chain)) != len(self.chain):
            raise ValueError(f"intensity chain {self.chain} names a step twice")
        if "watttime" in self.chain and not (self.watttime.username and self.watttime.password):
            raise ValueError("watttime is in the intensity chain but watttime.username/password are not set")
        if "replay" in self.chain and not self.replay.files:
            raise ValueError("replay is in the intensity chain but replay.files is empty")
        return self
