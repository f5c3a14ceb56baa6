"""Energy meters: NVML (GPU), RAPL (CPU package + DRAM) and the CPU-time model, behind one interface."""

from energy.meters.base import EnergyMeasurement, EnergyMeter, EnergyReading, WindowedMeter
from energy.meters.cpu_model import CpuTimeModelMeter
from energy.meters.factory import METER_KINDS, make_meter, meter_from_settings
from energy.meters.nvml import NvmlMeter
from energy.meters.rapl import RaplMeter

__all__ = [
    "METER_KINDS",
    "CpuTimeModelMeter",
    "EnergyMeasurement",
    "EnergyMeter",
    "EnergyReading",
    "NvmlMeter",
    "RaplMeter",
    "WindowedMeter",
    "make_meter",
    "meter_from_settings",
]
