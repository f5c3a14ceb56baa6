"""Fixtures for the routing tests: a hand-built three-region topology and small scenario files."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
import yaml

from routing.topology import Topology

GRID = Path(__file__).resolve().parents[3] / "shared" / "data" / "grid"


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: slower tests that start real servers")


@pytest.fixture
def topology() -> Topology:
    """fr-x86 (fp32 + int8), de-x86 (fp32 + int8), gb-arm (fp32 only); constant modelled energy."""
    return Topology.from_dict(
        {
            "client_regions": ["FR", "DE", "GB"],
            "pools": [
                {"name": "fr-x86", "region": "FR", "hardware": "x86", "pue": 1.2, "capacity_rps": 400,
                 "service_ms": 8, "rtt_ms": {"FR": 2, "DE": 12, "GB": 30},
                 "energy": {"fp32": 0.06, "int8": 0.015}},
                {"name": "de-x86", "region": "DE", "hardware": "x86", "pue": 1.2, "capacity_rps": 400,
                 "service_ms": 8, "rtt_ms": {"FR": 12, "DE": 2, "GB": 20},
                 "energy": {"fp32": 0.06, "int8": 0.015}},
                {"name": "gb-arm", "region": "GB", "hardware": "arm", "pue": 1.1, "capacity_rps": 300,
                 "service_ms": 10, "rtt_ms": {"FR": 30, "DE": 20, "GB": 2},
                 "energy": {"fp32": 0.04}},
            ],
        }
    )


def write_trace(path: Path, start: datetime, step_min: int, values: list[float]) -> Path:
    lines = ["datetime_utc,carbon_intensity_g_per_kwh"]
    for i, v in enumerate(values):
        lines.append(f"{(start + timedelta(minutes=i * step_min)).strftime('%Y-%m-%dT%H:%M:%SZ')},{v}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def small_scenario(tmp_path):
    """small_scenario(**overrides) -> path of a 12-hour, two-region scenario on synthetic traces.

    FR is clean but small; DE is dirtier and large; at the diurnal peak FR cannot take everything.
    Simulated event-level by default (one replica per pool, exponential service of ``service_ms``);
    pass ``simulation="fluid"`` for the fluid model.
    """
    start = datetime(2020, 3, 2, tzinfo=timezone.utc)
    hours = 14
    fr = [40 + 20 * ((i // 4) % 3) for i in range(hours * 2)]
    de = [300 - 10 * (i % 7) for i in range(hours * 2)]
    write_trace(tmp_path / "FR.csv", start, 30, fr)
    write_trace(tmp_path / "DE.csv", start, 30, de)

    def make(**overrides) -> Path:
        data = {
            "name": "small",
            "start": start.isoformat(),
            "duration_h": 12,
            "step_min": 30,
            "slices_per_client": 10,
            "slo_p99_ms": 60,
            "traces": {"FR": "FR.csv", "DE": "DE.csv"},
            "workload": {"mean_rps": 3000, "diurnal_amplitude": 0.4, "peak_hour_utc": 6, "noise": 0.1, "seed": 7},
            "clients": [
                {"region": "FR", "share": 0.5, "rtt_ms": {"FR": 2, "DE": 12}},
                {"region": "DE", "share": 0.5, "rtt_ms": {"FR": 12, "DE": 2}},
            ],
            "pools": [
                {"name": "fr-x86", "region": "FR", "hardware": "x86", "capacity_rps": 2500, "service_ms": 8,
                 "pue": 1.2, "energy_j_per_request": {"idle_w": 10.0, "dynamic_j": 0.015}},
                {"name": "de-x86", "region": "DE", "hardware": "x86", "capacity_rps": 5000, "service_ms": 8,
                 "pue": 1.2, "energy_j_per_request": {"idle_w": 20.0, "dynamic_j": 0.015}},
            ],
            "policies": ["round-robin", "lowest-carbon", "latency-first",
                         {"name": "weighted", "params": {"weights": {"carbon": 1, "latency": 1}}}],
            # Event simulator: short windows, every other step, so a run is ~10k requests (fast tests).
            "events": {"window_s": 0.4, "warmup_s": 0.2, "sample_every": 2},
        }
        data.update(overrides)
        path = tmp_path / f"scenario-{len(list(tmp_path.glob('scenario-*.yaml')))}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return make
