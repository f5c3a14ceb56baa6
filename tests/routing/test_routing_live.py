"""The live router (GreenRouter over RouterCore) with fake pools: bursts spread, splits follow capacity."""

from __future__ import annotations

import asyncio
import pickle
from collections import Counter

import numpy as np
import pytest

from energy.attribution import RequestEnergy
from energy.coefficients import DEFAULT_PROFILE_FOR_CLASS, get_profile
from models.card import ModelCard
from models.work import WorkItem, WorkResult
from routing.control import RoutingControl
from routing.intensity.snapshot import IntensitySnapshot
from routing.intensity.static import StaticProvider
from routing.live import ClientContext, GreenRouter
from routing.pools import PoolJob
from routing.split import RouterCore
from routing.policies import RouteRequest
from wattgate.errors import DependencyError, Overloaded, Unavailable

INTENSITY = {"FR": 50.0, "DE": 400.0, "GB": 200.0}
PROFILES = {cls: get_profile(name) for cls, name in DEFAULT_PROFILE_FOR_CLASS.items()}
SPEC = {"name": "x", "datatype": "FP32", "shape": [-1, 1]}
CARD = ModelCard(
    name="minilm", version="1", default_variant="fp32", inputs=[SPEC], outputs=[SPEC],
    variants={"fp32": {"file": "f.onnx", "sha256": "0", "size_bytes": 1, "inputs": [SPEC], "outputs": [SPEC]}},
)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class BlockingPool:
    """A pool whose requests finish only when the test releases them."""

    def __init__(self) -> None:
        self.started = 0
        self.release = asyncio.Event()
        self.fail = False

    async def run(self, job: PoolJob) -> WorkResult:
        self.started += 1
        if self.fail:
            raise DependencyError("pool down")
        await self.release.wait()
        energy = RequestEnergy(0.01, 0.01, 0.0, "test", False, 1, 1.0)
        return WorkResult({"x": np.zeros((1, 1))}, energy, 1, 1)


def make_router(topology, clock, policy="lowest-carbon", **kw):
    pools = {p.name: BlockingPool() for p in topology.pools}
    intensity = IntensitySnapshot(StaticProvider(INTENSITY), sorted(INTENSITY))
    router = GreenRouter(topology, RoutingControl(policy), intensity, pools, PROFILES, 100.0, "FR", clock=clock, **kw)
    return router, pools


def job() -> PoolJob:
    return PoolJob("minilm", "1", "fp32", WorkItem({"x": np.zeros((1, 1), np.float32)}, 1, 1.0), ("x",))


def test_a_burst_is_spread_by_in_flight_bounds_then_shed(topology):
    """100 requests at one instant: the old router sent all of them to its one reused decision (fr-x86)."""
    clock = Clock()
    router, pools = make_router(topology, clock)
    bounds = router.core.max_in_flight
    # servers x SLO / service: fr 3 x 100/8, de 3 x 100/8, gb 3 x 100/10 (capacity follows servers).
    assert bounds == {"fr-x86": 38, "de-x86": 38, "gb-arm": 30}

    async def burst(n):
        outcomes = []
        for p in pools.values():
            p.release = asyncio.Event()

        async def one():
            try:
                route = router.route(CARD, None, frozenset({"fp32"}), ClientContext("DE"))
            except Overloaded as exc:
                outcomes.append(exc)
                return
            outcomes.append(route.pool.name)
            await router.execute(route, job())

        tasks = [asyncio.ensure_future(one()) for _ in range(n)]
        await asyncio.sleep(0)
        in_flight = {name: router.load[name].in_flight for name in pools}
        for p in pools.values():
            p.release.set()
        await asyncio.gather(*tasks)
        return outcomes, in_flight

    outcomes, in_flight = asyncio.run(burst(100))
    placed = Counter(o for o in outcomes if isinstance(o, str))
    # Cleanest first up to its bound, then the next by carbon (gb 200 < de 400), never past a bound.
    assert placed == {"fr-x86": 38, "gb-arm": 30, "de-x86": 32}
    assert in_flight == placed
    assert not any(isinstance(o, Overloaded) for o in outcomes)
    assert all(router.load[name].in_flight == 0 for name in pools)

    outcomes, _ = asyncio.run(burst(sum(bounds.values()) + 10))
    shed = [o for o in outcomes if isinstance(o, Overloaded)]
    assert len(shed) == 10
    assert shed[0].status_code == 503 and shed[0].retry_after_s >= 1.0
    assert "past capacity" in shed[0].message
    again = pickle.loads(pickle.dumps(shed[0]))
    assert isinstance(again, Overloaded) and again.retry_after_s == shed[0].retry_after_s


def test_steady_traffic_is_split_as_capacity_requires_within_every_cadence(topology):
    """1000 rps from DE for 3 s: fr-x86 (400 rps capacity) takes what the SLO allows, not everything,
    and every 100 ms window already carries the split (no herding on one reused decision)."""
    clock = Clock()
    router, _ = make_router(topology, clock)
    core = router.core
    request = RouteRequest("minilm", "fp32", "DE", 100.0, allowed_variants=("fp32",))
    core.warm_start(request, 1000.0, clock.now); core.warm_pools(clock.now)
    rng = np.random.default_rng(1)
    gaps = rng.exponential(1 / 1000.0, size=3000)
    windows: dict[int, Counter] = {}
    done: list[tuple[float, str]] = []
    for gap in gaps:
        clock.now += gap
        while done and done[0][0] <= clock.now:
            core.finish(done.pop(0)[1])
        entry = core.pick(request, clock.now)
        core.begin(entry.pool, clock.now)
        done.append((clock.now + 0.02, entry.pool))  # 20 ms in flight each
        windows.setdefault(int((clock.now - 1000.0) / 0.1), Counter())[entry.pool] += 1
    total = Counter()
    for w in windows.values():
        total.update(w)
    share = {p: total[p] / len(gaps) for p in ("fr-x86", "gb-arm", "de-x86")}
    assert 0.3 < share["fr-x86"] < 0.4  # at most ~95 % of 400 rps out of 1000
    assert share["gb-arm"] > 0.2  # the next cleanest takes the next slice
    for w in list(windows.values())[1:-1]:
        n = sum(w.values())
        assert w["fr-x86"] / n < 0.6, w  # never the whole window on one pool
    assert core.plans < 40  # plans are redone on change, not per request


def test_round_robin_rotates_exactly_and_failures_fall_back(topology):
    clock = Clock()
    router, pools = make_router(topology, clock, policy="round-robin")
    names = [router.route(CARD, None, frozenset({"fp32"}), ClientContext("FR")).pool.name for _ in range(12)]
    assert Counter(names) == {"fr-x86": 4, "de-x86": 4, "gb-arm": 4}

    pools["fr-x86"].fail = True
    for p in pools.values():
        p.release.set()
    route = next(r for r in (router.route(CARD, None, frozenset({"fp32"}), ClientContext("FR")) for _ in range(3))
                 if r.pool.name == "fr-x86")
    execution = asyncio.run(router.execute(route, job()))
    assert execution.route.pool.name != "fr-x86" and "fallback: fr-x86 failed" in execution.route.route_reason
    later = {router.route(CARD, None, frozenset({"fp32"}), ClientContext("FR")).pool.name for _ in range(12)}
    assert "fr-x86" not in later  # marked down for a while


def test_no_healthy_pool_is_unavailable_not_overloaded(topology):
    clock = Clock()
    router, _ = make_router(topology, clock)
    for name in router.load:
        router.core.mark_down(name, clock.now + 60)
    with pytest.raises(Unavailable) as info:
        router.route(CARD, None, frozenset({"fp32"}), ClientContext("FR"))
    assert not isinstance(info.value, Overloaded)


def test_core_reads_no_clock_and_scales_by_ingress_replicas(topology):
    control = RoutingControl()
    intensity = IntensitySnapshot(StaticProvider(INTENSITY), sorted(INTENSITY))
    one = RouterCore(topology, control, intensity, 100.0)
    four = RouterCore(topology, control, intensity, 100.0, ingress_replicas=4)
    assert four.max_in_flight["fr-x86"] == 10  # 38 shared by four replicas, rounded up
    request = RouteRequest("minilm", "fp32", "FR", 100.0)
    one.warm_start(request, 1000.0, 0.0)
    four.warm_start(request, 250.0, 0.0)  # a quarter of the traffic each
    assert one.planned_load_rps(0.0) == pytest.approx(four.planned_load_rps(0.0))


def test_deferrable_requests_use_spare_capacity_within_their_share_and_never_the_last_slots(topology):
    control = RoutingControl()
    intensity = IntensitySnapshot(StaticProvider(INTENSITY), sorted(INTENSITY))
    core = RouterCore(topology, control, intensity, 100.0, deferrable_share=0.25)
    request = RouteRequest("minilm", "fp32", "FR", 100.0)
    cap = {name: core.deferrable_bound(name) for name in core.max_in_flight}
    assert cap["fr-x86"] == 9  # a quarter of its 38 in-flight bound
    placed = Counter()
    with pytest.raises(Overloaded):  # every pool at its deferrable share: the job waits, no pool is full
        for _ in range(1000):
            e = core.pick(request, 0.0, deferrable=True)
            core.begin(e.pool, 0.0, deferrable=True)
            placed[e.pool] += 1
    assert placed == cap
    assert all(core.load[p].in_flight < core.max_in_flight[p] for p in cap)  # interactive traffic still has room
    e = core.pick(request, 0.0)  # and gets it
    assert core.has_room(e.pool) and not core.has_room(e.pool, deferrable=True)
    core.finish(e.pool, deferrable=True)
    assert core.has_room(e.pool, deferrable=True)
