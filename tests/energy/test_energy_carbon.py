"""SCI arithmetic against hand-computed values, and the coefficient table's sanity."""

from __future__ import annotations

import pytest

from energy.carbon import sci_for_request
from energy.coefficients import (
    DEFAULT_PROFILE_FOR_CLASS,
    HARDWARE_CLASSES,
    PROFILES,
    get_profile,
    profiles_for_class,
)
from wattgate.errors import BadRequest

FOUR_YEARS_S = 4 * 365.25 * 86_400  # 126,230,400 s


def test_one_kwh_operational_carbon():
    c = sci_for_request(3.6e6, 400.0, 1.2, 0.0, get_profile("aws-x86"), intensity_source="static")
    assert c.energy_kwh == 1.0
    assert c.operational_g == pytest.approx(480.0)  # 1 kWh × 400 g/kWh × 1.2
    assert c.embodied_g == 0.0
    assert c.carbon_g == pytest.approx(480.0)
    assert (c.intensity_source, c.hardware, c.pue, c.intensity_g_per_kwh) == ("static", "aws-x86", 1.2, 400.0)


def test_small_request_operational_and_embodied_by_hand():
    # 720 J = 0.0002 kWh; × 250 g/kWh × PUE 1.135 = 0.05675 g
    # embodied: 1,000 kg / 96 vCPU = 10,416.67 g per vCPU; × 0.5 vCPU × 3,600 s / 126,230,400 s
    c = sci_for_request(720.0, 250.0, 1.135, 3600.0, get_profile("aws-x86"), units_reserved=0.5)
    assert c.energy_kwh == pytest.approx(0.0002)
    assert c.operational_g == pytest.approx(0.05675)
    assert FOUR_YEARS_S == 126_230_400
    assert c.embodied_g == pytest.approx(18_750_000 / 126_230_400)  # 0.148538 g
    assert c.carbon_g == pytest.approx(0.05675 + 18_750_000 / 126_230_400)


def test_gpu_request_embodied_share():
    # A100 card: 150 kg = 150,000 g; a request holding it for 20 ms: 150,000 × 0.02 / 126,230,400
    c = sci_for_request(5.0, 100.0, 1.1, 0.02, get_profile("nvidia-a100"))
    assert c.embodied_g == pytest.approx(3000 / 126_230_400)
    assert c.operational_g == pytest.approx(5.0 / 3.6e6 * 100.0 * 1.1)


@pytest.mark.parametrize(
    "args",
    [(-1.0, 100.0, 1.1, 0.0), (1.0, -5.0, 1.1, 0.0), (1.0, 100.0, 0.9, 0.0), (1.0, 100.0, 1.1, -1.0), (float("nan"), 1, 1.1, 0)],
)
def test_invalid_inputs_are_refused(args):
    with pytest.raises(ValueError):
        sci_for_request(*args, get_profile("aws-x86"))


def test_profile_table_is_sourced_and_consistent():
    assert {p.hardware_class for p in PROFILES.values()} == set(HARDWARE_CLASSES)
    for p in PROFILES.values():
        assert p.power_source and p.embodied_source, p.name
        assert p.lifetime_s == FOUR_YEARS_S
    x86 = get_profile("aws-x86")
    assert (x86.idle_power_w, x86.max_power_w, x86.dynamic_power_w) == (0.74, 3.5, pytest.approx(2.76))
    assert (get_profile("aws-graviton2").idle_power_w, get_profile("aws-graviton2").max_power_w) == (0.47, 1.69)
    assert [(get_profile(n).idle_power_w, get_profile(n).max_power_w) for n in ("nvidia-t4", "nvidia-a10g", "nvidia-a100")] == [
        (8.0, 71.0), (18.0, 153.0), (46.0, 407.0)
    ]
    assert get_profile("nvidia-h200").idle_power_w == 119.0
    assert get_profile("nvidia-h100").idle_power_w is None  # no source: not invented
    assert get_profile("google-tpu-v4").max_power_w == 192.0
    for cls, name in DEFAULT_PROFILE_FOR_CLASS.items():
        assert get_profile(name) in profiles_for_class(cls)


def test_unknown_profile_or_class_fails_loudly_and_missing_idle_is_refused():
    with pytest.raises(BadRequest, match="known"):
        get_profile("pentium-4")
    with pytest.raises(BadRequest):
        profiles_for_class("quantum")
    with pytest.raises(BadRequest):
        get_profile("google-tpu-v4").dynamic_power_w
