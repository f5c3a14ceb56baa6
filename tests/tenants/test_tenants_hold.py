"""Holding quota refusals: how long, the caps (per replica, per tenant), cancellation, off at 0, metrics.

A fake sleep stands in for asyncio.sleep: it records the seconds asked for and returns only when the
test releases it, so what is held, and for how long, is exact and needs no wall clock.
"""

from __future__ import annotations

import asyncio
import pickle

import pytest

from tenants.gate import Principal, build_gate
from tenants.hold import AdmissionRefused, RefusalHold
from tenants.keys import KeyLimits
from tenants.settings import AuthSettings
from wattgate.errors import TooManyRequests
from wattgate.metrics import MetricsRegistry


class FakeSleep:
    def __init__(self) -> None:
        self.asked: list[float] = []
        self.release = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        self.asked.append(seconds)
        await self.release.wait()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_a_refusal_is_held_for_its_retry_after_up_to_the_max():
    sleep = FakeSleep()
    sleep.release.set()
    hold = RefusalHold(1.0, 64, 32, sleep=sleep)
    assert await hold.hold("a", 0.25) == 0.25
    assert await hold.hold("a", 7.0) == 1.0
    assert sleep.asked == [0.25, 1.0] and hold.held_total == 2 and hold.holding == 0


async def test_past_the_replica_cap_a_refusal_is_answered_at_once():
    sleep = FakeSleep()
    hold = RefusalHold(1.0, 3, 3, sleep=sleep)
    held = [asyncio.create_task(hold.hold(t, 1.0)) for t in ("a", "b", "c")]
    await settle()
    assert hold.holding == 3 and not any(t.done() for t in held)
    assert await hold.hold("d", 1.0) == 0.0  # every slot taken: answered now, no sleep
    assert len(sleep.asked) == 3 and hold.answered_at_once == 1
    sleep.release.set()
    assert await asyncio.gather(*held) == [1.0] * 3
    assert hold.holding == 0 and await hold.hold("d", 1.0) == 1.0  # slots back


async def test_one_tenant_cannot_take_every_slot():
    sleep = FakeSleep()
    hold = RefusalHold(1.0, 4, 2, sleep=sleep)
    held = [asyncio.create_task(hold.hold("flood", 1.0)) for _ in range(2)]
    await settle()
    assert await hold.hold("flood", 1.0) == 0.0  # its own cap reached
    other = asyncio.create_task(hold.hold("other", 1.0))
    await settle()
    assert not other.done() and hold.holding_for("other") == 1  # another tenant is still held
    sleep.release.set()
    await asyncio.gather(*held, other)
    assert hold.holding == 0 and hold.holding_for("flood") == 0


async def test_a_cancelled_hold_frees_its_slot():
    sleep = FakeSleep()
    hold = RefusalHold(1.0, 1, 1, sleep=sleep)
    task = asyncio.create_task(hold.hold("a", 1.0))
    await settle()
    assert hold.holding == 1
    task.cancel()  # the client went away while held
    with pytest.raises(asyncio.CancelledError):
        await task
    assert hold.holding == 0 and hold.holding_for("a") == 0
    again = asyncio.create_task(hold.hold("a", 1.0))
    await settle()
    assert hold.holding == 1 and len(sleep.asked) == 2  # the freed slot holds the next refusal
    sleep.release.set()
    assert await again == 1.0


async def test_zero_turns_holding_off():
    sleep = FakeSleep()
    hold = RefusalHold(0.0, 64, 32, sleep=sleep)
    assert await hold.hold("a", 5.0) == 0.0
    assert sleep.asked == [] and hold.held_total == 0 and hold.answered_at_once == 0
    gate = build_gate(AuthSettings(refusal_hold_max_s=0), None)
    assert gate.hold.max_s == 0 and gate.hold.hold_s(3.0) == 0


async def test_metrics_count_held_and_holding_refusals():
    registry = MetricsRegistry()
    sleep = FakeSleep()
    hold = RefusalHold(1.0, 1, 1, registry, sleep=sleep)
    task = asyncio.create_task(hold.hold("a", 1.0))
    await settle()
    await hold.hold("b", 1.0)  # full: answered at once
    snap = registry.snapshot()
    assert snap["wattgate_refusals_holding"]["series"] == [[[], 1.0]]
    assert snap["wattgate_refusals_held_total"]["series"] == [[[], 1.0]]
    assert snap["wattgate_refusals_hold_full_total"]["series"] == [[[], 1.0]]
    sleep.release.set()
    await task
    assert registry.snapshot()["wattgate_refusals_holding"]["series"] == [[[], 0.0]]


async def test_the_gate_refuses_over_quota_as_a_holdable_refusal_and_exports_the_fair_counters():
    registry = MetricsRegistry()
    gate = build_gate(AuthSettings(fair={"capacity": 1, "max_queue_per_tenant": 0}), None, registry)
    rate = Principal("team-a", "k1", KeyLimits(rps=1, burst=1))
    async with gate.admit(rate):
        with pytest.raises(AdmissionRefused) as info:  # the fair queue's bound (capacity 1, no queue)
            async with gate.admit(Principal("team-b", "k2", KeyLimits())):
                pass
    assert info.value.tenant == "team-b" and info.value.status_code == 429
    with pytest.raises(AdmissionRefused) as info:  # the token bucket
        async with gate.admit(rate):
            pass
    assert info.value.tenant == "team-a" and "requests/s" in info.value.message and info.value.retry_after_s >= 1
    assert gate.fair.in_use == 0
    snap = registry.snapshot()
    assert snap["wattgate_fair_refused_total"]["series"] == [[[], 1.0]]
    assert snap["wattgate_fair_queued_total"]["series"] == [[[], 0.0]]  # nobody waited: refused at once


def test_admission_refused_pickles_with_its_tenant_and_is_a_429():
    exc = pickle.loads(pickle.dumps(AdmissionRefused("tenant a: over 2 requests/s", 1.5, "team-a")))
    assert isinstance(exc, TooManyRequests) and exc.tenant == "team-a" and exc.retry_after_s == 1.5
    assert exc.to_dict() == TooManyRequests("tenant a: over 2 requests/s", 1.5).to_dict()
