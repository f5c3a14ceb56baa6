"""Weighted fair admission: weights under saturation, a light tenant behind a flood, bounds, cancellation.

A fake service loop stands in for the model: it finishes the oldest admitted request, lets the
event loop run, and records who was let in next. Everything is asyncio, so the order is exact.
"""

from __future__ import annotations

import asyncio
from collections import deque

import pytest

from tenants.fair import FairQueue
from wattgate.errors import TooManyRequests


class Service:
    """Requests that hold a slot until the service loop finishes them, oldest first."""

    def __init__(self, fair: FairQueue) -> None:
        self.fair = fair
        self.admitted: list[str] = []
        self.holding: deque[asyncio.Event] = deque()
        self.tasks: list[asyncio.Task] = []

    async def _request(self, tenant: str, weight: float) -> None:
        await self.fair.acquire(tenant, weight)
        try:
            self.admitted.append(tenant)
            done = asyncio.Event()
            self.holding.append(done)
            await done.wait()
        finally:
            self.fair.release()

    def send(self, tenant: str, weight: float = 1.0, n: int = 1) -> list[asyncio.Task]:
        new = [asyncio.create_task(self._request(tenant, weight)) for _ in range(n)]
        self.tasks += new
        return new

    async def settle(self) -> None:
        for _ in range(5):
            await asyncio.sleep(0)

    async def finish_one(self) -> None:
        self.holding.popleft().set()
        await self.settle()

    async def close(self) -> None:
        for t in self.tasks:
            t.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


async def test_not_saturated_means_no_queue():
    fair = FairQueue(capacity=4)
    svc = Service(fair)
    svc.send("a", n=4)
    await svc.settle()
    assert svc.admitted == ["a"] * 4 and fair.queued_total == 0 and fair.in_use == 4
    await svc.close()
    assert fair.in_use == 0


async def test_backlogged_tenants_share_slots_by_weight():
    fair = FairQueue(capacity=4, max_queue_per_tenant=100)
    svc = Service(fair)
    svc.send("a", 1.0, n=60)  # a arrives first and fills every slot
    svc.send("b", 3.0, n=60)
    await svc.settle()
    assert svc.admitted == ["a"] * 4 and fair.waiting == 116
    for _ in range(40):  # both stay backlogged over the whole window
        await svc.finish_one()
    window = svc.admitted[4:44]
    assert len(window) == 40
    assert window.count("b") == 30 and window.count("a") == 10  # 3/4 and 1/4
    assert fair.in_use == 4
    await svc.close()
    assert fair.in_use == 0 and fair.waiting == 0


async def test_a_light_tenant_waits_one_turnover_not_the_flood():
    fair = FairQueue(capacity=4, max_queue_per_tenant=100)
    svc = Service(fair)
    svc.send("flood", n=50)
    await svc.settle()
    for _ in range(10):
        await svc.finish_one()
    assert fair.waiting_for("flood") == 36
    svc.send("light")
    await svc.settle()
    assert "light" not in svc.admitted
    await svc.finish_one()  # the next freed slot is the light tenant's, ahead of 36 flood requests
    assert svc.admitted[-1] == "light"
    await svc.close()


async def test_queue_bounds_refuse_with_retry_after():
    fair = FairQueue(capacity=1, max_queue_per_tenant=2)
    svc = Service(fair)
    svc.send("a", n=3)  # one in, two waiting
    await svc.settle()
    with pytest.raises(TooManyRequests, match="2 requests waiting") as full:
        await fair.acquire("a")
    assert full.value.status_code == 429 and full.value.retry_after_s >= 1
    await svc.close()
    assert fair.in_use == 0 and fair.waiting == 0

    fair = FairQueue(capacity=1, max_wait_s=0.05)
    await fair.acquire("a")
    with pytest.raises(TooManyRequests, match="waited") as late:
        await fair.acquire("b")  # nothing frees a slot in time
    assert late.value.retry_after_s >= 1 and fair.waiting == 0 and fair.refused == 1
    fair.release()
    assert fair.in_use == 0


async def test_a_cancelled_waiter_frees_its_place():
    fair = FairQueue(capacity=1)
    svc = Service(fair)
    svc.send("a")
    gone = svc.send("b")
    svc.send("c")
    await svc.settle()
    assert fair.waiting == 2
    gone[0].cancel()  # b's client disconnects while queued
    await svc.settle()
    assert fair.waiting == 1 and fair.waiting_for("b") == 0
    await svc.finish_one()
    assert svc.admitted == ["a", "c"] and fair.in_use == 1 and fair.waiting == 0
    await svc.close()
    assert fair.in_use == 0


async def test_a_slot_handed_to_a_waiter_cancelled_in_the_same_turn_is_passed_on():
    fair = FairQueue(capacity=1)
    await fair.acquire("a")
    late = asyncio.create_task(fair.acquire("b"))
    nxt = asyncio.create_task(fair.acquire("c"))
    await asyncio.sleep(0)
    assert fair.waiting == 2
    fair.release()  # b's future gets the slot ...
    late.cancel()  # ... and b is cancelled before it runs again
    with pytest.raises(asyncio.CancelledError):
        await late
    await nxt  # c got the slot b could not use
    assert fair.in_use == 1 and fair.waiting == 0
    fair.release()
    assert fair.in_use == 0


async def test_requests_without_a_tenant_hold_slots_but_never_wait():
    fair = FairQueue(capacity=2)
    for _ in range(3):
        await fair.acquire(None)
    assert fair.in_use == 3 and fair.queued_total == 0
    waiter = asyncio.create_task(fair.acquire("t"))
    await asyncio.sleep(0)
    fair.release()
    await asyncio.sleep(0)
    assert not waiter.done()  # still at capacity (2 in use)
    fair.release()
    await waiter
    assert fair.in_use == 2


async def test_departed_waiters_do_not_pile_up_under_sustained_saturation():
    fair = FairQueue(capacity=1)
    await fair.acquire("a")
    stay = asyncio.create_task(fair.acquire("b"))
    for _ in range(500):  # clients that queue and go away while b waits
        t = asyncio.create_task(fair.acquire("c"))
        await asyncio.sleep(0)
        t.cancel()
        await asyncio.gather(t, return_exceptions=True)
    assert fair.waiting == 1 and len(fair._heap) <= 2 * fair.waiting + 64
    fair.release()
    await stay
    assert fair.in_use == 1
