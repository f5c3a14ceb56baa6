"""Service-time distributions of a pool (per variant) for the event simulator, drawn vectorised.

``{dist: lognormal, mean_ms, p99_ms}``: the lognormal with that mean and 99th percentile;
``{dist: exponential, mean_ms}``; ``{dist: deterministic, mean_ms}``; ``{dist: empirical, samples:
FILE}``: resampled from a file of service times in ms (one per line; a header line and extra CSV
columns are ignored: the first numeric column is read).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from wattgate.errors import BadRequest

__all__ = ["ServiceTime", "lognormal_sigma", "read_samples"]

Z99 = 2.3263478740408408  # standard normal 99th percentile


def lognormal_sigma(mean_ms: float, p99_ms: float) -> float:
    """sigma of the lognormal with this mean and p99: exp(z99 s - s^2/2) = p99/mean, smaller root."""
    ratio = p99_ms / mean_ms
    if not ratio > 1:
        raise BadRequest(f"lognormal service needs p99_ms > mean_ms, got mean {mean_ms} and p99 {p99_ms}")
    disc = Z99 * Z99 - 2.0 * math.log(ratio)
    if disc < 0:
        raise BadRequest(f"no lognormal has p99/mean = {ratio:.1f} (at most {math.exp(Z99 * Z99 / 2):.1f})")
    return Z99 - math.sqrt(disc)


def read_samples(path: Path) -> np.ndarray:
    if not path.is_file():
        raise BadRequest(f"service samples file not found: {path}")
    values = []
    for line in path.read_text().splitlines():
        cell = line.split(",")[0].strip()
        try:
            values.append(float(cell))
        except ValueError:
            continue  # a header or a blank line
    out = np.array(values)
    if out.size < 10 or not np.all(np.isfinite(out)) or out.min() <= 0:
        raise BadRequest(f"service samples in {path}: need at least 10 positive times in ms, got {out.size}")
    return out


@dataclass(frozen=True)
class ServiceTime:
    """How long one request occupies a server of the pool, and where the figure comes from."""

    dist: str
    mean_ms: float
    source: str
    p99_ms: float | None = None
    samples_ms: tuple[float, ...] = ()

    @classmethod
    def from_spec(cls, spec: dict, base_dir: Path, where: str) -> "ServiceTime":
        dist = spec["dist"]
        source = spec.get("source") or "scenario"
        if dist == "empirical":
            if not spec.get("samples"):
                raise BadRequest(f"{where}: empirical service needs samples: FILE")
            path = Path(spec["samples"])
            data = read_samples(path if path.is_absolute() else base_dir / path)
            return cls(dist, float(data.mean()), f"{source}: {path.name}", float(np.quantile(data, 0.99)), tuple(data))
        mean = spec.get("mean_ms")
        if mean is None or not mean > 0:
            raise BadRequest(f"{where}: {dist} service needs mean_ms > 0")
        if dist == "lognormal":
            p99 = spec.get("p99_ms")
            if p99 is None:
                raise BadRequest(f"{where}: lognormal service needs p99_ms")
            lognormal_sigma(mean, p99)
            return cls(dist, float(mean), source, float(p99))
        if dist == "exponential":
            return cls(dist, float(mean), source, float(mean) * math.log(100.0))
        if dist == "deterministic":
            return cls(dist, float(mean), source, float(mean))
        raise BadRequest(f"{where}: unknown service dist {dist!r}")

    def draw_ms(self, rng: np.random.Generator, n: int) -> np.ndarray:
        if self.dist == "deterministic":
            return np.full(n, self.mean_ms)
        if self.dist == "exponential":
            return rng.exponential(self.mean_ms, n)
        if self.dist == "lognormal":
            s = lognormal_sigma(self.mean_ms, self.p99_ms)
            mu = math.log(self.mean_ms) - s * s / 2.0
            return rng.lognormal(mu, s, n)
        return rng.choice(np.asarray(self.samples_ms), n)

    def describe(self) -> str:
        p99 = f", p99 {self.p99_ms:g} ms" if self.p99_ms is not None and self.dist != "deterministic" else ""
        return f"{self.dist} mean {self.mean_ms:g} ms{p99} ({self.source})"
