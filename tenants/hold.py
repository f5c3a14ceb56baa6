"""Holding quota refusals: a tenant's 429 (token bucket, concurrency cap, fair-queue bound) is answered
after its Retry-After (at most ``auth.refusal_hold_max_s``), not at once.

A client that obeys Retry-After loses nothing: it would wait that long anyway. A closed-loop flooder
that ignores it otherwise recycles each refusal instantly, and the proxy hops of its refusals (HAProxy,
Serve's proxy, the replica's event loop) crowd out other tenants' requests; held, it sends at most
(its connections / hold) requests per second. The front ends (``gateway/http.py``, ``gateway/grpc_api.py``)
hold an ``AdmissionRefused`` here, then answer it exactly as before.

Bounded: at most ``max_held`` refusals held at once per ingress replica, and ``max_held_per_tenant`` of
them for one tenant, so one flooder cannot take every slot and leave a second flooder unheld; past
either, the refusal is answered at once. A hold is an ``asyncio.sleep`` (no thread) whose slot is freed
in ``finally``, so a client that goes away while held (its task cancelled) frees it.

Carbon-budget refusals are not held: they happen after admission (a hold would keep the tenant's
concurrency and fair-queue slots), their Retry-After is the end of the budget period, and the rate
limit still bounds how fast a tenant can collect them.
"""

from __future__ import annotations

import asyncio
from typing import Awaitable, Callable

from wattgate.errors import TooManyRequests
from wattgate.metrics import MetricsRegistry


class AdmissionRefused(TooManyRequests):
    """A tenant refused at admission (rate, concurrency or fair share): a 429 the front end may hold."""

    def __init__(self, message: str, retry_after_s: float = 1.0, tenant: str = "") -> None:
        super().__init__(message, retry_after_s)
        self.tenant = tenant

    def __reduce__(self):
        return (type(self), (self.message, self.retry_after_s, self.tenant))


class RefusalHold:
    def __init__(self, max_s: float, max_held: int, max_held_per_tenant: int,
                 metrics: MetricsRegistry | None = None,
                 sleep: Callable[[float], Awaitable[None]] = asyncio.sleep) -> None:
        if max_s < 0 or max_held < 0 or max_held_per_tenant < 0:
            raise ValueError("refusal hold: max_s, max_held and max_held_per_tenant must be >= 0")
        self.max_s = max_s
        self.max_held = max_held
        self.max_held_per_tenant = max_held_per_tenant
        self._sleep = sleep
        self.holding = 0
        self._per_tenant: dict[str, int] = {}
        self.held_total = 0
        self.answered_at_once = 0  # refusals past the caps, answered without a hold
        registry = metrics or MetricsRegistry()  # a private one when nobody scrapes (tests, bare gates)
        self._held_c = registry.counter("wattgate_refusals_held_total",
                                        "Quota refusals (429) held for their Retry-After before being answered")
        self._full_c = registry.counter("wattgate_refusals_hold_full_total",
                                        "Quota refusals answered at once: this replica's or the tenant's hold slots were full")
        self._holding_g = registry.gauge("wattgate_refusals_holding", "Quota refusals being held now")
        for counter in (self._held_c, self._full_c):
            counter.inc(0)  # exported as 0 from the start, so rate() sees the first refusal
        self._holding_g.set(0)

    def hold_s(self, retry_after_s: float) -> float:
        return max(0.0, min(retry_after_s, self.max_s))

    async def hold(self, tenant: str, retry_after_s: float) -> float:
        """Waits out the refusal's hold when a slot is free; the seconds held (0: answered at once).
        Cancellation (the client went away) propagates, with the slot freed."""
        hold_s = self.hold_s(retry_after_s)
        if hold_s <= 0:
            return 0.0
        mine = self._per_tenant.get(tenant, 0)
        if self.holding >= self.max_held or mine >= self.max_held_per_tenant:
            self.answered_at_once += 1
            self._full_c.inc()
            return 0.0
        self.holding += 1
        self._per_tenant[tenant] = mine + 1
        self.held_total += 1
        self._held_c.inc()
        self._holding_g.set(self.holding)
        try:
            await self._sleep(hold_s)
        finally:
            self.holding -= 1
            left = self._per_tenant[tenant] - 1
            if left:
                self._per_tenant[tenant] = left
            else:
                del self._per_tenant[tenant]
            self._holding_g.set(self.holding)
        return hold_s

    def holding_for(self, tenant: str) -> int:
        return self._per_tenant.get(tenant, 0)
