"""A circuit breaker that stops calling a dead Redis for a back-off, then lets one probe through."""

from __future__ import annotations

import time
from typing import Callable, Literal

BreakerState = Literal["closed", "open", "half-open"]


class CircuitBreaker:
    """closed --failure--> open (back-off) --elapsed--> one probe --ok--> closed, --fails--> open, back-off doubled.

    Meant for one asyncio event loop (no locking): the state changes between awaits only.
    """

    def __init__(self, backoff_s: float, max_backoff_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.base_backoff_s = backoff_s
        self.max_backoff_s = max_backoff_s
        self._clock = clock
        self._backoff_s = backoff_s
        self._open_until: float | None = None
        self._probe_started: float | None = None
        self.opened_total = 0

    @property
    def state(self) -> BreakerState:
        if self._open_until is None:
            return "closed"
        return "half-open" if self._clock() >= self._open_until else "open"

    def allow(self) -> bool:
        """True when a call may go to Redis now; while open, only the one probe after the back-off."""
        if self._open_until is None:
            return True
        now = self._clock()
        if now < self._open_until:
            return False
        # A probe that never reported back (its task was cancelled mid-call) must not wedge the breaker.
        if self._probe_started is not None and now - self._probe_started < self.max_backoff_s:
            return False
        self._probe_started = now
        return True

    def success(self) -> None:
        if self._open_until is not None and self._probe_started is None:
            # A call that started before the breaker opened; it says nothing about Redis now.
            return
        self._open_until = None
        self._probe_started = None
        self._backoff_s = self.base_backoff_s

    def failure(self) -> None:
        now = self._clock()
        if self._open_until is None:
            self.opened_total += 1
        elif self._probe_started is not None:
            self._backoff_s = min(self._backoff_s * 2, self.max_backoff_s)
        else:
            # Another call that was already in flight when the breaker opened: keep the current back-off.
            return
        self._probe_started = None
        self._open_until = now + self._backoff_s

    def abandon(self) -> None:
        """The probe was cancelled before Redis answered: let the next call probe instead."""
        self._probe_started = None

    def seconds_until_probe(self) -> float:
        if self._open_until is None:
            return 0.0
        return max(0.0, self._open_until - self._clock())
