"""Live quality of a cheaper variant against its reference: the comparison and the rolling verdict.

Pure: numbers in, numbers out. The data plane's guard (``serving/quality_guard.py``) feeds it pairs
of outputs for the same request; this module says how close they are and whether a variant has
fallen below its card's floor.

- Classifiers (a model with an integer output such as ``label``): the share of rows whose top-1
  answer agrees with the reference's (``top1_agreement``); against client labels, accuracy.
- Embedders (float outputs only): the mean cosine of each row to the reference's (``cosine_mean``).
"""

from __future__ import annotations

import math
import threading
from collections import deque
from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from models.card import ModelCard

AGREEMENT = "top1_agreement"
COSINE = "cosine_mean"
# The card floor a live metric is held to: agreement on classifiers falls back to the accuracy floor.
_FLOOR_KEYS = {AGREEMENT: (AGREEMENT, "accuracy"), COSINE: (COSINE,)}


@dataclass(frozen=True)
class Comparison:
    """One sampled request: ``values`` per row (agreement 0/1 or cosine), on ``output``."""

    metric: str
    output: str
    values: tuple[float, ...]

    @property
    def mean(self) -> float:
        return float(np.mean(self.values)) if self.values else math.nan


def guard_metric(card: ModelCard) -> tuple[str, str]:
    """(metric, output name) the guard compares for this model: the first integer output as a
    top-1 answer, else the first float output as an embedding."""
    for spec in card.outputs:
        if spec.datatype.startswith(("INT", "UINT")):
            return AGREEMENT, spec.name
    for spec in card.outputs:
        if spec.datatype.startswith("FP"):
            return COSINE, spec.name
    raise ValueError(f"model {card.name!r} has no integer or float output to compare")


def live_floor(card: ModelCard, metric: str, override: float | None = None) -> float | None:
    """The floor the live metric must hold: ``override``, else the card's floor for it (None: no floor)."""
    if override is not None:
        return override
    for key in _FLOOR_KEYS[metric]:
        if key in card.quality_floor:
            return card.quality_floor[key]
    return None


def _rows(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a)
    return a.reshape(a.shape[0], -1) if a.ndim > 1 else a.reshape(-1, 1)


def compare(metric: str, output: str, reference: Mapping[str, np.ndarray], served: Mapping[str, np.ndarray]) -> Comparison:
    """Row by row, how the served variant's ``output`` matches the reference's."""
    ref, got = _rows(reference[output]), _rows(served[output])
    if ref.shape != got.shape:
        raise ValueError(f"output {output!r}: reference shape {ref.shape} != served {got.shape}")
    if metric == AGREEMENT:
        values = (ref == got).all(axis=1).astype(float)
    elif metric == COSINE:
        ref, got = ref.astype(np.float64), got.astype(np.float64)
        norms = np.linalg.norm(ref, axis=1) * np.linalg.norm(got, axis=1)
        values = np.where(norms > 0, (ref * got).sum(1) / np.where(norms > 0, norms, 1.0), 0.0)
    else:
        raise ValueError(f"unknown guard metric {metric!r}")
    return Comparison(metric, output, tuple(float(v) for v in values))


def parse_labels(labels: object, rows: int) -> np.ndarray | None:
    """Client labels for accuracy: a list of ``rows`` integers; anything else is None (ignored, not an error)."""
    if not isinstance(labels, (list, tuple)) or len(labels) != rows:
        return None
    if not all(isinstance(v, int) and not isinstance(v, bool) for v in labels):
        return None
    return np.asarray(labels, np.int64)


def accuracy(labels: np.ndarray, answers: np.ndarray) -> tuple[float, ...]:
    answers = np.asarray(answers).reshape(len(labels), -1)[:, 0]
    return tuple(float(v) for v in (answers == labels))


@dataclass(frozen=True)
class Verdict:
    """A variant's rolling quality after a sample; ``tripped`` once, when it first falls below the floor."""

    model: str
    variant: str
    metric: str
    value: float
    samples: int
    floor: float | None
    below: bool
    tripped: bool

    def reason(self) -> str:
        return (f"live {self.metric} {self.value:.4f} of {self.model}/{self.variant} against the reference over "
                f"{self.samples} rows is below the card's floor {self.floor}")


class QualityTracker:
    """Per (model, variant): the last ``window`` row values; below the floor only after ``min_rows``.

    Thread-safe. A variant trips once; :meth:`reset` (an operator re-enabling it) starts it afresh.
    """

    def __init__(self, window: int = 200, min_rows: int = 20) -> None:
        if window < 1 or not 1 <= min_rows <= window:
            raise ValueError("window must be >= 1 and 1 <= min_rows <= window")
        self.window = window
        self.min_rows = min_rows
        self._values: dict[tuple[str, str, str], deque[float]] = {}
        self._tripped: set[tuple[str, str]] = set()
        self._lock = threading.Lock()

    def observe(self, model: str, variant: str, metric: str, values: Sequence[float], floor: float | None) -> Verdict:
        with self._lock:
            window = self._values.setdefault((model, variant, metric), deque(maxlen=self.window))
            window.extend(values)
            value, n = float(np.mean(window)), len(window)
            below = floor is not None and n >= self.min_rows and value < floor
            tripped = below and (model, variant) not in self._tripped
            if tripped:
                self._tripped.add((model, variant))
        return Verdict(model, variant, metric, value, n, floor, below, tripped)

    def current(self) -> dict[tuple[str, str, str], tuple[float, int]]:
        """(model, variant, metric) -> (rolling mean, rows in the window)."""
        with self._lock:
            return {k: (float(np.mean(v)), len(v)) for k, v in self._values.items() if v}

    def value(self, model: str, variant: str, metric: str) -> float | None:
        with self._lock:
            v = self._values.get((model, variant, metric))
            return float(np.mean(v)) if v else None

    def reset(self, model: str, variant: str) -> None:
        with self._lock:
            self._tripped.discard((model, variant))
            for key in [k for k in self._values if k[:2] == (model, variant)]:
                del self._values[key]
