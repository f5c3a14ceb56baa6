"""Runs due jobs through the data plane (so routing, energy, carbon and the ledger apply), on spare
capacity, at most once each; books every finished job in the ledger with its counterfactual.

One runner per ingress replica, all on the same store: ``claim`` hands each due job to exactly one.
Each pass (every ``jobs.poll_interval_s``): expire jobs past their deadline, fail jobs whose runner
died (lease), re-plan on a newer forecast (every ``jobs.replan_interval_s``), claim and start due
jobs, purge old results, refresh the gauges. Nothing a job does stops the loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any, Callable

import orjson

from energy.ledger import EnergyLedger
from energy.ledger_record import JobRecord
from jobs.callback import post_callback
from jobs.model import STATES, Job, iso, totals
from jobs.scheduler import Scheduler
from jobs.settings import JobsSettings
from jobs.store import JobStorage
from serving.dataplane import DataPlane, InferAnswer
from serving.protocol import RequestedOutput, encode_infer_response
from tenants.gate import ANONYMOUS, Principal
from tenants.keys import KeyStore
from wattgate.errors import Forbidden, NotFound, Overloaded, Unauthorized, Unavailable, WattgateError
from wattgate.metrics import MetricsRegistry

log = logging.getLogger("wattgate.jobs")

__all__ = ["JobRunner"]


def _json_answer(answer: InferAnswer) -> dict[str, Any]:
    """The OIP response body as JSON (a job's outputs are stored as JSON data, never binary)."""
    requested = [RequestedOutput(o.name, False) for o in answer.requested]
    body, _ = encode_infer_response(answer.model, answer.version, answer.outputs, requested, answer.request_id,
                                    answer.parameters)
    return orjson.loads(body)


def counterfactual_g(params: dict[str, Any], at_submission: dict[str, float]) -> float | None:
    """The request's carbon had it run at submission in the same pool: operational carbon scales with
    the region's intensity then against now; embodied carbon is the same."""
    g_now, region = params.get("intensity_g_per_kwh"), params.get("region")
    operational, embodied = params.get("operational_g"), params.get("embodied_g") or 0.0
    g_then = at_submission.get(region) if region else None
    if not g_now or g_then is None or operational is None:
        return None
    return operational * g_then / g_now + embodied


class JobRunner:
    def __init__(self, settings: JobsSettings, store: JobStorage, scheduler: Scheduler, dataplane: DataPlane,
                 regions: Callable[[str], list[str]], metrics: MetricsRegistry, ledger: EnergyLedger | None = None,
                 owner: str | None = None, keys: KeyStore | None = None) -> None:
        self.settings = settings
        self.store = store
        self.scheduler = scheduler
        self.dp = dataplane
        self.regions = regions
        self.ledger = ledger
        self.keys = keys
        self.owner = owner or uuid.uuid4().hex[:12]
        self._slots = asyncio.Semaphore(settings.max_concurrent_requests)
        self._tasks: set[asyncio.Task] = set()
        self._replanned_at = 0.0
        self._wake = asyncio.Event()
        self._jobs = metrics.gauge("wattgate_jobs", "Deferrable jobs in the store by state", ("state",), merge="max")
        self._age = metrics.gauge("wattgate_jobs_queue_age_seconds",
                                  "Wall seconds since the oldest still-scheduled job was submitted", merge="max")
        self._avoided = metrics.counter("wattgate_shift_carbon_avoided_grams_total",
                                        "gCO2e avoided by running jobs in their window instead of at submission", ("model",))
        self._added = metrics.counter("wattgate_shift_carbon_added_grams_total",
                                      "gCO2e a job's window cost more than running it at submission", ("model",))
        self._finished = metrics.counter("wattgate_jobs_finished_total", "Jobs finished, by final state", ("state",))
        self._waits = metrics.counter("wattgate_jobs_capacity_waits_total",
                                      "Job requests that waited: no pool had spare capacity within the jobs' share")

    def wake(self) -> None:
        """Run a pass now (a job was submitted or cancelled)."""
        self._wake.set()

    async def run_forever(self) -> None:
        while True:
            try:
                await self.tick()
            except Exception:  # nothing crashes the scheduler
                log.exception("job runner pass failed")
            try:
                await asyncio.wait_for(self._wake.wait(), self.settings.poll_interval_s)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()

    async def tick(self) -> list[asyncio.Task]:
        """One pass; returns the tasks of the jobs it started (tests await them)."""
        now = self.scheduler.now()
        for job_id in self.store.expire(now):
            self._finished.inc(state="expired")
            await self._finished_job(self.store.get(job_id))
        for job_id in self.store.reap():
            self._finished.inc(state="failed")
            await self._finished_job(self.store.get(job_id))
        if time.monotonic() - self._replanned_at >= self.settings.replan_interval_s:
            self._replanned_at = time.monotonic()
            self.replan_all()
        started = []
        for job in self.store.claim(now, self.owner, self.settings.lease_s):
            task = asyncio.get_running_loop().create_task(self._run_job(job))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)
            started.append(task)
        self.store.purge(self.settings.result_ttl_s)
        self.refresh_gauges()
        return started

    def replan_all(self) -> int:
        """Re-plan every scheduled job on the newest forecast; how many moved."""
        moved = 0
        for job in self.store.scheduled():
            try:
                plan = self.scheduler.replan(job, self._regions_of(job))
            except Exception as exc:
                log.warning("re-plan of job %s failed: %s", job.id, exc)
                continue
            if plan is not None and self.store.replan(job.id, plan):
                moved += 1
                log.info("job %s moved to %s: %s", job.id, iso(plan.start), plan.reason)
        return moved

    def refresh_gauges(self) -> None:
        counts = self.store.counts()
        for state in STATES:
            self._jobs.set(counts.get(state, 0), state=state)
        oldest = self.store.oldest_scheduled_wall_s()
        self._age.set(0.0 if oldest is None else max(0.0, time.time() - oldest))

    def _regions_of(self, job: Job) -> list[str]:
        try:
            card = self.dp.host.resolve(job.model, job.version).card
            return self.regions(card.default_variant)
        except WattgateError:
            return sorted(job.intensity_at_submission)

    def principal(self, job: Job) -> Principal:
        """The submitter, as it stands now: the tenant with its key's current limits (budget, models).
        A key revoked since, or no longer allowed the model, fails the job (Unauthorized / Forbidden)."""
        if job.tenant is None:
            return ANONYMOUS
        if job.key_id is None or self.keys is None:  # a trusted proxy named the tenant
            return Principal(tenant=job.tenant)
        record = self.keys.records().get(job.key_id)
        if record is None or not record.active:
            raise Unauthorized(f"API key {job.key_id} that submitted the job is revoked")
        principal = Principal(record.tenant, record.key_id, record.limits)
        if not principal.allows(job.model):
            raise Forbidden(f"API key {job.key_id} is no longer allowed to use model {job.model!r}")
        return principal

    async def _run_job(self, job: Job) -> None:
        state, error = "done", None
        try:
            principal = self.principal(job)
            for idx, request, done in self.store.requests(job.id):
                if done:
                    continue
                if self.store.get(job.id, with_results=False).cancel_requested:
                    state, error = "cancelled", "cancelled by the client while running"
                    break
                result = await self._run_request(job, idx, request, principal)
                self.store.save_result(job.id, idx, result)
                self.store.renew(job.id, self.owner, self.settings.lease_s)
        except (NotFound, Unavailable) as exc:  # e.g. the model was unloaded before the job ran
            state, error = "failed", f"{type(exc).__name__}: {exc.message}"
        except WattgateError as exc:
            state, error = "failed", exc.message
        except Exception as exc:
            log.exception("job %s failed", job.id)
            state, error = "failed", f"internal error: {exc}"
        if self.store.finish(job.id, state, error):
            self._finished.inc(state=state)
            self.refresh_gauges()
            await self._finished_job(self.store.get(job.id))

    async def _run_request(self, job: Job, idx: int, request, principal: Principal = ANONYMOUS) -> dict[str, Any]:
        headers = dict(job.headers)
        headers["x-request-id"] = f"{job.id}-{idx}"  # joins the job to its ledger rows
        if request.header_length is not None:
            headers["inference-header-content-length"] = str(request.header_length)
        while True:
            async with self._slots:
                try:
                    answer = await self.dp.serve(job.model, job.version, lambda: self.dp.parse_rest(request.body, headers),
                                                 lambda a: a, headers, principal, deferrable=True)
                    break
                except Overloaded as exc:  # no spare capacity within the jobs' share: yield to live traffic
                    wait_s = exc.retry_after_s
            self._waits.inc()
            self.store.renew(job.id, self.owner, self.settings.lease_s)
            await asyncio.sleep(min(wait_s, self.settings.poll_interval_s))
        result = _json_answer(answer)
        result["counterfactual_carbon_g"] = counterfactual_g(answer.parameters, job.intensity_at_submission)
        return result

    async def _finished_job(self, job: Job) -> None:
        t = totals(job.results)
        if t["carbon_avoided_g"] is not None:
            (self._avoided if t["carbon_avoided_g"] >= 0 else self._added).inc(abs(t["carbon_avoided_g"]), model=job.model)
        if self.ledger is not None:
            try:
                self.ledger.record_job(JobRecord(
                    job.id, time.time(), job.model, job.version, job.state, job.plan.decision, job.plan.reason,
                    iso(job.submitted_at), iso(job.plan.start), iso(job.deadline), job.plan.region,
                    job.plan.expected_g_per_kwh, job.requests_n, t["energy_j"], t["carbon_g"], t["counterfactual_carbon_g"],
                    job.tenant,
                ))
            except WattgateError as exc:
                log.warning("ledger: job %s not booked: %s", job.id, exc)
        if job.callback_url:
            await post_callback(job.callback_url, job.to_dict(with_results=False) | {"totals": t},
                                self.settings.allow_private_callbacks, self.settings.callback_timeout_s)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
