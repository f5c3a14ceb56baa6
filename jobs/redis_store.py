"""The job store in Redis (``jobs.store: redis``), for gateways on several nodes: the same
``JobStorage`` promises as the SQLite store, kept by Redis itself.

Each change of state is one Lua script, which Redis runs atomically: ``claim`` moves a due job from
``scheduled`` to ``running`` only if it is still scheduled, so of any number of gateways exactly one
runs it (the job id is the idempotency key); a running job holds a lease its runner renews, and one
whose lease ran out is failed by ``reap``, never run again. No queue of our own: a sorted set by
scheduled time, one by deadline, one by lease, and a hash per job. A finished job's keys expire
after ``jobs.result_ttl_s`` (``purge`` also drops them and their index entries). Redis errors
become ``DependencyError``.

Keys under the prefix ``P``: ``P:job:{id}`` (hash: state, plan, meta ...), ``P:req:{id}`` (bodies),
``P:res:{id}`` (results), ``P:due`` / ``P:deadline`` / ``P:running`` / ``P:finished`` /
``P:created`` (sorted sets), ``P:state:{state}`` (sets), ``P:tenant:{t}`` and ``P:tenant_of``.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Any, Iterator

import redis

from jobs.model import FINISHED, STATES, Job, JobRequest, Plan
from wattgate.errors import Conflict, DependencyError, NotFound

__all__ = ["RedisJobStore"]

_ADD = """
local p, id = ARGV[1], ARGV[2]
local k = p..':job:'..id
if redis.call('EXISTS', k) == 1 then return 0 end
redis.call('HSET', k, 'meta', ARGV[3], 'plan', ARGV[4], 'state', 'scheduled', 'scheduled_s', ARGV[5],
           'cancel_requested', '0', 'error', '')
redis.call('SADD', p..':state:scheduled', id)
redis.call('ZADD', p..':due', ARGV[5], id)
redis.call('ZADD', p..':deadline', ARGV[6], id)
redis.call('ZADD', p..':created', ARGV[7], id)
if ARGV[8] ~= '' then
  redis.call('ZADD', p..':tenant:'..ARGV[8], ARGV[7], id)
  redis.call('HSET', p..':tenant_of', id, ARGV[8])
end
for i = 9, #ARGV, 2 do
  local idx = (i - 9) / 2
  redis.call('HSET', p..':req:'..id, 'b'..idx, ARGV[i], 'm'..idx, ARGV[i + 1])
end
return 1
"""

_CLAIM = """
local p = ARGV[1]
local ids = redis.call('ZRANGEBYSCORE', p..':due', '-inf', ARGV[2], 'LIMIT', 0, tonumber(ARGV[3]))
local out = {}
for _, id in ipairs(ids) do
  local k = p..':job:'..id
  redis.call('ZREM', p..':due', id)
  if redis.call('HGET', k, 'state') == 'scheduled' then
    redis.call('HSET', k, 'state', 'running', 'owner', ARGV[4], 'lease_until_s', ARGV[5], 'started_wall_s', ARGV[6])
    redis.call('SMOVE', p..':state:scheduled', p..':state:running', id)
    redis.call('ZREM', p..':deadline', id)
    redis.call('ZADD', p..':running', ARGV[5], id)
    table.insert(out, id)
  end
end
return out
"""

# finish(prefix, id, to, error, wall, ttl_s, from...): 1 if the job was in one of ``from``.
_FINISH = """
local p, id, to = ARGV[1], ARGV[2], ARGV[3]
local k = p..':job:'..id
local st = redis.call('HGET', k, 'state')
if not st then return 0 end
local ok = false
for i = 7, #ARGV do if ARGV[i] == st then ok = true end end
if not ok then return 0 end
redis.call('HSET', k, 'state', to, 'error', ARGV[4], 'finished_wall_s', ARGV[5])
redis.call('HDEL', k, 'lease_until_s')
redis.call('SMOVE', p..':state:'..st, p..':state:'..to, id)
redis.call('ZREM', p..':due', id)
redis.call('ZREM', p..':deadline', id)
redis.call('ZREM', p..':running', id)
redis.call('ZADD', p..':finished', ARGV[5], id)
local ttl = math.ceil(tonumber(ARGV[6]))
for _, s in ipairs({':job:', ':req:', ':res:'}) do redis.call('EXPIRE', p..s..id, ttl) end
return 1
"""

_RENEW = """
local k = ARGV[1]..':job:'..ARGV[2]
if redis.call('HGET', k, 'state') ~= 'running' or redis.call('HGET', k, 'owner') ~= ARGV[3] then return 0 end
redis.call('HSET', k, 'lease_until_s', ARGV[4])
redis.call('ZADD', ARGV[1]..':running', ARGV[4], ARGV[2])
return 1
"""

_REPLAN = """
local k = ARGV[1]..':job:'..ARGV[2]
if redis.call('HGET', k, 'state') ~= 'scheduled' then return 0 end
redis.call('HSET', k, 'plan', ARGV[3], 'scheduled_s', ARGV[4])
redis.call('ZADD', ARGV[1]..':due', ARGV[4], ARGV[2])
return 1
"""

_REQUEST_CANCEL = """
local k = ARGV[1]..':job:'..ARGV[2]
local st = redis.call('HGET', k, 'state')
if st == 'scheduled' or st == 'running' then redis.call('HSET', k, 'cancel_requested', '1') return 1 end
return 0
"""


def _where(url: str) -> str:
    """The URL for a log line, without its password."""
    try:
        kw = redis.connection.parse_url(url)
    except ValueError:
        return "redis (unparsable URL)"
    return f"redis {kw.get('path') or kw.get('host', '?')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"


def _t(s: float) -> datetime:
    return datetime.fromtimestamp(s, timezone.utc)


def _f(v: bytes | None) -> float | None:
    return None if v is None or v == b"" else float(v)


class RedisJobStore:
    def __init__(self, url: str, prefix: str = "wattgate:jobs", result_ttl_s: float = 24 * 3600.0) -> None:
        self.url = url
        self.where = _where(url)
        self.p = prefix
        self.result_ttl_s = result_ttl_s
        try:
            self._r = redis.Redis.from_url(url, socket_timeout=5.0, socket_connect_timeout=5.0)
            self._scripts = {name: self._r.register_script(src) for name, src in (
                ("add", _ADD), ("claim", _CLAIM), ("finish", _FINISH), ("renew", _RENEW), ("replan", _REPLAN),
                ("cancel", _REQUEST_CANCEL))}
        except (redis.RedisError, ValueError) as exc:
            raise DependencyError(f"cannot use the job store at Redis: {exc}") from exc

    def _call(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except redis.RedisError as exc:
            raise DependencyError(f"job store (Redis): {exc}") from exc

    def _script(self, name: str, *args) -> Any:
        return self._call(self._scripts[name], args=[self.p, *args])

    # -- writing -------------------------------------------------------------------------------
    def add(self, job: Job, requests: list[JobRequest]) -> None:
        meta = {"model": job.model, "version": job.version, "submitted_s": job.submitted_at.timestamp(),
                "deadline_s": job.deadline.timestamp(), "requests_n": job.requests_n, "rows": job.rows,
                "expected_run_s": job.expected_run_s, "intensity_at_submission": job.intensity_at_submission,
                "callback_url": job.callback_url, "headers": job.headers, "created_wall_s": job.created_wall_s,
                "tenant": job.tenant, "key_id": job.key_id}
        bodies: list[Any] = []
        for r in requests:
            bodies += [r.body, json.dumps({"header_length": r.header_length, "content_type": r.content_type})]
        if not self._script("add", job.id, json.dumps(meta), json.dumps(job.plan.to_dict()), job.plan.start.timestamp(),
                            job.deadline.timestamp(), job.created_wall_s, job.tenant or "", *bodies):
            raise Conflict(f"job already exists: {job.id}")

    def replan(self, job_id: str, plan: Plan) -> bool:
        return self._script("replan", job_id, json.dumps(plan.to_dict()), plan.start.timestamp()) == 1

    def claim(self, now: datetime, owner: str, lease_s: float, limit: int = 16) -> list[Job]:
        wall = time.time()
        ids = self._script("claim", now.timestamp(), limit, owner, wall + lease_s, wall)
        return [self.get(i.decode()) for i in ids]

    def renew(self, job_id: str, owner: str, lease_s: float) -> bool:
        return self._script("renew", job_id, owner, time.time() + lease_s) == 1

    def save_result(self, job_id: str, idx: int, result: dict[str, Any]) -> None:
        self._call(self._r.hset, f"{self.p}:res:{job_id}", str(idx), json.dumps(result))

    def finish(self, job_id: str, state: str, error: str | None = None, only_from: tuple[str, ...] = ("running",)) -> bool:
        return self._script("finish", job_id, state, error or "", time.time(), self.result_ttl_s, *only_from) == 1

    def cancel(self, job_id: str) -> Job:
        job = self.get(job_id, with_results=False)
        if job.state == "scheduled" and self.finish(job_id, "cancelled", "cancelled by the client", ("scheduled",)):
            return self.get(job_id)
        self._script("cancel", job_id)
        return self.get(job_id)

    def expire(self, now: datetime) -> list[str]:
        ids = [i.decode() for i in self._call(self._r.zrangebyscore, f"{self.p}:deadline", "-inf", f"({now.timestamp()}")]
        return [i for i in ids if self.finish(i, "expired", "the deadline passed before the job could start", ("scheduled",))]

    def reap(self) -> list[str]:
        ids = [i.decode() for i in self._call(self._r.zrangebyscore, f"{self.p}:running", "-inf", f"({time.time()}")]
        reason = "interrupted: the gateway stopped while the job ran; not run again (a job runs at most once)"
        return [i for i in ids if self.finish(i, "failed", reason)]

    def purge(self, older_than_s: float) -> int:
        ids = [i.decode() for i in self._call(self._r.zrangebyscore, f"{self.p}:finished", "-inf",
                                              time.time() - older_than_s)]
        if not ids:
            return 0
        tenants = self._call(self._r.hmget, f"{self.p}:tenant_of", ids)
        pipe = self._r.pipeline(transaction=True)
        for job_id, tenant in zip(ids, tenants):
            pipe.delete(f"{self.p}:job:{job_id}", f"{self.p}:req:{job_id}", f"{self.p}:res:{job_id}")
            for state in FINISHED:
                pipe.srem(f"{self.p}:state:{state}", job_id)
            pipe.zrem(f"{self.p}:finished", job_id)
            pipe.zrem(f"{self.p}:created", job_id)
            if tenant is not None:
                pipe.zrem(f"{self.p}:tenant:{tenant.decode()}", job_id)
                pipe.hdel(f"{self.p}:tenant_of", job_id)
        self._call(pipe.execute)
        return len(ids)

    # -- reading -------------------------------------------------------------------------------
    def get(self, job_id: str, with_results: bool = True) -> Job:
        h = self._call(self._r.hgetall, f"{self.p}:job:{job_id}")
        if not h:
            raise NotFound(f"no job {job_id[:64]!r}")
        job = _job(job_id, h)
        if with_results:
            stored = self._call(self._r.hgetall, f"{self.p}:res:{job_id}")
            job.results = [json.loads(stored[str(i).encode()]) if str(i).encode() in stored else None
                           for i in range(job.requests_n)]
        return job

    def requests(self, job_id: str) -> Iterator[tuple[int, JobRequest, bool]]:
        h = self._call(self._r.hgetall, f"{self.p}:req:{job_id}")
        done = self._call(self._r.hkeys, f"{self.p}:res:{job_id}")
        n = sum(1 for k in h if k.startswith(b"b"))
        for idx in range(n):
            m = json.loads(h[f"m{idx}".encode()])
            yield idx, JobRequest(h[f"b{idx}".encode()], m["header_length"], m["content_type"]), str(idx).encode() in done

    def _many(self, ids: list[str]) -> list[Job]:
        pipe = self._r.pipeline(transaction=False)
        for i in ids:
            pipe.hgetall(f"{self.p}:job:{i}")
        return [_job(i, h) for i, h in zip(ids, self._call(pipe.execute)) if h]  # an expired job is gone

    def list_jobs(self, state: str | None = None, limit: int = 100, tenant: str | None = None) -> list[Job]:
        index = f"{self.p}:tenant:{tenant}" if tenant is not None else f"{self.p}:created"
        out: list[Job] = []
        start, chunk = 0, max(limit, 100)
        while len(out) < limit:
            ids = [i.decode() for i in self._call(self._r.zrevrange, index, start, start + chunk - 1)]
            if not ids:
                break
            out += [j for j in self._many(ids) if state is None or j.state == state]
            start += chunk
        return out[:limit]

    def counts(self) -> dict[str, int]:
        pipe = self._r.pipeline(transaction=False)
        for s in STATES:
            pipe.scard(f"{self.p}:state:{s}")
        return {s: n for s, n in zip(STATES, self._call(pipe.execute)) if n}

    def oldest_scheduled_wall_s(self) -> float | None:
        ids = list(self._call(self._r.smembers, f"{self.p}:state:scheduled"))
        if not ids:
            return None
        scores = [s for s in self._call(self._r.zmscore, f"{self.p}:created", ids) if s is not None]
        return min(scores) if scores else None

    def scheduled(self) -> list[Job]:
        return self._many(sorted(i.decode() for i in self._call(self._r.smembers, f"{self.p}:state:scheduled")))

    def close(self) -> None:
        self._r.close()


def _job(job_id: str, h: dict[bytes, bytes]) -> Job:
    m = json.loads(h[b"meta"])
    return Job(job_id, m["model"], m["version"], _t(m["submitted_s"]), _t(m["deadline_s"]),
               Plan.from_dict(json.loads(h[b"plan"])), m["requests_n"], m["rows"], m["expected_run_s"],
               m["intensity_at_submission"], h[b"state"].decode(), m["callback_url"], m["headers"], m["created_wall_s"],
               _f(h.get(b"started_wall_s")), _f(h.get(b"finished_wall_s")), (h.get(b"error") or b"").decode() or None,
               h.get(b"cancel_requested") == b"1", tenant=m["tenant"], key_id=m["key_id"])
