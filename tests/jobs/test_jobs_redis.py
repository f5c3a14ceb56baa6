"""``jobs.store: redis``: the jobs room on a real redis-server, through a gateway restart."""

from __future__ import annotations

import asyncio

import pytest

from jobs.assembly import build_jobs
from jobs.redis_store import RedisJobStore
from tests.redis_server import LocalRedis
from wattgate.errors import BadRequest

from jobs_fakes import digits_body

JSON = {"content-type": "application/json"}


async def test_a_job_in_redis_survives_a_restart_and_runs_once(make_plane, replay_sections):
    with LocalRedis() as server:
        replay_sections["jobs"].update(store="redis", redis_url=server.url)
        parts = make_plane(**replay_sections)
        first = build_jobs(parts)
        assert isinstance(first.store, RedisJobStore) and "redis 127.0.0.1" in first.store.where
        job, _ = first.service.submit("digits", None, digits_body(deadline=12 * 3600), JSON)
        first.close()  # the gateway stops while the job is scheduled

        second, third = build_jobs(parts), build_jobs(parts)  # restarted, on two ingress replicas
        assert second.store.get(job.id).state == "scheduled"
        parts.provider.clock.set(job.plan.start)
        parts.intensity.refresh()
        started = await second.runner.tick() + await third.runner.tick()
        await asyncio.gather(*started)
        assert len(started) == 1
        done = third.service.show(job.id)
        assert done["state"] == "done" and done["results"][0]["parameters"]["request_id"] == f"{job.id}-0"
        second.close()
        third.close()


def test_redis_store_without_a_url_fails_loudly(make_plane, replay_sections):
    replay_sections["jobs"].update(store="redis")
    parts = make_plane(**replay_sections)
    with pytest.raises(BadRequest, match="jobs.redis_url"):
        build_jobs(parts)
