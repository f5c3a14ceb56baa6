"""The live router on fake pools, no Ray: a failing pool is marked down and the request falls back."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from energy.attribution import RequestEnergy
from energy.coefficients import DEFAULT_PROFILE_FOR_CLASS, get_profile
from models.registry import ModelRegistry
from models.work import WorkItem, WorkResult
from routing.control import RoutingControl
from routing.intensity.factory import make_provider
from routing.intensity.settings import IntensitySettings
from routing.intensity.snapshot import IntensitySnapshot
from routing.live import ClientContext, GreenRouter
from routing.pools import PoolJob
from routing.topology import load_topology
from wattgate.errors import DependencyError, Unavailable

TOPOLOGY = "routing/scenarios/local-topology.yaml"


class FakePool:
    def __init__(self, fail: bool = False) -> None:
        self.fail = fail
        self.jobs: list[PoolJob] = []

    async def run(self, job: PoolJob) -> WorkResult:
        self.jobs.append(job)
        if self.fail:
            raise DependencyError("pool is gone")
        energy = RequestEnergy(0.01, 0.01, 0.0, "test", False, 1, 1.0)
        return WorkResult({"y": np.zeros((1, 1))}, energy, 1, 1)


@pytest.fixture
def card(digits_repository):
    return ModelRegistry(digits_repository).versions("digits")[-1]


def _router(pools: dict) -> GreenRouter:
    topology = load_topology(TOPOLOGY)
    intensity = IntensitySnapshot(make_provider(IntensitySettings()), sorted({p.region for p in topology.pools}))
    profiles = {c: get_profile(n) for c, n in DEFAULT_PROFILE_FOR_CLASS.items()}
    return GreenRouter(topology, RoutingControl("latency-first"), intensity, pools, profiles, 100.0, "FR")


def _job(card, variant: str) -> PoolJob:
    return PoolJob(card.name, card.version, variant, WorkItem({"pixels": np.zeros((1, 64), np.float32)}, 1, 1.0), ("y",))


def test_a_failing_pool_falls_back_to_the_next_best_and_says_so(card):
    pools = {"fr-x86": FakePool(fail=True), "de-x86": FakePool(), "gb-arm": FakePool()}
    router = _router(pools)
    route = router.route(card, None, frozenset(card.variants), ClientContext(client_region="FR"))
    assert route.pool.name == "fr-x86"  # nearest to an FR client
    execution = asyncio.run(router.execute(route, _job(card, route.variant)))
    assert execution.route.pool.name in {"de-x86", "gb-arm"}
    assert "fallback: fr-x86 failed" in execution.route.route_reason
    assert route.pool.name == "fr-x86"  # the original route is not mutated
    # The failed pool is skipped while it is marked down.
    again = router.route(card, None, frozenset(card.variants), ClientContext(client_region="FR"))
    assert again.pool.name != "fr-x86"


def test_when_every_pool_fails_the_request_fails_with_a_dependency_error(card):
    router = _router({name: FakePool(fail=True) for name in ("fr-x86", "de-x86", "gb-arm")})
    route = router.route(card, None, frozenset(card.variants), ClientContext(client_region="FR"))
    with pytest.raises((DependencyError, Unavailable)):
        asyncio.run(router.execute(route, _job(card, route.variant)))
