"""Hardware-aware architecture search: train each candidate, measure it on the target, keep the Pareto set."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

from optimizers.pareto import Point, pareto_front


@dataclass(frozen=True)
class Candidate:
    name: str
    params: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Trial:
    candidate: Candidate
    quality: float
    energy_j_per_inference: float
    latency_ms: float
    on_front: bool = False


@dataclass(frozen=True)
class SearchReport:
    trials: tuple[Trial, ...]
    batch: int
    hardware: str

    @property
    def front(self) -> tuple[Trial, ...]:
        return tuple(t for t in self.trials if t.on_front)

    def rows(self) -> list[dict[str, Any]]:
        return [{"candidate": t.candidate.name, "quality": t.quality, "J/inference": t.energy_j_per_inference,
                 "latency_ms": t.latency_ms, "frontier": "yes" if t.on_front else ""} for t in self.trials]


def mlp_space(n_in: int, n_out: int, widths: Sequence[int], depths: Sequence[int]) -> list[Candidate]:
    """Every (width, depth) student: ``depth`` hidden layers of ``width`` units."""
    return [
        Candidate(f"w{w}-d{d}", {"sizes": (n_in, *([w] * d), n_out)})
        for w, d in itertools.product(sorted(widths), sorted(depths))
    ]


def search(
    candidates: Iterable[Candidate],
    train: Callable[[Candidate, Path], tuple[Path, float]],
    measure: Callable[[Path], dict[str, float]],
    out_dir: str | Path,
    batch: int,
    hardware: str = "x86",
) -> SearchReport:
    """``train(candidate, dir) -> (onnx_path, validation quality)``; ``measure(path)`` times it on ``hardware``.

    Quality is a validation score, never the test score, so choosing from the frontier does not
    tune on the test set.
    """
    out_dir = Path(out_dir)
    raw = []
    for cand in candidates:
        path, quality = train(cand, out_dir / cand.name)
        m = measure(path)
        raw.append((cand, float(quality), float(m["energy_j_per_inference"]), float(m["latency_ms"])))
    front = {p.name for p in pareto_front(Point(c.name, q, e) for c, q, e, _ in raw)}
    trials = tuple(Trial(c, q, e, lat, c.name in front) for c, q, e, lat in raw)
    return SearchReport(trials, batch, hardware)
