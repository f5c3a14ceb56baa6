"""Variants taken out of routing (by the live quality guard) until an operator re-enables them, with an audit trail.

The routers ask :meth:`VariantExclusions.substitute` for the variant they picked: an excluded one is
replaced by the variant it was excluded in favour of (the guard's reference). Every exclusion and
re-enabling is kept in ``history`` and logged on ``wattgate.audit`` with who, when and why.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass
from typing import Callable

audit = logging.getLogger("wattgate.audit")


@dataclass(frozen=True)
class Exclusion:
    model: str
    variant: str
    instead: str  # served in its place
    reason: str
    actor: str
    at_s: float  # unix seconds


class VariantExclusions:
    def __init__(self, history_len: int = 100, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str], Exclusion] = {}
        self._history: deque[dict] = deque(maxlen=history_len)
        self._clock = clock

    def exclude(self, model: str, variant: str, instead: str, reason: str, actor: str = "quality-guard") -> bool:
        """Stop routing to ``variant`` of ``model``; False if it already was excluded."""
        if variant == instead:
            raise ValueError(f"cannot exclude {model}/{variant} in favour of itself")
        with self._lock:
            if (model, variant) in self._active:
                return False
            entry = Exclusion(model, variant, instead, reason, actor, self._clock())
            self._active[(model, variant)] = entry
            self._history.append({"action": "excluded", **asdict(entry)})
        audit.warning("variant %s/%s excluded from routing by %s (served by %s instead): %s", model, variant, actor, instead, reason)
        return True

    def enable(self, model: str, variant: str, actor: str, reason: str = "") -> bool:
        """Route to ``variant`` again; False if it was not excluded."""
        with self._lock:
            entry = self._active.pop((model, variant), None)
            if entry is None:
                return False
            self._history.append({"action": "enabled", "model": model, "variant": variant, "instead": entry.instead,
                                  "reason": reason, "actor": actor, "at_s": self._clock()})
        audit.warning("variant %s/%s re-enabled for routing by %s: %s", model, variant, actor, reason or "no reason given")
        return True

    def substitute(self, model: str, variant: str) -> tuple[str, Exclusion | None]:
        """The variant to serve in place of ``variant`` (itself when not excluded) and the exclusion that applied."""
        seen = {variant}
        entry = None
        while True:  # an exclusion's stand-in may itself be excluded; never loop
            hit = self._active.get((model, variant))
            if hit is None or hit.instead in seen:
                return variant, entry
            entry = entry or hit
            variant = hit.instead
            seen.add(variant)

    def is_excluded(self, model: str, variant: str) -> bool:
        return (model, variant) in self._active

    def active(self) -> list[Exclusion]:
        with self._lock:
            return sorted(self._active.values(), key=lambda e: (e.model, e.variant))

    def show(self) -> dict:
        with self._lock:
            return {"excluded": [asdict(e) for e in sorted(self._active.values(), key=lambda e: (e.model, e.variant))],
                    "history": list(self._history)}
