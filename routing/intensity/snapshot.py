"""The latest grid-intensity reading per region, refreshed off the request path.

Routing decisions and per-request carbon read this snapshot, never the provider, so a slow or dead
provider never sits on the request path; ``generation`` bumps when any region's value changes, so
cached routing decisions expire with it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Sequence

from routing.intensity.base import CarbonIntensityProvider, IntensityReading

log = logging.getLogger("wattgate.intensity")


@dataclass(frozen=True)
class IntensityView:
    """A region's intensity as routing and carbon accounting see it. ``g_per_kwh`` is None when no
    step of the provider chain has a reading: carbon there is unknown, never 0."""

    g_per_kwh: float | None
    source: str  # "provider/kind", or "none"
    signal: str  # e.g. "average-lca", "moer"; "none" without a reading
    stale: bool

    @property
    def known(self) -> bool:
        return self.g_per_kwh is not None


MISSING = IntensityView(None, "none", "none", True)


class IntensitySnapshot:
    def __init__(self, provider: CarbonIntensityProvider, regions: Sequence[str], refresh_s: float = 1.0) -> None:
        self.provider = provider
        self.regions = list(regions)
        self.refresh_s = refresh_s
        self.readings: dict[str, IntensityReading] = {}
        self.generation = 0
        self.refresh()  # first values at start-up (cached/static/replay: fast)
        self._task: asyncio.Task | None = None

    def refresh(self) -> None:
        for region in self.regions:
            self._read(region)

    def _read(self, region: str) -> None:
        try:
            reading = self.provider.current(region)
            old = self.readings.get(region)
            if old is None or old.intensity_g_per_kwh != reading.intensity_g_per_kwh or old.stale != reading.stale:
                self.generation += 1
            self.readings[region] = reading
        except Exception as exc:  # a provider must never break serving; keep the last reading
            log.warning("intensity for %s unavailable: %s", region, exc)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop())

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            for region in self.regions:
                await loop.run_in_executor(None, self._read, region)
            await asyncio.sleep(self.refresh_s)

    def get(self, region: str) -> IntensityView:
        reading = self.readings.get(region)
        if reading is None:
            self._read(region)
            reading = self.readings.get(region)
        if reading is None:
            return MISSING
        return IntensityView(reading.intensity_g_per_kwh, f"{reading.source}/{reading.kind}", reading.signal,
                             bool(reading.stale))
