"""What the jobs API does, free of HTTP: submit (checked as /infer checks a body), show, list, cancel."""

from __future__ import annotations

import re
import time
import uuid
from typing import Any, Callable

import orjson

from jobs.callback import check_callback_url
from jobs.model import Job, JobRequest
from jobs.scheduler import Scheduler, expected_run_s
from jobs.settings import JobsSettings
from jobs.store import JobStore
from serving.dataplane import DataPlane
from serving.protocol import decode_body
from wattgate.errors import BadRequest, Conflict, NotFound, PayloadTooLarge

__all__ = ["JobService"]

_JOB_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
# Headers of the submitter that a job's requests keep (routing and accounting read them).
KEPT_HEADERS = ("x-client-region", "x-tenant")


class JobService:
    def __init__(self, settings: JobsSettings, store: JobStore, scheduler: Scheduler, dataplane: DataPlane,
                 regions: Callable[[str], list[str]], on_change: Callable[[], None] | None = None) -> None:
        self.settings = settings
        self.store = store
        self.scheduler = scheduler
        self.dp = dataplane
        self.regions = regions  # variant -> regions of the pools that serve it
        self._on_change = on_change or (lambda: None)

    def submit(self, name: str, version: str | None, body: bytes, headers: dict[str, str]) -> tuple[Job, bool]:
        """Check, plan and store a job; (job, created). A known ``parameters.job_id`` returns that job."""
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
                return self.store.get(job_id, with_results=False), False
            except NotFound:
                pass
        now = self.scheduler.now()
        deadline = self.scheduler.deadline(params.get("deadline"), now)
        callback = params.get("callback_url")
        if callback is not None:
            check_callback_url(callback, self.settings.allow_private_callbacks)
        variant, _ = loaded.card.variant(params.get("variant"))
        run_s, basis = expected_run_s(loaded.card.variants[variant].energy_profile, self.dp.host.hardware,
                                      [req.rows for _, req in checked], loaded.serving.max_batch_size,
                                      self.settings.default_s_per_row)
        regions = self.regions(variant)
        plan = self.scheduler.plan(regions, now, deadline, run_s, check_horizon=True)
        job = Job(
            id=job_id or uuid.uuid4().hex, model=loaded.card.name, version=version, submitted_at=now, deadline=deadline,
            plan=plan, requests_n=len(bodies), rows=sum(req.rows for _, req in checked), expected_run_s=run_s,
            intensity_at_submission=self.scheduler.intensity_now(regions), callback_url=callback,
            headers={k: plain[k] for k in KEPT_HEADERS if k in plain}, created_wall_s=time.time(),
        )
        try:
            self.store.add(job, bodies)
        except Conflict:  # the same job_id submitted twice at once: the first one stands
            return self.store.get(job.id, with_results=False), False
        self._on_change()
        return job, True

    def show(self, job_id: str) -> dict[str, Any]:
        return self.store.get(job_id).to_dict()

    def list(self, state: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        return [j.to_dict(with_results=False) for j in self.store.list_jobs(state, limit)]

    def cancel(self, job_id: str) -> dict[str, Any]:
        job = self.store.cancel(job_id)
        self._on_change()
        return job.to_dict(with_results=False)
