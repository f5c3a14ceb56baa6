"""The durable store: a job is claimed by exactly one runner, survives a reopen, and is never run twice."""

from __future__ import annotations

import time
from datetime import datetime, timedelta, timezone

import pytest

from jobs.model import Job, JobRequest, Plan
from jobs.store import JobStore
from wattgate.errors import Conflict, NotFound

T0 = datetime(2020, 3, 2, 17, 0, tzinfo=timezone.utc)


def job(job_id: str, start: datetime = T0, deadline_h: float = 12) -> Job:
    plan = Plan(start, start + timedelta(seconds=1), "shifted", "test", 300.0, "DE", T0)
    return Job(job_id, "digits", None, T0, T0 + timedelta(hours=deadline_h), plan, 2, 2, 0.1, {"DE": 480.0},
               created_wall_s=time.time())


def test_two_runners_on_one_file_claim_a_job_once_and_it_survives_a_reopen(tmp_path):
    path = tmp_path / "jobs.sqlite"
    a, b = JobStore(path), JobStore(path)
    a.add(job("j1", T0 + timedelta(hours=9)), [JobRequest(b"{}"), JobRequest(b"[]")])
    with pytest.raises(Conflict):
        a.add(job("j1"), [JobRequest(b"{}")])
    assert a.claim(T0, "a", 30) == []  # not due yet
    a.close()
    again = JobStore(path)  # a restarted gateway sees the scheduled job
    assert again.get("j1").state == "scheduled" and again.get("j1").plan.start == T0 + timedelta(hours=9)
    due = T0 + timedelta(hours=9)
    won = again.claim(due, "x", 30) + b.claim(due, "y", 30)
    assert [j.id for j in won] == ["j1"] and again.get("j1").state == "running"
    assert [(i, r.body, d) for i, r, d in again.requests("j1")] == [(0, b"{}", False), (1, b"[]", False)]


def test_a_job_whose_runner_died_is_failed_not_rerun_and_keeps_its_results(tmp_path):
    s = JobStore(tmp_path / "jobs.sqlite")
    s.add(job("j2"), [JobRequest(b"{}"), JobRequest(b"{}")])
    assert [j.id for j in s.claim(T0, "dead", lease_s=0.01)]
    s.save_result("j2", 0, {"outputs": []})
    time.sleep(0.05)
    assert s.reap() == ["j2"]
    j = s.get("j2")
    assert j.state == "failed" and "not run again" in j.error and j.results == [{"outputs": []}, None]
    assert s.claim(T0 + timedelta(hours=1), "other", 30) == []


def test_expiry_cancel_and_purge(tmp_path):
    s = JobStore(tmp_path / "jobs.sqlite")
    s.add(job("late", deadline_h=1), [JobRequest(b"{}")])
    s.add(job("c"), [JobRequest(b"{}")])
    assert s.expire(T0 + timedelta(hours=2)) == ["late"] and s.get("late").state == "expired"
    assert s.cancel("c").state == "cancelled"
    assert s.counts() == {"expired": 1, "cancelled": 1}
    assert s.purge(older_than_s=0) == 2
    with pytest.raises(NotFound):
        s.get("c")
