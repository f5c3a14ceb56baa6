"""The durable job store: SQLite on disk under ``server.state_dir``, shared by a node's ingress replicas
(``JobStore``); ``jobs/redis_store.py`` keeps the same ``JobStorage`` interface in Redis for gateways
on several nodes.

Run-once: a job moves ``scheduled -> running`` only through :meth:`JobStore.claim`, one
``UPDATE ... WHERE state = 'scheduled'`` per job, so of several replicas (or a restarted gateway)
exactly one wins; the job id is the idempotency key. A running job carries a lease its runner
renews; a job whose lease ran out (its gateway stopped mid-run) is failed by :meth:`reap`, never
run again, and keeps the results it had finished. SQLite errors become ``DependencyError``.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Protocol

from jobs.model import FINISHED, Job, JobRequest, Plan
from wattgate.errors import Conflict, DependencyError, NotFound

__all__ = ["JobStorage", "JobStore"]


class JobStorage(Protocol):
    """What the jobs room needs of a store. Every backend keeps the same promises: ``claim`` hands a
    due job to exactly one claimer (the job id is the idempotency key); a running job whose lease
    ran out is failed by ``reap`` and never run again; finished jobs are purged after their TTL."""

    def add(self, job: Job, requests: list[JobRequest]) -> None: ...
    def replan(self, job_id: str, plan: Plan) -> bool: ...
    def claim(self, now: datetime, owner: str, lease_s: float, limit: int = 16) -> list[Job]: ...
    def renew(self, job_id: str, owner: str, lease_s: float) -> bool: ...
    def save_result(self, job_id: str, idx: int, result: dict[str, Any]) -> None: ...
    def finish(self, job_id: str, state: str, error: str | None = None,
               only_from: tuple[str, ...] = ("running",)) -> bool: ...
    def cancel(self, job_id: str) -> Job: ...
    def expire(self, now: datetime) -> list[str]: ...
    def reap(self) -> list[str]: ...
    def purge(self, older_than_s: float) -> int: ...
    def get(self, job_id: str, with_results: bool = True) -> Job: ...
    def requests(self, job_id: str) -> Iterator[tuple[int, JobRequest, bool]]: ...
    def list_jobs(self, state: str | None = None, limit: int = 100, tenant: str | None = None) -> list[Job]: ...
    def counts(self) -> dict[str, int]: ...
    def oldest_scheduled_wall_s(self) -> float | None: ...
    def scheduled(self) -> list[Job]: ...
    def close(self) -> None: ...

_SCHEMA = (
    "CREATE TABLE IF NOT EXISTS jobs (id TEXT PRIMARY KEY, model TEXT NOT NULL, version TEXT, state TEXT NOT NULL, "
    "submitted_s REAL NOT NULL, deadline_s REAL NOT NULL, scheduled_s REAL NOT NULL, plan TEXT NOT NULL, "
    "requests_n INTEGER NOT NULL, rows INTEGER NOT NULL, expected_run_s REAL NOT NULL, intensity_at_submission TEXT NOT NULL, "
    "callback_url TEXT, headers TEXT NOT NULL, created_wall_s REAL NOT NULL, started_wall_s REAL, "
    "finished_wall_s REAL, owner TEXT, lease_until_s REAL, error TEXT, cancel_requested INTEGER NOT NULL DEFAULT 0, "
    "tenant TEXT, key_id TEXT)",
    "CREATE INDEX IF NOT EXISTS jobs_due ON jobs (state, scheduled_s)",
    "CREATE TABLE IF NOT EXISTS job_requests (job_id TEXT NOT NULL, idx INTEGER NOT NULL, body BLOB NOT NULL, "
    "header_length INTEGER, content_type TEXT, result TEXT, PRIMARY KEY (job_id, idx))",
)
# Columns added after the first release, and their type: an older store gains them when opened
# (its rows read NULL: jobs of no tenant, visible to admins only once auth is on).
_ADDED = (("tenant", "TEXT"), ("key_id", "TEXT"))
_INDEXES = ("CREATE INDEX IF NOT EXISTS jobs_tenant ON jobs (tenant, created_wall_s)",)
_COLS = ("id, model, version, state, submitted_s, deadline_s, plan, requests_n, rows, expected_run_s, "
         "intensity_at_submission, callback_url, headers, created_wall_s, started_wall_s, finished_wall_s, error, "
         "cancel_requested, tenant, key_id")


def _t(s: float) -> datetime:
    return datetime.fromtimestamp(s, timezone.utc)


class JobStore:
    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.where = str(self.path)
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=FULL")  # a 202 means the job is on disk
            self._conn.execute("PRAGMA busy_timeout=5000")
            for sql in _SCHEMA:
                self._conn.execute(sql)
            self._migrate()
        except (OSError, sqlite3.Error) as exc:
            raise DependencyError(f"cannot open the job store at {self.path}: {exc}") from exc
        self._lock = threading.Lock()

    def _migrate(self) -> None:
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(jobs)").fetchall()}
        for name, kind in _ADDED:
            if name not in have:
                self._conn.execute(f"ALTER TABLE jobs ADD COLUMN {name} {kind}")
        for sql in _INDEXES:
            self._conn.execute(sql)

    def _run(self, sql: str, params: tuple = (), many: list[tuple] | None = None) -> sqlite3.Cursor:
        with self._lock:
            try:
                return self._conn.executemany(sql, many) if many is not None else self._conn.execute(sql, params)
            except sqlite3.Error as exc:
                raise DependencyError(f"job store: {exc}") from exc

    def _tx(self, statements: list[tuple[str, tuple | list]]) -> None:
        with self._lock:
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                for sql, params in statements:
                    if isinstance(params, list):
                        self._conn.executemany(sql, params)
                    else:
                        self._conn.execute(sql, params)
                self._conn.execute("COMMIT")
            except sqlite3.IntegrityError as exc:
                self._conn.execute("ROLLBACK")
                raise Conflict(f"job already exists: {exc}") from None
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                raise DependencyError(f"job store: {exc}") from exc

    # -- writing -------------------------------------------------------------------------------
    def add(self, job: Job, requests: list[JobRequest]) -> None:
        """Store a new job and its request bodies in one transaction; Conflict if the id exists."""
        self._tx([
            ("INSERT INTO jobs (id, model, version, state, submitted_s, deadline_s, scheduled_s, plan, requests_n, rows, "
             "expected_run_s, intensity_at_submission, callback_url, headers, created_wall_s, tenant, key_id) "
             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
             (job.id, job.model, job.version, job.state, job.submitted_at.timestamp(), job.deadline.timestamp(),
              job.plan.start.timestamp(), json.dumps(job.plan.to_dict()), job.requests_n, job.rows, job.expected_run_s,
              json.dumps(job.intensity_at_submission), job.callback_url, json.dumps(job.headers), job.created_wall_s,
              job.tenant, job.key_id)),
            ("INSERT INTO job_requests (job_id, idx, body, header_length, content_type) VALUES (?, ?, ?, ?, ?)",
             [(job.id, i, r.body, r.header_length, r.content_type) for i, r in enumerate(requests)]),
        ])

    def replan(self, job_id: str, plan: Plan) -> bool:
        """Move a still-scheduled job's window; False if it is no longer scheduled."""
        cur = self._run("UPDATE jobs SET plan = ?, scheduled_s = ? WHERE id = ? AND state = 'scheduled'",
                        (json.dumps(plan.to_dict()), plan.start.timestamp(), job_id))
        return cur.rowcount == 1

    def claim(self, now: datetime, owner: str, lease_s: float, limit: int = 16) -> list[Job]:
        """Jobs due at ``now`` (provider clock), each moved to running for ``owner`` by exactly one claimer."""
        due = [r[0] for r in self._run(
            "SELECT id FROM jobs WHERE state = 'scheduled' AND scheduled_s <= ? ORDER BY scheduled_s LIMIT ?",
            (now.timestamp(), limit)).fetchall()]
        claimed = []
        wall = time.time()
        for job_id in due:
            cur = self._run("UPDATE jobs SET state = 'running', owner = ?, lease_until_s = ?, started_wall_s = ? "
                            "WHERE id = ? AND state = 'scheduled'", (owner, wall + lease_s, wall, job_id))
            if cur.rowcount == 1:
                claimed.append(self.get(job_id))
        return claimed

    def renew(self, job_id: str, owner: str, lease_s: float) -> bool:
        cur = self._run("UPDATE jobs SET lease_until_s = ? WHERE id = ? AND owner = ? AND state = 'running'",
                        (time.time() + lease_s, job_id, owner))
        return cur.rowcount == 1

    def save_result(self, job_id: str, idx: int, result: dict[str, Any]) -> None:
        self._run("UPDATE job_requests SET result = ? WHERE job_id = ? AND idx = ?", (json.dumps(result), job_id, idx))

    def finish(self, job_id: str, state: str, error: str | None = None, only_from: tuple[str, ...] = ("running",)) -> bool:
        """Move a job to a finished state from one of ``only_from``; False if it was elsewhere."""
        marks = ",".join("?" for _ in only_from)
        cur = self._run(f"UPDATE jobs SET state = ?, error = ?, finished_wall_s = ?, lease_until_s = NULL "
                        f"WHERE id = ? AND state IN ({marks})", (state, error, time.time(), job_id, *only_from))
        return cur.rowcount == 1

    def cancel(self, job_id: str) -> Job:
        """Cancel a scheduled job at once; a running one stops before its next request."""
        job = self.get(job_id)
        if job.state == "scheduled" and self.finish(job_id, "cancelled", "cancelled by the client", ("scheduled",)):
            return self.get(job_id)
        if job.state in ("scheduled", "running"):
            self._run("UPDATE jobs SET cancel_requested = 1 WHERE id = ?", (job_id,))
        return self.get(job_id)

    def expire(self, now: datetime) -> list[str]:
        """Scheduled jobs whose deadline passed before they could start (e.g. the gateway was down)."""
        ids = [r[0] for r in self._run("SELECT id FROM jobs WHERE state = 'scheduled' AND deadline_s < ?",
                                       (now.timestamp(),)).fetchall()]
        return [i for i in ids if self.finish(i, "expired", "the deadline passed before the job could start", ("scheduled",))]

    def reap(self) -> list[str]:
        """Running jobs whose runner stopped renewing the lease: failed, never run again (at most once)."""
        ids = [r[0] for r in self._run("SELECT id FROM jobs WHERE state = 'running' AND lease_until_s < ?",
                                       (time.time(),)).fetchall()]
        reason = "interrupted: the gateway stopped while the job ran; not run again (a job runs at most once)"
        return [i for i in ids if self.finish(i, "failed", reason)]

    def purge(self, older_than_s: float) -> int:
        cutoff = time.time() - older_than_s
        marks = ",".join("?" for _ in FINISHED)
        ids = [r[0] for r in self._run(f"SELECT id FROM jobs WHERE state IN ({marks}) AND finished_wall_s < ?",
                                       (*FINISHED, cutoff)).fetchall()]
        if ids:
            self._tx([("DELETE FROM job_requests WHERE job_id = ?", [(i,) for i in ids]),
                      ("DELETE FROM jobs WHERE id = ?", [(i,) for i in ids])])
        return len(ids)

    # -- reading -------------------------------------------------------------------------------
    def get(self, job_id: str, with_results: bool = True) -> Job:
        row = self._run(f"SELECT {_COLS} FROM jobs WHERE id = ?", (job_id,)).fetchone()
        if row is None:
            raise NotFound(f"no job {job_id[:64]!r}")
        job = _job(row)
        if with_results:
            job.results = [None if r[0] is None else json.loads(r[0]) for r in self._run(
                "SELECT result FROM job_requests WHERE job_id = ? ORDER BY idx", (job_id,)).fetchall()]
        return job

    def requests(self, job_id: str) -> Iterator[tuple[int, JobRequest, bool]]:
        """(index, request, already done) in order: a resumed reader skips what finished."""
        rows = self._run("SELECT idx, body, header_length, content_type, result IS NOT NULL FROM job_requests "
                         "WHERE job_id = ? ORDER BY idx", (job_id,)).fetchall()
        for idx, body, hl, ct, done in rows:
            yield idx, JobRequest(bytes(body), hl, ct), bool(done)

    def list_jobs(self, state: str | None = None, limit: int = 100, tenant: str | None = None) -> list[Job]:
        """Newest first; ``tenant``: only that tenant's jobs."""
        conds = [(c, v) for c, v in (("state = ?", state), ("tenant = ?", tenant)) if v is not None]
        where = (" WHERE " + " AND ".join(c for c, _ in conds)) if conds else ""
        rows = self._run(f"SELECT {_COLS} FROM jobs{where} ORDER BY created_wall_s DESC LIMIT ?",
                         (*(v for _, v in conds), limit)).fetchall()
        return [_job(r) for r in rows]

    def counts(self) -> dict[str, int]:
        return {s: n for s, n in self._run("SELECT state, COUNT(*) FROM jobs GROUP BY state").fetchall()}

    def oldest_scheduled_wall_s(self) -> float | None:
        row = self._run("SELECT MIN(created_wall_s) FROM jobs WHERE state = 'scheduled'").fetchone()
        return row[0]

    def scheduled(self) -> list[Job]:
        return [_job(r) for r in self._run(f"SELECT {_COLS} FROM jobs WHERE state = 'scheduled'").fetchall()]

    def close(self) -> None:
        with self._lock:
            self._conn.close()


def _job(row: tuple) -> Job:
    (id_, model, version, state, submitted_s, deadline_s, plan, requests_n, rows, run_s, at_sub, callback, headers,
     created, started, finished, error, cancel, tenant, key_id) = row
    return Job(id_, model, version, _t(submitted_s), _t(deadline_s), Plan.from_dict(json.loads(plan)), requests_n, rows,
               run_s, json.loads(at_sub), state, callback, json.loads(headers), created, started, finished, error, bool(cancel),
               tenant=tenant, key_id=key_id)
