"""Typed settings of energy metering, attribution, carbon accounting and the ledger."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from energy.coefficients import CCF_PUE, PROFILES

MeterKind = Literal["nvml", "rapl", "cpu-time-model"]


class AnomalySettings(BaseModel):
    """Energy anomaly detection (energy/anomaly.py): when active J per inference rises above its baseline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = True
    # POSTed a JSON event when a series (model, variant, pool) starts or stops being anomalous.
    webhook_url: str | None = None
    webhook_timeout_s: float = Field(default=5.0, gt=0, le=60)
    warmup: int = Field(default=30, ge=5, le=100_000)  # computed requests per baseline before judging
    window: int = Field(default=20, ge=3, le=10_000)  # recent requests judged together
    z_threshold: float = Field(default=4.0, gt=0)
    min_ratio: float = Field(default=1.3, gt=1)


class EnergySettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    # "auto" tries ``auto_order`` and takes the first meter that can be read on this host.
    meter: Literal["auto", "nvml", "rapl", "cpu-time-model"] = "auto"
    auto_order: tuple[MeterKind, ...] = ("nvml", "rapl", "cpu-time-model")
    # Profile for the CPU-time model and for embodied carbon (see energy.coefficients.PROFILES).
    hardware_profile: str = "aws-x86"
    vcpus_reserved: float = Field(default=1.0, gt=0, le=1024)
    memory_gb_reserved: float = Field(default=0.0, ge=0)
    gpu_device_index: int = Field(default=0, ge=0)
    # An autoscaled pool replica books its idle (static) energy in the ledger this often, and when it stops.
    idle_book_interval_s: float = Field(default=60.0, gt=0, le=86400)
    # NVML power source for interpolating between counter updates.
    # "instant" tracked the counter best on the H200 we measured (0.01–0.14% vs 0.19–0.61% over 10 s).
    nvml_power: Literal["average", "instant"] = "instant"
    # Poll NVML off the request path (None: every read calls NVML, ~2.5 ms each on an H200).
    # The energy-counter call burns ~4 ms CPU, so it is polled less often than power.
    nvml_sample_interval_s: float | None = Field(default=0.005, gt=0, le=1)
    nvml_counter_interval_s: float = Field(default=0.05, gt=0, le=1)
    rapl_root: Path = Path("/sys/class/powercap")
    # Read RAPL at least this often so no wrap of its counter goes unseen.
    rapl_sample_interval_s: float | None = Field(default=5.0, gt=0)
    # Fraction of a host-wide (RAPL) or device-wide (NVML) reading this replica answers for.
    device_share: float = Field(default=1.0, gt=0, le=1)
    # Facility overhead; default is CCF's AWS figure.
    pue: float = Field(default=CCF_PUE["aws"], ge=1.0, le=3.0)

    ledger_enabled: bool = True
    # Relative paths are under server.state_dir (default var/): var/ledger.sqlite.
    ledger_path: Path = Path("ledger.sqlite")
    ledger_flush_interval_s: float = Field(default=1.0, gt=0, le=3600)
    ledger_flush_size: int = Field(default=500, ge=1)
    # Beyond this many unwritten records append() drops (and counts) instead of growing memory.
    ledger_max_pending: int = Field(default=100_000, ge=1)

    metrics_window_s: float = Field(default=60.0, gt=0, le=86_400)
    anomaly: AnomalySettings = AnomalySettings()

    @field_validator("hardware_profile")
    @classmethod
    def _known_profile(cls, value: str) -> str:
        if value not in PROFILES:
            raise ValueError(f"unknown hardware profile {value!r}; known: {sorted(PROFILES)}")
        return value

    @field_validator("auto_order")
    @classmethod
    def _non_empty(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if not value:
            raise ValueError("auto_order needs at least one meter kind")
        return value

