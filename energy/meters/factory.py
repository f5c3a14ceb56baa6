"""The one place a meter is chosen: by name, or "auto" (first readable of nvml → rapl → cpu-time-model)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any, Callable, Sequence

from energy.coefficients import HardwareProfile, get_profile
from energy.meters.base import WindowedMeter
from energy.meters.cpu_model import CpuTimeModelMeter
from energy.meters.nvml import NvmlMeter
from energy.meters.rapl import DEFAULT_ROOT, RaplMeter
from wattgate.errors import BadRequest, DependencyError, Unavailable

log = logging.getLogger(__name__)

METER_KINDS = ("auto", "nvml", "rapl", "cpu-time-model")


def make_meter(
    kind: str,
    *,
    profile: HardwareProfile | str = "aws-x86",
    vcpus_reserved: float = 1.0,
    memory_gb: float = 0.0,
    device_index: int = 0,
    nvml: Any = None,
    nvml_power: str = "instant",
    nvml_sample_interval_s: float | None = None,
    nvml_counter_interval_s: float = 0.05,
    rapl_root: str | Path = DEFAULT_ROOT,
    rapl_sample_interval_s: float | None = None,
    share: float = 1.0,
    auto_order: Sequence[str] = ("nvml", "rapl", "cpu-time-model"),
    clock: Callable[[], float] | None = None,
    cpu_seconds: Callable[[], float] | None = None,
) -> WindowedMeter:
    """Build a meter. Each keyword goes only to the meters that use it; unknown kinds raise BadRequest."""
    clock_kw = {"clock": clock} if clock is not None else {}
    if kind == "nvml":
        return NvmlMeter(
            device_index, nvml, share=share, power=nvml_power, sample_interval_s=nvml_sample_interval_s,
            counter_interval_s=nvml_counter_interval_s, **clock_kw,
        )
    if kind == "rapl":
        return RaplMeter(rapl_root, share=share, sample_interval_s=rapl_sample_interval_s, **clock_kw)
    if kind == "cpu-time-model":
        prof = get_profile(profile) if isinstance(profile, str) else profile
        extra = {"cpu_seconds": cpu_seconds} if cpu_seconds is not None else {}
        return CpuTimeModelMeter(prof, vcpus_reserved=vcpus_reserved, memory_gb=memory_gb, **clock_kw, **extra)
    if kind == "auto":
        kwargs = dict(
            profile=profile, vcpus_reserved=vcpus_reserved, memory_gb=memory_gb, device_index=device_index,
            nvml=nvml, nvml_power=nvml_power, nvml_sample_interval_s=nvml_sample_interval_s,
            nvml_counter_interval_s=nvml_counter_interval_s, rapl_root=rapl_root, rapl_sample_interval_s=rapl_sample_interval_s,
            share=share, clock=clock, cpu_seconds=cpu_seconds,
        )
        reasons = []
        for candidate in auto_order:
            if candidate == "auto" or candidate not in METER_KINDS:
                raise BadRequest(f"auto_order may name only {METER_KINDS[1:]}, got {candidate!r}")
            try:
                meter = make_meter(candidate, **kwargs)
            except (Unavailable, DependencyError) as exc:
                reasons.append(f"{candidate}: {exc}")
                continue
            log.info("energy meter: %s (skipped: %s)", candidate, "; ".join(reasons) or "none")
            return meter
        raise Unavailable("no energy meter is readable here: " + "; ".join(reasons))
    raise BadRequest(f"unknown energy meter {kind!r}; known: {METER_KINDS}")


def meter_from_settings(settings: Any, **overrides: Any) -> WindowedMeter:
    """Build the meter an :class:`energy.settings.EnergySettings` asks for (overrides win, e.g. a fake clock)."""
    kwargs: dict[str, Any] = dict(
        profile=settings.hardware_profile,
        vcpus_reserved=settings.vcpus_reserved,
        memory_gb=settings.memory_gb_reserved,
        device_index=settings.gpu_device_index,
        nvml_power=settings.nvml_power,
        nvml_sample_interval_s=settings.nvml_sample_interval_s,
        nvml_counter_interval_s=settings.nvml_counter_interval_s,
        rapl_root=settings.rapl_root,
        rapl_sample_interval_s=settings.rapl_sample_interval_s,
        share=settings.device_share,
        auto_order=settings.auto_order,
    )
    kwargs.update(overrides)
    return make_meter(settings.meter, **kwargs)
