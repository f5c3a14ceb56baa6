"""HTTP routes of the deferrable-jobs API (the work is in ``jobs/``): submit, show, cancel, list; and
the answer to a request its tenant's budget defers (``202`` and the job it became).

Who sees a job: the tenant that submitted it (its API key, or a trusted proxy's X-Tenant) and the
admin (``server.admin_api_key``, or a loopback caller when no admin key is set). Another tenant's
job is 404, the same as an unknown id, so ids do not leak; listing without a tenant or admin is 403.
"""

from __future__ import annotations

from urllib.parse import parse_qs, quote

from gateway.admin import json_response as _json
from gateway.auth import AdminAuth
from gateway.routes import Route
from jobs.model import STATES
from jobs.service import ADMIN, Caller, JobService
from tenants.budgets import BudgetDeferred
from tenants.gate import Principal, TenantGate, build_gate
from tenants.keys import check_tenant
from tenants.settings import AuthSettings
from wattgate.errors import BadRequest, Forbidden, Unauthorized

__all__ = ["deferred_response", "jobs_routes", "resolve_caller"]


def resolve_caller(gate: TenantGate, admin: AdminAuth, headers: dict[str, str], client_host: str | None) -> Caller:
    """The admin key wins; then a tenant key (a bad one is 401); then, with no tenant, the loopback
    admin rule; else a caller of no tenant (mode off or optional), or 401 when auth requires a key."""
    authorization = headers.get("authorization")
    if authorization:
        try:
            if admin.check(authorization, client_host) == "admin-key":
                return ADMIN
        except (Unauthorized, Forbidden):
            pass  # not the admin key: maybe a tenant's
    try:
        principal: Principal | None = gate.authenticate(authorization, headers.get("x-tenant"), client_host)
    except Unauthorized:
        if authorization:
            raise
        principal = None  # auth required and no key sent: only the admin rule is left
    if principal is not None and principal.tenant is not None:
        return Caller(principal.tenant)
    try:
        admin.check(authorization, client_host)
        return ADMIN
    except (Unauthorized, Forbidden):
        if principal is None:
            raise Unauthorized("jobs: send 'Authorization: Bearer <API key>' (or the admin key)") from None
        return Caller()


def deferred_response(service: JobService):
    """For HttpApi: a deferrable request its tenant's budget defers becomes that tenant's job, due by
    the budget's ``defer_deadline_s`` (cut to the forecast's horizon): ``202``, the job and its Location."""

    async def defer(name, version, headers, body, principal: Principal, exc: BudgetDeferred):
        job, _ = service.submit(name, version, body, headers, principal, default_deadline_s=exc.deadline_s)
        status, out_headers, out = _json(202, job.summary() | {"deferred": exc.message})
        out_headers["location"] = f"/v2/jobs/{quote(job.id, safe='')}"
        return status, out_headers, out

    return defer


def jobs_routes(service: JobService, gate: TenantGate | None = None, admin: AdminAuth | None = None) -> list[Route]:
    """For HttpApi: POST /v2/models/{name}[/versions/{v}]/jobs (with a tenant key when auth requires
    one), GET and DELETE /v2/jobs/{id} and GET /v2/jobs (a tenant's own jobs; the admin's: all).
    No gate: auth off, as HttpApi's default."""
    gate = gate or build_gate(AuthSettings(), None)
    admin = admin or AdminAuth(service.dp.settings.server)

    def caller(headers, client_host) -> Caller:
        return resolve_caller(gate, admin, headers or {}, client_host)

    async def submit(name, version, headers=None, body=b"", principal=None, **_):
        job, created = service.submit(name, version, body, headers or {}, principal or Principal())
        out = _json(202 if created else 200, job.summary())
        out[1]["location"] = f"/v2/jobs/{quote(job.id, safe='')}"
        return out

    async def show(job_id, headers=None, client_host=None, **_):
        return _json(200, service.show(job_id, caller(headers, client_host)))

    async def cancel(job_id, headers=None, client_host=None, **_):
        return _json(200, service.cancel(job_id, caller(headers, client_host)))

    async def listing(query="", headers=None, client_host=None, **_):
        who = caller(headers, client_host)
        q = parse_qs(query)
        state = (q.get("state") or [None])[0]
        if state is not None and state not in STATES:
            raise BadRequest(f"state must be one of {STATES}")
        try:
            limit = int((q.get("limit") or ["100"])[0])
        except ValueError:
            raise BadRequest("limit must be an integer") from None
        tenant = (q.get("tenant") or [None])[0]
        if tenant is not None:
            check_tenant(tenant)
        if not who.admin:
            if who.tenant is None:
                raise Forbidden("listing jobs needs a tenant's API key or the admin")
            if tenant is not None and tenant != who.tenant:
                raise Forbidden("a tenant lists its own jobs only")
        return _json(200, {"jobs": service.list(state, max(1, min(limit, 1000)), who, tenant)})

    return [
        Route("POST", "/v2/models/{name}[/versions/{version}]/jobs", submit, "tenant",
              "Submit deferrable inference (an OIP infer body, or a list, with parameters.deadline)",
              request="Object", status=202, admitted=True),
        Route("GET", "/v2/jobs/{job_id}", show, "tenant", "A job's state and, when done, its results", caller=True),
        Route("DELETE", "/v2/jobs/{job_id}", cancel, "tenant", "Cancel a job", caller=True),
        Route("GET", "/v2/jobs[/]", listing, "tenant", "Jobs, newest first: a tenant's own; the admin's, all",
              query=(("state", "filter by state"), ("limit", "at most"), ("tenant", "admin: one tenant's jobs")),
              caller=True),
    ]
