"""HTTP routes of the deferrable-jobs API (the work is in ``jobs/``): submit, show, cancel, list."""

from __future__ import annotations

from urllib.parse import parse_qs

from gateway.admin import json_response as _json
from gateway.routes import Route
from jobs.model import STATES
from jobs.service import JobService
from wattgate.errors import BadRequest



def jobs_routes(service: JobService) -> list[Route]:
    """For HttpApi: POST /v2/models/{name}[/versions/{v}]/jobs, GET and DELETE /v2/jobs/{id} (with a
    tenant key when auth requires one); GET /v2/jobs (every job: admin only)."""

    async def submit(name, version, headers=None, body=b"", **_):
        job, created = service.submit(name, version, body, headers or {})
        return _json(202 if created else 200, job.summary())

    async def show(job_id, **_):
        return _json(200, service.show(job_id))

    async def cancel(job_id, **_):
        return _json(200, service.cancel(job_id))

    async def listing(query="", **_):
        q = parse_qs(query)
        state = (q.get("state") or [None])[0]
        if state is not None and state not in STATES:
            raise BadRequest(f"state must be one of {STATES}")
        try:
            limit = int((q.get("limit") or ["100"])[0])
        except ValueError:
            raise BadRequest("limit must be an integer") from None
        return _json(200, {"jobs": service.list(state, max(1, min(limit, 1000)))})

    return [
        Route("POST", "/v2/models/{name}[/versions/{version}]/jobs", submit, "tenant",
              "Submit deferrable inference (an OIP infer body, or a list, with parameters.deadline)",
              request="Object", status=202),
        Route("GET", "/v2/jobs/{job_id}", show, "tenant", "A job's state and, when done, its results"),
        Route("DELETE", "/v2/jobs/{job_id}", cancel, "tenant", "Cancel a job"),
        Route("GET", "/v2/jobs[/]", listing, "admin", "Every job", query=(("state", "filter by state"), ("limit", "at most"))),
    ]
