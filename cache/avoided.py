"""Energy a cache hit avoided: the model's active energy per inference, never idle power or start-up.

A hit skips the model's own work; it does not switch the replica off, so its idle power is spent
either way. The estimate per model and variant is an exponential moving average of the active
joules per inference (``RequestEnergy.active_j`` / rows) of computed requests; while fewer than
``min_samples`` were metered, the variant's energy profile (``method="profile-active"``) if it has one. What a hit avoided is that estimate × its rows, less the hit's own active energy, and
the running total never exceeds what the same number of inferences cost on average when computed
(so an estimate taken in a costly moment cannot inflate it).
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass


@dataclass(frozen=True)
class EnergyEstimate:
    """Active joules per inference of one model/variant, and how the figure was obtained."""

    energy_j: float
    samples: int
    method: str  # "metered-active-ema" | "profile-active"


@dataclass
class _Books:
    ema_j: float = 0.0
    samples: int = 0
    miss_active_j: float = 0.0
    miss_rows: float = 0.0
    hit_rows: float = 0.0
    avoided_j: float = 0.0
    profile_j: float | None = None


class AvoidedEnergy:
    def __init__(self, alpha: float = 0.1, min_samples: int = 20) -> None:
        if not 0.0 < alpha <= 1.0 or min_samples < 1:
            raise ValueError("alpha must be in (0, 1] and min_samples >= 1")
        self.alpha = alpha
        self.min_samples = min_samples
        self._lock = threading.Lock()
        self._books: dict[tuple[str, str], _Books] = {}

    def set_profile(self, model: str, variant: str, active_j_per_inference: float) -> None:
        """The variant's profiled active energy per inference, used until enough misses are metered."""
        _check(active_j_per_inference, 1)
        with self._lock:
            self._books.setdefault((model, variant), _Books()).profile_j = float(active_j_per_inference)

    def observe_miss(self, model: str, variant: str, active_j: float, rows: int) -> None:
        _check(active_j, rows)
        per_inference = active_j / rows
        with self._lock:
            b = self._books.setdefault((model, variant), _Books())
            b.ema_j = per_inference if b.samples == 0 else b.ema_j + self.alpha * (per_inference - b.ema_j)
            b.samples += 1
            b.miss_active_j += active_j
            b.miss_rows += rows

    def estimate(self, model: str, variant: str) -> EnergyEstimate | None:
        with self._lock:
            b = self._books.get((model, variant))
            return None if b is None else self._estimate(b)

    def _estimate(self, b: _Books) -> EnergyEstimate | None:
        if b.profile_j is not None and b.samples < self.min_samples:
            return EnergyEstimate(b.profile_j, b.samples, "profile-active")
        if b.samples:  # no profile: the misses metered so far (the cap keeps a few costly ones honest)
            return EnergyEstimate(b.ema_j, b.samples, "metered-active-ema")
        return None

    def on_hit(self, model: str, variant: str, rows: int, hit_active_j: float) -> tuple[float, str] | None:
        """Joules this hit avoided and the method, or None while there is nothing to estimate from."""
        _check(hit_active_j, rows)
        with self._lock:
            b = self._books.get((model, variant))
            est = None if b is None else self._estimate(b)
            if est is None:
                return None
            avoided_j = max(0.0, est.energy_j * rows - hit_active_j)
            b.hit_rows += rows
            if est.method == "metered-active-ema":
                # Never more, in total, than these inferences cost on average when they were computed.
                cap_j = b.miss_active_j / b.miss_rows * b.hit_rows - b.avoided_j
                avoided_j = min(avoided_j, max(0.0, cap_j))
            b.avoided_j += avoided_j
            return avoided_j, est.method


def _check(energy_j: float, rows: int) -> None:
    if not math.isfinite(energy_j) or energy_j < 0 or rows < 1:
        raise ValueError(f"energy must be finite and >= 0 and rows >= 1, got {energy_j!r}, {rows!r}")
