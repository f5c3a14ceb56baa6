"""Weighted fair admission to one ingress replica: past ``capacity`` requests in flight, tenants queue
and are let in by key weight (start-time fair queuing), not first come, first served.

Below capacity a request costs one counter check. At capacity a tenant's request waits in its own
queue; each request gets a virtual start tag ``max(virtual time, the tenant's last finish tag)`` and
a finish tag ``start + 1 / weight``, and a freed slot goes to the smallest start tag. Two backlogged
tenants of weights 1 and 3 thus get 1/4 and 3/4 of the slots, and a light tenant arriving behind a
flood starts at the current virtual time: it waits about one slot turnover, not the flood's queue.
A tenant's queue is bounded in length (``max_queue_per_tenant``) and in time (``max_wait_s``); past
either the request is refused with 429 and Retry-After. Requests with no tenant (auth off, no
trusted proxy) hold a slot but are never queued or refused here, as before tenants existed.

asyncio only: a waiter that is cancelled (its client went away) leaves the queue, and a slot handed
to a waiter cancelled in the same turn is passed on, so a slot is never lost.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from dataclasses import dataclass

from wattgate.errors import TooManyRequests
from wattgate.metrics import MetricsRegistry


@dataclass(eq=False)
class _Waiter:
    tenant: str
    future: asyncio.Future
    gone: bool = False


class FairQueue:
    def __init__(self, capacity: int, max_queue_per_tenant: int = 64, max_wait_s: float = 10.0,
                 metrics: MetricsRegistry | None = None) -> None:
        if capacity < 1 or max_queue_per_tenant < 0 or not max_wait_s > 0:
            raise ValueError("capacity >= 1, max_queue_per_tenant >= 0 and max_wait_s > 0")
        self.capacity = capacity
        self.max_queue_per_tenant = max_queue_per_tenant
        self.max_wait_s = max_wait_s
        self.in_use = 0
        self.refused = 0  # refused here (queue full, or waited too long)
        self.queued_total = 0  # had to wait
        self._heap: list[tuple[float, int, _Waiter]] = []
        self._seq = itertools.count()
        self._waiting: dict[str, int] = {}  # live waiters per tenant
        self._finish: dict[str, float] = {}  # each tenant's last virtual finish tag
        self._vtime = 0.0
        registry = metrics or MetricsRegistry()  # a private one when nobody scrapes
        self._refused_c = registry.counter("wattgate_fair_refused_total",
                                           "Tenant requests refused by fair admission (queue full or waited too long)")
        self._queued_c = registry.counter("wattgate_fair_queued_total",
                                          "Tenant requests that waited for a slot of a saturated ingress replica")
        self._refused_c.inc(0)  # exported as 0 from the start, so rate() sees the first one
        self._queued_c.inc(0)

    def _count_refused(self) -> None:
        self.refused += 1
        self._refused_c.inc()

    @property
    def waiting(self) -> int:
        return sum(self._waiting.values())

    def waiting_for(self, tenant: str) -> int:
        return self._waiting.get(tenant, 0)

    async def acquire(self, tenant: str | None, weight: float = 1.0) -> None:
        """Takes a slot, waiting in the tenant's queue when the replica is saturated; else TooManyRequests."""
        if tenant is None or (self.in_use < self.capacity and not self._waiting):
            self.in_use += 1  # the fast path: not saturated, nobody waiting
            return
        await self._wait(tenant, weight)

    def release(self) -> None:
        """Gives a slot back; the next waiter in fair order gets it."""
        self.in_use -= 1
        self._dispatch()

    async def _wait(self, tenant: str, weight: float) -> None:
        if self._waiting.get(tenant, 0) >= self.max_queue_per_tenant:
            self._count_refused()
            raise TooManyRequests(f"tenant {tenant}: the gateway is saturated and this tenant already has "
                                  f"{self.max_queue_per_tenant} requests waiting", 1.0)
        start = max(self._vtime, self._finish.get(tenant, 0.0))
        self._finish[tenant] = start + 1.0 / weight
        waiter = _Waiter(tenant, asyncio.get_running_loop().create_future())
        heapq.heappush(self._heap, (start, next(self._seq), waiter))
        self._waiting[tenant] = self._waiting.get(tenant, 0) + 1
        self.queued_total += 1
        self._queued_c.inc()
        try:
            async with asyncio.timeout(self.max_wait_s):
                await waiter.future
        except BaseException as exc:
            if waiter.future.done() and not waiter.future.cancelled():
                self.release()  # the slot was handed over as this waiter was cancelled: pass it on
            else:
                self._leave(waiter)
            if isinstance(exc, TimeoutError):
                self._count_refused()
                raise TooManyRequests(f"tenant {tenant}: the gateway is saturated; waited {self.max_wait_s:g} s "
                                      "for a fair share of it", self.max_wait_s) from None
            raise

    def _leave(self, waiter: _Waiter) -> None:
        if not waiter.gone:
            waiter.gone = True
            self._drop(waiter.tenant)
            if len(self._heap) > 2 * self.waiting + 64:  # mostly departed waiters: drop them
                self._heap = [e for e in self._heap if not e[2].gone]
                heapq.heapify(self._heap)

    def _drop(self, tenant: str) -> None:
        n = self._waiting[tenant] - 1
        if n:
            self._waiting[tenant] = n
        else:
            del self._waiting[tenant]
        if not self._waiting:  # no backlog: virtual time starts again (and the tags stay bounded)
            self._heap.clear()
            self._finish.clear()
            self._vtime = 0.0

    def _dispatch(self) -> None:
        while self.in_use < self.capacity and self._heap:
            start, _, waiter = heapq.heappop(self._heap)
            if waiter.gone or waiter.future.done():  # cancelled: its task accounts for it when it runs
                continue
            waiter.gone = True
            self._vtime = start
            self.in_use += 1
            waiter.future.set_result(None)
            self._drop(waiter.tenant)
