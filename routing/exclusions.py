"""Variants taken out of routing (by the live quality guard) until an operator re-enables them, with an audit trail.

The routers ask :meth:`VariantExclusions.substitute` for the variant they picked: an excluded one is
replaced by the variant it was excluded in favour of (the guard's reference). Every exclusion and
re-enabling is kept in ``history`` and logged on ``wattgate.audit`` with who, when and why.

Ingress replicas share their decisions through a board (``gateway/replica_sync.py``): each change is
an event (``action`` "excluded" | "enabled", model, variant, ``at_s``, ...); :func:`newer` is the one
rule for which event stands per variant: the later ``at_s`` wins, and at equal times an operator's
re-enabling beats an exclusion. A replica hands its unposted events out with :meth:`unposted` and
takes the board's view with :meth:`adopt`, which applies what is newer than what it holds.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import asdict, dataclass
from typing import Callable

audit = logging.getLogger("wattgate.audit")
log = logging.getLogger("wattgate.quality")


@dataclass(frozen=True)
class Exclusion:
    model: str
    variant: str
    instead: str  # served in its place
    reason: str
    actor: str
    at_s: float  # unix seconds


def newer(event: dict, than: dict | None) -> bool:
    """Last writer wins per (model, variant); at equal ``at_s`` an operator's re-enabling wins."""
    if than is None:
        return True
    if event["at_s"] != than["at_s"]:
        return event["at_s"] > than["at_s"]
    return event["action"] == "enabled" and than["action"] != "enabled"


class VariantExclusions:
    def __init__(self, history_len: int = 100, clock: Callable[[], float] = time.time) -> None:
        self._lock = threading.Lock()
        self._active: dict[tuple[str, str], Exclusion] = {}
        self._latest: dict[tuple[str, str], dict] = {}  # the standing event per variant (local or adopted)
        self._history: deque[dict] = deque(maxlen=history_len)
        self._unposted: list[dict] = []  # local events the board has not confirmed yet
        self._clock = clock

    def _record(self, event: dict) -> None:
        event = {"id": uuid.uuid4().hex[:12], **event}
        self._latest[(event["model"], event["variant"])] = event
        self._history.append(event)
        self._unposted.append(event)

    def exclude(self, model: str, variant: str, instead: str, reason: str, actor: str = "quality-guard") -> bool:
        """Stop routing to ``variant`` of ``model``; False if it already was excluded."""
        if variant == instead:
            raise ValueError(f"cannot exclude {model}/{variant} in favour of itself")
        with self._lock:
            if (model, variant) in self._active:
                return False
            entry = Exclusion(model, variant, instead, reason, actor, self._clock())
            self._active[(model, variant)] = entry
            self._record({"action": "excluded", **asdict(entry)})
        audit.warning("variant %s/%s excluded from routing by %s (served by %s instead): %s", model, variant, actor, instead, reason)
        return True

    def enable(self, model: str, variant: str, actor: str, reason: str = "") -> bool:
        """Route to ``variant`` again; False if it was not excluded."""
        with self._lock:
            entry = self._active.pop((model, variant), None)
            if entry is None:
                return False
            self._record({"action": "enabled", "model": model, "variant": variant, "instead": entry.instead,
                          "reason": reason, "actor": actor, "at_s": self._clock()})
        audit.warning("variant %s/%s re-enabled for routing by %s: %s", model, variant, actor, reason or "no reason given")
        return True

    # -- sharing with the other ingress replicas ------------------------------------------------------
    def unposted(self) -> list[dict]:
        """Local changes the board has not confirmed (kept until :meth:`adopt` sees them there)."""
        with self._lock:
            return list(self._unposted)

    def adopt(self, view: dict) -> list[tuple[str, str]]:
        """Take the board's view (``{"latest": [event], "history": [event]}``): apply every event newer than
        what this replica holds. Returns the variants re-enabled here by it (their quality windows restart)."""
        enabled = []
        latest = {(e["model"], e["variant"]): e for e in view.get("latest", [])}
        with self._lock:
            for key, event in latest.items():
                if not newer(event, self._latest.get(key)):
                    continue
                self._latest[key] = event
                if event["action"] == "excluded":
                    self._active[key] = Exclusion(*key, event["instead"], event["reason"], event["actor"], event["at_s"])
                    log.info("variant %s/%s excluded by %s (on another ingress replica)", *key, event["actor"])
                elif self._active.pop(key, None) is not None:
                    enabled.append(key)
                    log.info("variant %s/%s re-enabled by %s (on another ingress replica)", *key, event["actor"])
            # Confirmed (stored or already superseded on the board): no need to post again.
            self._unposted = [e for e in self._unposted
                              if (e["model"], e["variant"]) not in latest or newer(e, latest[(e["model"], e["variant"])])]
            board = view.get("history", [])
            ids = {e.get("id") for e in board}
            merged = board + [e for e in self._history if e.get("id") not in ids]
            self._history = deque(sorted(merged, key=lambda e: e["at_s"])[-self._history.maxlen:], maxlen=self._history.maxlen)
        return enabled

    # -- the routers --------------------------------------------------------------------------------
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
                    "history": [{k: v for k, v in e.items() if k != "id"} for e in self._history]}
