"""The durable energy ledger: one SQLite row per request, appended off the request path in batches.

``append()`` only puts the record on an in-memory queue; a background thread writes queued
records in one transaction every ``flush_interval_s`` or ``flush_size`` records. ``close()``
writes everything still queued, so a clean shutdown loses nothing. SQLite runs in WAL mode so
readers (the CLI, reports) never block the writer.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
import time
from collections import deque
from operator import attrgetter
from pathlib import Path
from typing import Iterator, Sequence

from energy.ledger_export import export_records
# LedgerRecord is re-exported: the gateway and reports import it with EnergyLedger from here.
from energy.ledger_record import FIELDS, JOB_FIELDS, QUALITY_FIELDS, JobRecord, LedgerRecord, QualityRecord
from wattgate.errors import BadRequest, DependencyError

log = logging.getLogger(__name__)

# A flat row in column order; dataclasses.astuple deep-copies every field and cost ~10% of a replica's CPU.
_row = attrgetter(*FIELDS)
_SQL_TYPES = {
    "time_s": "REAL NOT NULL",
    "batch_size": "INTEGER NOT NULL",
    "latency_ms": "REAL NOT NULL",
    "energy_j": "REAL NOT NULL",
    "energy_measured": "INTEGER NOT NULL",
    "intensity_g_per_kwh": "REAL",
    "carbon_g": "REAL",
    "operational_g": "REAL",
    "embodied_g": "REAL NOT NULL",
    "tenant": "TEXT",
    "route_reason": "TEXT",
    "active_j": "REAL NOT NULL DEFAULT 0",
    "idle_j": "REAL NOT NULL DEFAULT 0",
    "intensity_source": "TEXT",
}
GROUPABLE = ("model", "version", "variant", "region", "hardware", "pool", "energy_method", "cache", "tenant", "route_reason")
# 2: active_j, idle_j and intensity_source; carbon may be NULL (no intensity reading); start-up accounts.
# 3: the jobs table (deferrable jobs: decision and counterfactual carbon); accounts.pool (added in place).
# 4: jobs.tenant (added in place).
SCHEMA_VERSION = 4
# startup: a replica's start (model load, warm-up); idle: an autoscaled pool replica's static power
# while provisioned (booked by the replica itself, per pool).
ACCOUNT_KINDS = ("startup", "idle")

_CREATE = (
    "CREATE TABLE IF NOT EXISTS ledger (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    + ", ".join(f"{name} {_SQL_TYPES.get(name, 'TEXT NOT NULL')}" for name in FIELDS)
    + ")"
)
# Energy metered but charged to no request, by kind (start-up: model load, warm-up, framework start).
_CREATE_ACCOUNTS = (
    "CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY AUTOINCREMENT, time_s REAL NOT NULL, "
    "kind TEXT NOT NULL, energy_j REAL NOT NULL, method TEXT NOT NULL, measured INTEGER NOT NULL, pool TEXT)"
)
# Deferrable jobs (jobs/): one row per finished job, keyed by job id (a re-write replaces, never doubles).
_CREATE_JOBS = (
    "CREATE TABLE IF NOT EXISTS jobs (job_id TEXT PRIMARY KEY, time_s REAL NOT NULL, model TEXT NOT NULL, version TEXT, "
    "state TEXT NOT NULL, decision TEXT NOT NULL, plan_reason TEXT NOT NULL, submitted_at TEXT NOT NULL, "
    "scheduled_for TEXT NOT NULL, deadline TEXT NOT NULL, region TEXT, expected_intensity_g_per_kwh REAL, "
    "requests INTEGER NOT NULL, energy_j REAL NOT NULL, carbon_g REAL, counterfactual_carbon_g REAL, tenant TEXT)"
)
# Live quality-guard samples (serving/quality_guard.py): quality next to the carbon it cost and saved.
_QUALITY_TYPES = {"time_s": "REAL NOT NULL", "value": "REAL NOT NULL", "rows": "INTEGER NOT NULL", "energy_j": "REAL NOT NULL",
                  "carbon_g": "REAL", "served_energy_j": "REAL", "accuracy": "REAL", "reference_accuracy": "REAL"}
_CREATE_QUALITY = (
    "CREATE TABLE IF NOT EXISTS quality (id INTEGER PRIMARY KEY AUTOINCREMENT, "
    + ", ".join(f"{name} {_QUALITY_TYPES.get(name, 'TEXT NOT NULL')}" for name in QUALITY_FIELDS)
    + ")"
)
_INSERT_QUALITY = f"INSERT INTO quality ({', '.join(QUALITY_FIELDS)}) VALUES ({', '.join('?' for _ in QUALITY_FIELDS)})"
_quality_row = attrgetter(*QUALITY_FIELDS)
_INSERT = f"INSERT INTO ledger ({', '.join(FIELDS)}) VALUES ({', '.join('?' for _ in FIELDS)})"
_SELECT = f"SELECT {', '.join(FIELDS)} FROM ledger"


def row_to_record(row: Sequence) -> LedgerRecord:
    values = dict(zip(FIELDS, row))
    values["energy_measured"] = bool(values["energy_measured"])
    return LedgerRecord(**values)


class EnergyLedger:
    def __init__(
        self,
        path: str | Path,
        *,
        flush_interval_s: float = 1.0,
        flush_size: int = 500,
        max_pending: int = 100_000,
        background: bool = True,
    ) -> None:
        if flush_interval_s <= 0 or flush_size < 1 or max_pending < 1:
            raise BadRequest("ledger flush interval, flush size and max pending must be positive")
        self.path = Path(path)
        self.flush_interval_s = flush_interval_s
        self.flush_size = flush_size
        self.max_pending = max_pending
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # One connection shared by the writer and the queries, serialised by _db_lock.
            self._conn = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")  # durable at each checkpoint; WAL keeps it consistent
            self._conn.execute("PRAGMA busy_timeout=5000")
            self._migrate()
            self._conn.execute(_CREATE)
            self._conn.execute(_CREATE_ACCOUNTS)
            if "pool" not in [r[1] for r in self._conn.execute("PRAGMA table_info(accounts)")]:
                self._conn.execute("ALTER TABLE accounts ADD COLUMN pool TEXT")  # ledgers before per-pool idle
            self._conn.execute(_CREATE_JOBS)
            if "tenant" not in [r[1] for r in self._conn.execute("PRAGMA table_info(jobs)")]:
                self._conn.execute("ALTER TABLE jobs ADD COLUMN tenant TEXT")  # ledgers before per-tenant jobs
            self._conn.execute(_CREATE_QUALITY)
            self._conn.execute("CREATE INDEX IF NOT EXISTS ledger_time ON ledger (time_s)")
            self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")
        except (OSError, sqlite3.Error) as exc:
            raise DependencyError(f"cannot open the energy ledger at {self.path}: {exc}") from exc
        self._db_lock = threading.Lock()
        self._cond = threading.Condition()
        self._pending: deque[LedgerRecord] = deque()
        self._pending_quality: deque[QualityRecord] = deque()
        self._closed = False
        self.dropped = 0
        self.written = 0
        self._thread: threading.Thread | None = None
        if background:
            self._thread = threading.Thread(target=self._run, name="energy-ledger", daemon=True)
            self._thread.start()

    def _migrate(self) -> None:
        """A version-1 ledger (carbon NOT NULL, no active/idle columns) is copied into the new table."""
        version = self._conn.execute("PRAGMA user_version").fetchone()[0]
        exists = self._conn.execute("SELECT name FROM sqlite_master WHERE type='table' AND name='ledger'").fetchone()
        if not exists or version >= 2:  # 2 -> 3 only adds a table
            return
        old = [r[1] for r in self._conn.execute("PRAGMA table_info(ledger)")]
        kept = ", ".join(c for c in FIELDS if c in old)
        self._conn.execute("BEGIN")
        self._conn.execute("ALTER TABLE ledger RENAME TO ledger_v1")
        self._conn.execute("DROP INDEX IF EXISTS ledger_time")
        self._conn.execute(_CREATE)
        self._conn.execute(f"INSERT INTO ledger ({kept}) SELECT {kept} FROM ledger_v1 ORDER BY id")
        self._conn.execute("DROP TABLE ledger_v1")
        self._conn.execute("COMMIT")

    # -- writing -------------------------------------------------------------------------------

    def record_account(self, kind: str, energy_j: float, method: str, measured: bool, time_s: float | None = None,
                       pool: str | None = None) -> None:
        """Book energy that no request is charged, e.g. a replica's start-up (written at once: rare)."""
        if kind not in ACCOUNT_KINDS:
            raise BadRequest(f"account kind must be one of {ACCOUNT_KINDS}, got {kind!r}")
        with self._db_lock:
            try:
                self._conn.execute(
                    "INSERT INTO accounts (time_s, kind, energy_j, method, measured, pool) VALUES (?, ?, ?, ?, ?, ?)",
                    (time.time() if time_s is None else time_s, kind, float(energy_j), method, int(measured), pool),
                )
            except sqlite3.Error as exc:
                raise DependencyError(f"energy ledger write failed: {exc}") from exc

    def record_job(self, job: JobRecord) -> None:
        """Book a finished deferrable job (written at once: rare)."""
        with self._db_lock:
            try:
                self._conn.execute(
                    f"INSERT OR REPLACE INTO jobs ({', '.join(JOB_FIELDS)}) VALUES ({', '.join('?' for _ in JOB_FIELDS)})",
                    tuple(getattr(job, f) for f in JOB_FIELDS),
                )
            except sqlite3.Error as exc:
                raise DependencyError(f"energy ledger write failed: {exc}") from exc

    def shifted(self, since_s: float | None = None, until_s: float | None = None,
                tenant: str | None = None) -> tuple[int, float, float]:
        """Deferrable jobs finished in ``[since_s, until_s)`` (of ``tenant`` when given) whose carbon and
        counterfactual are both known: (jobs, actual gCO2e, counterfactual gCO2e, i.e. had they run at submission)."""
        where, params = _since(since_s, until_s)
        known = "carbon_g IS NOT NULL AND counterfactual_carbon_g IS NOT NULL"
        if tenant is not None:
            known, params = f"{known} AND tenant = ?", (*params, tenant)
        where = f"{where} AND {known}" if where else f" WHERE {known}"
        n, actual, counterfactual = self._query(
            f"SELECT COUNT(*), COALESCE(SUM(carbon_g), 0), COALESCE(SUM(counterfactual_carbon_g), 0) FROM jobs{where}", params,
        )[0]
        return int(n), float(actual), float(counterfactual)

    def jobs(self, limit: int = 100, tenant: str | None = None) -> list[JobRecord]:
        """Finished jobs (of ``tenant`` when given), newest first."""
        where, params = (" WHERE tenant = ?", (tenant,)) if tenant is not None else ("", ())
        rows = self._query(f"SELECT {', '.join(JOB_FIELDS)} FROM jobs{where} ORDER BY time_s DESC LIMIT ?", (*params, int(limit)))
        return [JobRecord(*r) for r in rows]

    def accounts(self, since_s: float | None = None, until_s: float | None = None) -> list[dict]:
        """Energy booked to no request in ``[since_s, until_s)``, summed per kind, pool and method
        (``pool`` is None for the ingress replicas' own start-up)."""
        where, params = _since(since_s, until_s)
        rows = self._query(f"SELECT kind, pool, method, COUNT(*), COALESCE(SUM(energy_j), 0) FROM accounts{where} "
                           "GROUP BY kind, pool, method ORDER BY kind, pool, method", params)
        return [{"kind": k, "pool": p, "method": m, "entries": n, "energy_j": e} for k, p, m, n, e in rows]

    def append(self, record: LedgerRecord) -> bool:
        """Queue a record; never blocks on disk. False if it was dropped (queue full or ledger closed)."""
        with self._cond:
            if self._closed or len(self._pending) >= self.max_pending:
                self.dropped += 1
                return False
            self._pending.append(record)
            if len(self._pending) >= self.flush_size:
                self._cond.notify()
        return True

    def append_quality(self, record: QualityRecord) -> bool:
        """Queue a quality-guard sample (written with the next batch); False if dropped."""
        with self._cond:
            if self._closed or len(self._pending_quality) >= self.max_pending:
                self.dropped += 1
                return False
            self._pending_quality.append(record)
        return True

    def pending(self) -> int:
        with self._cond:
            return len(self._pending)

    def _run(self) -> None:
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._closed or len(self._pending) >= self.flush_size, self.flush_interval_s)
                stop = self._closed
            try:
                self._write_pending()
            except DependencyError as exc:
                log.warning("energy ledger write failed, will retry: %s", exc)
            if stop:
                return

    def _write_pending(self) -> int:
        # Draining under the db lock keeps rows in append order and makes flush() mean
        # "everything appended before this call is on disk".
        with self._db_lock:
            with self._cond:
                batch = list(self._pending)
                self._pending.clear()
                quality = list(self._pending_quality)
                self._pending_quality.clear()
            if not batch and not quality:
                return 0
            try:
                self._conn.execute("BEGIN")
                self._conn.executemany(_INSERT, [_row(r) for r in batch])
                self._conn.executemany(_INSERT_QUALITY, [_quality_row(r) for r in quality])
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if self._conn.in_transaction:
                    self._conn.execute("ROLLBACK")
                with self._cond:
                    self._pending.extendleft(reversed(batch))
                    self._pending_quality.extendleft(reversed(quality))
                raise DependencyError(f"energy ledger write failed: {exc}") from exc
            self.written += len(batch)
            return len(batch)

    def flush(self) -> int:
        """Write every queued record now; returns how many were written."""
        return self._write_pending()

    def close(self) -> None:
        """Stop the writer and write everything still queued. Idempotent."""
        with self._cond:
            if self._closed:
                return
            self._closed = True
            self._cond.notify_all()
        if self._thread is not None:
            self._thread.join()
        self._write_pending()
        with self._db_lock:
            self._conn.close()

    def __enter__(self) -> "EnergyLedger":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- reading (flushes first, so readers see their own appends) --------------------------------

    def _query(self, sql: str, params: Sequence = ()) -> list[tuple]:
        if not self._closed:
            self.flush()
        with self._db_lock:
            try:
                return self._conn.execute(sql, params).fetchall()
            except sqlite3.Error as exc:
                raise DependencyError(f"energy ledger query failed: {exc}") from exc

    def count(self, since_s: float | None = None) -> int:
        where, params = _since(since_s)
        return int(self._query(f"SELECT COUNT(*) FROM ledger{where}", params)[0][0])

    def records(self, limit: int | None = 100, since_s: float | None = None, until_s: float | None = None) -> list[LedgerRecord]:
        """Records in ``[since_s, until_s)`` (either end open when None), oldest first."""
        where, params = _since(since_s, until_s)
        sql = f"{_SELECT}{where} ORDER BY time_s, id"
        if limit is not None:
            sql += " LIMIT ?"
            params = (*params, int(limit))
        return [row_to_record(r) for r in self._query(sql, params)]

    def iter_records(self, since_s: float | None = None, chunk: int = 10_000) -> Iterator[list[LedgerRecord]]:
        """Records in chunks, oldest first, for exports that must not hold the whole ledger."""
        where, params = _since(since_s)
        last_id = 0
        clause = " AND" if where else " WHERE"
        while True:
            rows = self._query(
                f"SELECT id, {', '.join(FIELDS)} FROM ledger{where}{clause} id > ? ORDER BY id LIMIT ?",
                (*params, last_id, chunk),
            )
            if not rows:
                return
            last_id = rows[-1][0]
            yield [row_to_record(r[1:]) for r in rows]

    def totals(self, since_s: float | None = None, group_by: Sequence[str] = (), until_s: float | None = None) -> list[dict]:
        """Sums per group: requests, energy_j (active_j + idle_j), carbon_g, operational_g, embodied_g,
        mean latency_ms, how many requests had no intensity reading (their carbon is not in the sums),
        and how many the cache answered."""
        group_by = tuple(group_by)
        unknown = [g for g in group_by if g not in GROUPABLE]
        if unknown:
            raise BadRequest(f"cannot group the ledger by {unknown}; choose from {GROUPABLE}")
        where, params = _since(since_s, until_s)
        cols = ", ".join(group_by)
        select = (cols + ", " if cols else "") + (
            "COUNT(*), COALESCE(SUM(energy_j), 0), COALESCE(SUM(active_j), 0), COALESCE(SUM(idle_j), 0), "
            "COALESCE(SUM(carbon_g), 0), COALESCE(SUM(operational_g), 0), "
            "COALESCE(SUM(embodied_g), 0), COALESCE(AVG(latency_ms), 0), SUM(carbon_g IS NULL), "
            "COALESCE(SUM(cache = 'hit'), 0)"
        )
        sql = f"SELECT {select} FROM ledger{where}"
        if group_by:
            sql += f" GROUP BY {cols} ORDER BY {cols}"
        keys = (*group_by, "requests", "energy_j", "active_j", "idle_j", "carbon_g", "operational_g", "embodied_g",
                "mean_latency_ms", "carbon_unknown_requests", "cache_hits")
        return [dict(zip(keys, row)) for row in self._query(sql, params)]

    def tenant_carbon_g(self, tenant: str, since_s: float) -> float:
        """gCO2e charged to a tenant since ``since_s`` (requests of unknown carbon add nothing)."""
        rows = self._query("SELECT COALESCE(SUM(carbon_g), 0) FROM ledger WHERE time_s >= ? AND tenant = ?",
                           (float(since_s), tenant))
        return float(rows[0][0])

    def quality(self, since_s: float | None = None) -> list[dict]:
        """Per model, version, variant and reference: guard samples, their mean quality (by rows), the
        guard's own energy and carbon, and the energy the variant spent on the sampled requests."""
        where, params = _since(since_s)
        rows = self._query(
            "SELECT model, version, variant, reference, metric, COUNT(*), SUM(rows), SUM(value * rows) / SUM(rows), "
            "MIN(value), COALESCE(SUM(energy_j), 0), COALESCE(SUM(carbon_g), 0), SUM(served_energy_j), "
            f"AVG(accuracy), AVG(reference_accuracy) FROM quality{where} "
            "GROUP BY model, version, variant, reference, metric ORDER BY model, version, variant", params)
        keys = ("model", "version", "variant", "reference", "metric", "samples", "rows", "value_mean", "value_min",
                "guard_energy_j", "guard_carbon_g", "served_energy_j", "accuracy", "reference_accuracy")
        return [dict(zip(keys, r)) for r in rows]

    def export(self, path: str | Path, fmt: str = "csv", since_s: float | None = None) -> int:
        """Write records to CSV or Parquet; returns the number of rows written."""
        return export_records(self.iter_records(since_s), path, fmt)


def _since(since_s: float | None, until_s: float | None = None) -> tuple[str, tuple]:
    clauses = [(c, float(v)) for c, v in (("time_s >= ?", since_s), ("time_s < ?", until_s)) if v is not None]
    if not clauses:
        return "", ()
    return " WHERE " + " AND ".join(c for c, _ in clauses), tuple(v for _, v in clauses)
