"""Energy a cache hit avoided: a per model/variant moving average of metered joules per computed request."""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class EnergyEstimate:
    """What one computed request of this model/variant recently cost, and how that figure was obtained."""

    energy_j: float
    samples: int
    method: str = "metered-ema"


class RecentEnergy:
    """Exponential moving average of metered J per request; the gateway feeds misses and reads it on hits."""

    def __init__(self, alpha: float = 0.2) -> None:
        if not 0.0 < alpha <= 1.0:
            raise ValueError("alpha must be in (0, 1]")
        self.alpha = alpha
        self._lock = threading.Lock()
        self._means: dict[tuple[str, str], tuple[float, int]] = {}

    def observe(self, model: str, variant: str, energy_j: float) -> None:
        if not math.isfinite(energy_j) or energy_j < 0:
            raise ValueError(f"energy_j must be a finite non-negative number, got {energy_j!r}")
        key = (model, variant)
        with self._lock:
            prev = self._means.get(key)
            if prev is None:
                self._means[key] = (float(energy_j), 1)
            else:
                mean, n = prev
                self._means[key] = (mean + self.alpha * (energy_j - mean), n + 1)

    def estimate(self, model: str, variant: str) -> EnergyEstimate | None:
        """None until the model/variant has been metered at least once."""
        with self._lock:
            entry = self._means.get((model, variant))
        if entry is None:
            return None
        return EnergyEstimate(energy_j=entry[0], samples=entry[1])
