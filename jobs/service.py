"""What the jobs API does, free of HTTP: submit (checked as /infer checks a body), show, list, cancel."""

from __future__ import annotations

import re
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable

import orjson

from jobs.callback import check_callback_url
from jobs.model import Job, JobRequest
from jobs.scheduler import Scheduler, expected_run_s
from jobs.settings import JobsSettings
from jobs.store import JobStorage
from serving.dataplane import DataPlane
from serving.protocol import decode_body
from tenants.gate import ANONYMOUS, Principal
from wattgate.errors import BadRequest, Conflict, NotFound, PayloadTooLarge

__all__ = ["ADMIN", "Caller", "JobService"]

_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Headers of the submitter that a job's requests keep (routing reads them). The tenant is not a
# header: it comes from the submitter's key (``Job.tenant``), never from a header anyone can set.
KEPT_HEADERS = ("x-client-region",)


@dataclass(frozen=True)
class Caller:
    """Who reads or cancels jobs: an admin sees every job, anyone else only its tenant's (a caller
    with no tenant: the jobs of no tenant). Another tenant's job is 404, so job ids do not leak."""

    tenant: str | None = None
    admin: bool = False

    def sees(self, job: Job) -> bool:
        return self.admin or job.tenant == self.tenant


ADMIN = Caller(admin=True)


class JobService:
    def __init__(self, settings: JobsSettings, store: JobStorage, scheduler: Scheduler, dataplane: DataPlane,
                 regions: Callable[[str], list[str]], on_change: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.scheduler = scheduler
        self.dp = dataplane
        self.regions = regions  # variant -> regions of the pools that serve it
        self._on_change = on_change or (lambda: None)

    def submit(self, name: str, version: str | None, body: bytes, headers: dict[str, str],
               principal: Principal = ANONYMOUS, default_deadline_s: float | None = None) -> tuple[Job, bool]:
        """Check, plan and store a job of ``principal``'s tenant; (job, created). A known
        ``parameters.job_id`` (of the same tenant) returns that job. ``default_deadline_s``: the deadline
        when the body names none (a request deferred by its tenant's budget), cut to the forecast's horizon."""
        limit = self.dp.settings.server.max_request_bytes
        if len(body) > limit:
            raise PayloadTooLarge(f"request body of {len(body)} bytes exceeds the {limit}-byte limit")
        body = decode_body(body, headers.get("content-encoding"), limit)
        plain = {k: v for k, v in headers.items() if k != "content-encoding"}
        header_length = headers.get("inference-header-content-length")
        bodies: list[JobRequest]
        if header_length is None and body.lstrip()[:1] == b"[":
            try:
                docs = orjson.loads(body)
            except orjson.JSONDecodeError as exc:
                raise BadRequest(f"request body is not valid JSON: {exc}") from None
            if not docs:
                raise BadRequest("a job needs at least one infer request")
            if len(docs) > self.settings.max_requests_per_job:
                raise PayloadTooLarge(f"a job holds at most {self.settings.max_requests_per_job} requests "
                                      f"(jobs.max_requests_per_job), got {len(docs)}")
            if not all(isinstance(d, dict) for d in docs):
                raise BadRequest("every item of a job's list must be an infer request object")
            bodies = [JobRequest(orjson.dumps(d), None, "application/json") for d in docs]
        else:
            bodies = [JobRequest(body, int(header_length) if header_length and header_length.isdigit() else None,
                                 headers.get("content-type"))]
        checked = []
        for r in bodies:
            h = dict(plain)
            h.pop("inference-header-content-length", None)
            if r.header_length is not None:
                h["inference-header-content-length"] = str(r.header_length)
            checked.append(self.dp.check(name, version, r.body, h))  # the same 4xx as /infer
        loaded, first = checked[0]
        params = first.parameters
        job_id = params.get("job_id")
        if job_id is not None:
            if not isinstance(job_id, str) or not _JOB_ID.fullmatch(job_id):
                raise BadRequest("parameters.job_id must match [A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
            try:
                known = self.store.get(job_id, with_results=False)
            except NotFound:
                known = None
            if known is not None:
                if known.tenant != principal.tenant:  # another tenant's id: not ours to show, nor to reuse
                    raise Conflict(f"parameters.job_id {job_id!r} is taken; choose another")
                return known, False
        now = self.scheduler.now()
        variant, _ = loaded.card.variant(params.get("variant"))
        regions = self.regions(variant)
        wanted = params.get("deadline")
        if wanted is None and default_deadline_s is not None:
            wanted = self.scheduler.within_horizon(regions, now, default_deadline_s)
        deadline = self.scheduler.deadline(wanted, now)
        callback = params.get("callback_url")
        if callback is not None:
            check_callback_url(callback, self.settings.allow_private_callbacks)
        run_s, basis = expected_run_s(loaded.card.variants[variant].energy_profile, self.dp.host.hardware,
                                      [req.rows for _, req in checked], loaded.serving.max_batch_size,
                                      self.settings.default_s_per_row)
        plan = self.scheduler.plan(regions, now, deadline, run_s, check_horizon=True)
        job = Job(
            id=job_id or uuid.uuid4().hex, model=loaded.card.name, version=version, submitted_at=now, deadline=deadline,
            plan=plan, requests_n=len(bodies), rows=sum(req.rows for _, req in checked), expected_run_s=run_s,
            intensity_at_submission=self.scheduler.intensity_now(regions), callback_url=callback,
            headers={k: plain[k] for k in KEPT_HEADERS if k in plain}, created_wall_s=time.time(),
            tenant=principal.tenant, key_id=principal.key_id,
        )
        try:
            self.store.add(job, bodies)
        except Conflict:  # the same job_id submitted twice at once: the first one stands
            return self.store.get(job.id, with_results=False), False
        self._on_change()
        return job, True

    def _visible(self, job_id: str, caller: Caller, with_results: bool = True) -> Job:
        job = self.store.get(job_id, with_results)
        if not caller.sees(job):
            raise NotFound(f"no job {job_id[:64]!r}")  # the same words as an unknown id
        return job

    def show(self, job_id: str, caller: Caller = ADMIN) -> dict[str, Any]:
        return self._visible(job_id, caller).to_dict()

    def list(self, state: str | None = None, limit: int = 100, caller: Caller = ADMIN,
             tenant: str | None = None) -> list[dict[str, Any]]:
        """Newest first: a tenant's own jobs; an admin's, every job or ``tenant``'s."""
        if not caller.admin:
            tenant = caller.tenant
        return [j.to_dict(with_results=False) for j in self.store.list_jobs(state, limit, tenant)]

    def cancel(self, job_id: str, caller: Caller = ADMIN) -> dict[str, Any]:
        self._visible(job_id, caller, with_results=False)
        job = self.store.cancel(job_id)
        self._on_change()
        return job.to_dict(with_results=False)
