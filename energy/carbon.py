"""Software Carbon Intensity per request (ISO/IEC 21031:2024): SCI = (O + M) per request.

    O = E (kWh) × I (gCO2eq/kWh of the region, at the time it ran) × PUE
    M = TE (embodied gCO2eq of the units reserved) × TR (time reserved) / EL (expected lifetime)

Intensity comes from a routing ``CarbonIntensityProvider``; this module only takes the number.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from energy.coefficients import HardwareProfile

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class CarbonBreakdown:
    energy_j: float
    energy_kwh: float
    intensity_g_per_kwh: float
    pue: float
    operational_g: float
    embodied_g: float
    carbon_g: float
    intensity_source: str
    reserved_s: float
    hardware: str  # the hardware profile name the embodied part used


def _check(name: str, value: float, minimum: float = 0.0) -> float:
    value = float(value)
    if not math.isfinite(value) or value < minimum:
        raise ValueError(f"{name} must be a finite number >= {minimum}, got {value}")
    return value


def operational_g(energy_j: float, intensity_g_per_kwh: float, pue: float) -> float:
    return energy_j / J_PER_KWH * intensity_g_per_kwh * pue


def embodied_g(reserved_s: float, profile: HardwareProfile, units_reserved: float = 1.0) -> float:
    """The profile's embodied carbon for ``units_reserved`` units, amortised over ``reserved_s``."""
    return profile.embodied_g_per_unit * units_reserved * reserved_s / profile.lifetime_s


def sci_for_request(
    energy_j: float,
    intensity_g_per_kwh: float,
    pue: float,
    reserved_s: float,
    hardware_profile: HardwareProfile,
    *,
    units_reserved: float = 1.0,
    intensity_source: str = "unspecified",
) -> CarbonBreakdown:
    """One request's carbon. ``reserved_s`` is its share of the replica's time (RequestEnergy.reserved_s);
    ``units_reserved`` is how many profile units the replica holds (0.5 vCPU, 1 GPU, ...)."""
    energy_j = _check("energy_j", energy_j)
    intensity = _check("intensity_g_per_kwh", intensity_g_per_kwh)
    pue = _check("pue", pue, 1.0)
    reserved_s = _check("reserved_s", reserved_s)
    units_reserved = _check("units_reserved", units_reserved)
    o = operational_g(energy_j, intensity, pue)
    m = embodied_g(reserved_s, hardware_profile, units_reserved)
    return CarbonBreakdown(
        energy_j=energy_j,
        energy_kwh=energy_j / J_PER_KWH,
        intensity_g_per_kwh=intensity,
        pue=pue,
        operational_g=o,
        embodied_g=m,
        carbon_g=o + m,
        intensity_source=intensity_source,
        reserved_s=reserved_s,
        hardware=hardware_profile.name,
    )
