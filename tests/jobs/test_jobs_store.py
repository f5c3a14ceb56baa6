"""The durable store, SQLite and Redis alike: a job is claimed by exactly one runner, survives a
reopen, and is never run twice."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import datetime, timedelta, timezone

import pytest

from jobs.model import Job, JobRequest, Plan
from jobs.redis_store import RedisJobStore
from jobs.store import JobStore
from tests.redis_server import LocalRedis
from wattgate.errors import Conflict, DependencyError, NotFound

T0 = datetime(2020, 3, 2, 17, 0, tzinfo=timezone.utc)


def job(job_id: str, start: datetime = T0, deadline_h: float = 12) -> Job:
    plan = Plan(start, start + timedelta(seconds=1), "shifted", "test", 300.0, "DE", T0)
    return Job(job_id, "digits", None, T0, T0 + timedelta(hours=deadline_h), plan, 2, 2, 0.1, {"DE": 480.0},
               created_wall_s=time.time())


@pytest.fixture(scope="module")
def redis_server():
    with LocalRedis() as server:
        yield server


@pytest.fixture(params=["sqlite", "redis"])
def opener(request, tmp_path):
    """opener() -> a new store object on the same storage (another gateway, or a restarted one)."""
    opened = []
    prefix = f"test-{uuid.uuid4().hex[:8]}"

    def _open():
        if request.param == "sqlite":
            store = JobStore(tmp_path / "jobs.sqlite")
        else:
            store = RedisJobStore(request.getfixturevalue("redis_server").url, prefix, result_ttl_s=3600)
        opened.append(store)
        return store

    yield _open
    for store in opened:
        store.close()


def test_two_runners_on_one_store_claim_a_job_once_and_it_survives_a_reopen(opener):
    a, b = opener(), opener()
    a.add(job("j1", T0 + timedelta(hours=9)), [JobRequest(b"{}"), JobRequest(b"[]")])
    with pytest.raises(Conflict):
        a.add(job("j1"), [JobRequest(b"{}")])
    assert a.claim(T0, "a", 30) == []  # not due yet
    a.close()
    again = opener()  # a restarted gateway sees the scheduled job
    assert again.get("j1").state == "scheduled" and again.get("j1").plan.start == T0 + timedelta(hours=9)
    due = T0 + timedelta(hours=9)
    won = again.claim(due, "x", 30) + b.claim(due, "y", 30)
    assert [j.id for j in won] == ["j1"] and again.get("j1").state == "running"
    assert [(i, r.body, d) for i, r, d in again.requests("j1")] == [(0, b"{}", False), (1, b"[]", False)]


def test_a_job_whose_runner_died_is_failed_not_rerun_and_keeps_its_results(opener):
    s = opener()
    s.add(job("j2"), [JobRequest(b"{}"), JobRequest(b"{}")])
    assert [j.id for j in s.claim(T0, "dead", lease_s=0.01)]
    s.save_result("j2", 0, {"outputs": []})
    time.sleep(0.05)
    assert s.reap() == ["j2"]
    j = s.get("j2")
    assert j.state == "failed" and "not run again" in j.error and j.results == [{"outputs": []}, None]
    assert s.claim(T0 + timedelta(hours=1), "other", 30) == []


def test_expiry_cancel_and_purge(opener):
    s = opener()
    s.add(job("late", deadline_h=1), [JobRequest(b"{}")])
    s.add(job("c"), [JobRequest(b"{}")])
    assert s.expire(T0 + timedelta(hours=2)) == ["late"] and s.get("late").state == "expired"
    assert s.cancel("c").state == "cancelled"
    assert s.counts() == {"expired": 1, "cancelled": 1}
    assert s.purge(older_than_s=0) == 2
    with pytest.raises(NotFound):
        s.get("c")


def test_concurrent_claimers_run_each_job_exactly_once(opener):
    stores = [opener() for _ in range(4)]
    ids = [f"c{i}" for i in range(40)]
    for i in ids:
        stores[0].add(job(i), [JobRequest(b"{}")])
    won: dict[str, list[str]] = {}
    start = threading.Barrier(len(stores))

    def claimer(n: int) -> None:
        start.wait()
        while True:
            got = stores[n].claim(T0, f"runner-{n}", 30, limit=3)
            if not got:
                return
            won.setdefault(f"runner-{n}", []).extend(j.id for j in got)

    threads = [threading.Thread(target=claimer, args=(n,)) for n in range(len(stores))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    claimed = [i for got in won.values() for i in got]
    assert sorted(claimed) == sorted(ids)  # every job once, none twice
    assert stores[1].counts() == {"running": 40}


def test_renew_replan_tenant_listing_and_cancel_of_a_running_job(opener):
    s = opener()
    a, b = job("a"), job("b", T0 + timedelta(hours=3))
    a.tenant, a.key_id, b.tenant = "team-a", "k1", "team-b"
    s.add(a, [JobRequest(b"\x00binary", 12, "application/octet-stream")])
    s.add(b, [JobRequest(b"{}")])
    assert [j.id for j in s.list_jobs(tenant="team-a")] == ["a"] and s.get("a").key_id == "k1"
    assert sorted(j.id for j in s.list_jobs()) == ["a", "b"] and s.list_jobs(state="running") == []
    moved = Plan(T0 + timedelta(hours=1), T0 + timedelta(hours=1, seconds=1), "shifted", "moved", 200.0, "DE", T0)
    assert s.replan("b", moved) and s.get("b").plan.reason == "moved"
    assert [j.id for j in s.claim(T0 + timedelta(hours=1), "r", 0.05)] == ["a", "b"]
    assert not s.replan("b", moved)  # running: no longer moved
    assert [(i, r.body, r.header_length, r.content_type) for i, r, _ in s.requests("a")] == [
        (0, b"\x00binary", 12, "application/octet-stream")]
    assert s.renew("a", "r", 30) and not s.renew("a", "someone-else", 30)
    time.sleep(0.1)
    assert s.reap() == ["b"]  # a was renewed; b's lease ran out
    assert s.cancel("a").cancel_requested and s.get("a").state == "running"
    assert s.finish("a", "cancelled", "stopped") and not s.finish("a", "done")
    assert s.oldest_scheduled_wall_s() is None and s.counts() == {"cancelled": 1, "failed": 1}


def test_a_redis_outage_is_a_dependency_error():
    with LocalRedis() as server:
        s = RedisJobStore(server.url, "outage")
        s.add(job("x"), [JobRequest(b"{}")])
        server.kill()
        with pytest.raises(DependencyError):
            s.get("x")
        s.close()
