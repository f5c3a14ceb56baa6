"""Meter factory and settings: names, "auto" fallbacks, unknown names fail loudly."""

from __future__ import annotations

import pytest
from energy_fakes import FakeClock, FakeGpu, build_rapl_tree, fake_nvml
from pydantic import ValidationError

from energy.meters import CpuTimeModelMeter, NvmlMeter, RaplMeter, make_meter, meter_from_settings
from energy.meters.base import EnergyMeter
from energy.settings import EnergySettings
from wattgate.errors import BadRequest, Unavailable


def test_named_kinds(tmp_path):
    clock = FakeClock()
    build_rapl_tree(tmp_path)
    assert isinstance(make_meter("cpu-time-model", profile="aws-graviton2", clock=clock), CpuTimeModelMeter)
    assert isinstance(make_meter("rapl", rapl_root=tmp_path), RaplMeter)
    nvml = make_meter("nvml", nvml=fake_nvml(FakeGpu(clock)), clock=clock)
    assert isinstance(nvml, NvmlMeter) and isinstance(nvml, EnergyMeter)
    with pytest.raises(BadRequest, match="unknown energy meter"):
        make_meter("wattmeter")
    with pytest.raises(Unavailable):
        make_meter("rapl", rapl_root=tmp_path / "none")


def test_auto_prefers_nvml_then_rapl_then_cpu_model(tmp_path):
    clock = FakeClock()
    build_rapl_tree(tmp_path / "rapl")
    good, broken = fake_nvml(FakeGpu(clock)), fake_nvml(FakeGpu(clock), init_fails=True)
    assert make_meter("auto", nvml=good, rapl_root=tmp_path / "rapl", clock=clock).method == "nvml"
    assert make_meter("auto", nvml=broken, rapl_root=tmp_path / "rapl", clock=clock).method == "rapl"
    assert make_meter("auto", nvml=broken, rapl_root=tmp_path / "none", clock=clock).method == "cpu-time-model"
    # a CPU replica on a GPU host: leave nvml out of the order
    only_cpu = make_meter("auto", nvml=good, auto_order=("rapl", "cpu-time-model"), rapl_root=tmp_path / "none")
    assert only_cpu.method == "cpu-time-model"
    with pytest.raises(Unavailable, match="no energy meter"):
        make_meter("auto", nvml=broken, auto_order=("nvml",))
    with pytest.raises(BadRequest):
        make_meter("auto", auto_order=("gpu-magic",))


def test_settings_validate_and_build_a_meter(tmp_path):
    s = EnergySettings(meter="cpu-time-model", hardware_profile="aws-graviton2", vcpus_reserved=0.5)
    meter = meter_from_settings(s, clock=FakeClock())
    assert isinstance(meter, CpuTimeModelMeter) and meter.vcpus_reserved == 0.5 and meter.profile.name == "aws-graviton2"
    assert EnergySettings().ledger_path.as_posix() == "ledger.sqlite"
    for bad in ({"meter": "wattmeter"}, {"hardware_profile": "pentium"}, {"vcpus_reserved": 0}, {"pue": 0.5},
                {"device_share": 1.5}, {"auto_order": ()}, {"unknown_field": 1}):
        with pytest.raises(ValidationError):
            EnergySettings(**bad)
