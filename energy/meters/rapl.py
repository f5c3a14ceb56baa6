"""RAPL meter: measured CPU package and DRAM energy from the Linux powercap sysfs tree.

Layout read (``root`` defaults to ``/sys/class/powercap``)::

    intel-rapl:0/name                  "package-0"
    intel-rapl:0/energy_uj             cumulative µJ, wraps at max_energy_range_uj
    intel-rapl:0/max_energy_range_uj
    intel-rapl:0/intel-rapl:0:2/name   "dram" (core/uncore subzones are inside the package: skipped)

Only package and dram zones are summed: core and uncore are part of the package, and psys
overlaps everything. The counters are host-wide, so ``share`` scales them down to the fraction
of the host this replica should answer for (e.g. its vCPUs / the host's). A 32-bit-ish counter at
200 W wraps within a minute, so a reader that may sit idle longer needs ``sample_interval_s``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from energy.meters.base import EnergyReading, IdleBaseline, WindowedMeter
from wattgate.errors import DependencyError, Unavailable

DEFAULT_ROOT = "/sys/class/powercap"


@dataclass
class _Zone:
    path: Path
    kind: str  # "package" | "dram"
    max_range_uj: int
    last_raw_uj: int
    total_uj: int = 0


def _read_int(path: Path) -> int:
    return int(path.read_text().strip())


def discover_zones(root: str | Path) -> tuple[list[_Zone], list[str]]:
    """Readable package/dram zones under ``root``, and why the others were skipped."""
    root = Path(root)
    candidates = sorted(set(root.glob("intel-rapl:*")) | set(root.glob("intel-rapl:*/intel-rapl:*")))
    seen: set[Path] = set()
    zones: list[_Zone] = []
    skipped: list[str] = []
    for zone_dir in candidates:
        real = zone_dir.resolve()
        if real in seen or not zone_dir.is_dir():
            continue
        seen.add(real)
        try:
            name = (zone_dir / "name").read_text().strip()
        except OSError as exc:
            skipped.append(f"{zone_dir}: no name ({exc.__class__.__name__})")
            continue
        kind = "package" if name.startswith("package") else "dram" if name == "dram" else None
        if kind is None:
            continue
        try:
            raw = _read_int(zone_dir / "energy_uj")
            max_range = _read_int(zone_dir / "max_energy_range_uj")
        except (OSError, ValueError) as exc:
            # energy_uj is root-only on most kernels since CVE-2020-8694.
            skipped.append(f"{zone_dir}: unreadable ({exc.__class__.__name__})")
            continue
        zones.append(_Zone(zone_dir, kind, max_range, raw))
    return zones, skipped


class RaplMeter(WindowedMeter):
    method = "rapl"
    measured = True

    def __init__(
        self,
        root: str | Path = DEFAULT_ROOT,
        *,
        share: float = 1.0,
        sample_interval_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__()
        self.idle = IdleBaseline()
        if not 0 < share <= 1:
            raise ValueError("share must lie in (0, 1]")
        self.root = Path(root)
        self.share = float(share)
        self._clock = clock
        self._zones, self.skipped = discover_zones(self.root)
        if not any(z.kind == "package" for z in self._zones):
            detail = "; ".join(self.skipped) or "no intel-rapl package zone"
            raise Unavailable(f"RAPL is not readable under {self.root}: {detail}")
        self._stop = threading.Event()
        self._sampler: threading.Thread | None = None
        if sample_interval_s:
            self._sampler = threading.Thread(
                target=self._sample_loop, args=(float(sample_interval_s),), name="rapl-sampler", daemon=True
            )
            self._sampler.start()

    def _sample_loop(self, interval_s: float) -> None:
        # Reading often enough is the only way to see every wrap; the value itself is discarded.
        while not self._stop.wait(interval_s):
            try:
                self.read()
            except DependencyError:
                pass

    def _read(self) -> EnergyReading:
        totals = {"package": 0, "dram": 0}
        for zone in self._zones:
            try:
                raw = _read_int(zone.path / "energy_uj")
            except (OSError, ValueError) as exc:
                raise DependencyError(f"RAPL zone {zone.path} stopped being readable: {exc}") from exc
            delta = raw - zone.last_raw_uj
            if delta < 0:
                delta += zone.max_range_uj
            zone.total_uj += delta
            zone.last_raw_uj = raw
            totals[zone.kind] += zone.total_uj
        components = {k: v * 1e-6 * self.share for k, v in totals.items() if any(z.kind == k for z in self._zones)}
        energy_j, now = sum(components.values()), self._clock()
        # Idle power: the lowest average power over half-second spans in the last few minutes.
        self.idle.observe_energy(energy_j, now)
        return EnergyReading(
            energy_j=energy_j,
            timestamp_s=now,
            method=self.method,
            measured=True,
            components=components,
            static_j=min(self.idle.accrue(now), energy_j),
        )

    def close(self) -> None:
        self._stop.set()
        if self._sampler is not None:
            self._sampler.join(timeout=1.0)
