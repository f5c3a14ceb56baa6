"""HTTP routing for the Open Inference Protocol and the admin API; the only layer that knows statuses.

``HttpApi.handle`` takes plain method/path/headers/body and returns status, headers and body, so the
same code serves behind Ray Serve (``gateway/app.py``) and behind a bare ASGI server in tests.
"""

from __future__ import annotations

import json
import logging
import math
import re
from urllib.parse import unquote
from typing import Awaitable, Callable

from gateway.admin import AdminApi, json_response as _json
from gateway.auth import AdminAuth
from gateway.routes import Route
from serving.dataplane import DataPlane
from tenants.audit import AuditLog
from tenants.budgets import BudgetDeferred
from tenants.gate import TenantGate, build_gate
from tenants.hold import AdmissionRefused
from tenants.settings import AuthSettings
from wattgate.errors import Forbidden, NotFound, Unauthorized, Unavailable, WattgateError

log = logging.getLogger("wattgate.http")

Response = tuple[int, dict[str, str], bytes]
BodyReader = Callable[[], Awaitable[bytes]]
_MODEL = "/v2/models/{name}[/versions/{version}]"


def _actor(headers: dict[str, str]) -> str | None:
    """The X-Actor a caller says it acts for (printable ASCII, 128 chars at most), for the audit log."""
    actor = headers.get("x-actor")
    return actor[:128] if actor and actor.isascii() and actor.isprintable() else None


def _short(route: Route, groups: list) -> str:
    """The path with its segments filled in, each cut to 64 characters."""
    values = iter(groups)
    return re.sub(r"\{\w+\}", lambda _: str(next(values, "") or "")[:64], route.template.replace("[", "").replace("]", ""))


def error_response(exc: WattgateError) -> Response:
    status, headers, body = _json(exc.status_code, exc.to_dict())
    retry_after_s = getattr(exc, "retry_after_s", None)  # shed under overload: when to come back
    if retry_after_s is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after_s)))
    return status, headers, body


class HttpApi:
    def __init__(self, dataplane: DataPlane, admin: AdminApi, metrics_text: Callable[[], Awaitable[str]],
                 extra_routes: list[Route] | None = None, gate: TenantGate | None = None,
                 audit: AuditLog | None = None, defer: Callable[..., Awaitable[Response]] | None = None) -> None:
        self.dp = dataplane
        # A deferrable request its tenant's budget defers: handed to the jobs API (202) when it is on.
        self._defer = defer
        self.admin = admin
        self._metrics_text = metrics_text
        self._auth = AdminAuth(dataplane.settings.server)
        self.gate = gate or build_gate(AuthSettings(), None)  # mode off: nobody is asked for a key
        self.audit = audit
        self.routes: list[Route] = [
            Route("POST", _MODEL + "/infer", self._infer, "tenant", "Run inference (JSON or binary tensors)",
                  request="InferRequest", response="InferResponse", admitted=True,
                  content=("application/json", "application/octet-stream")),  # the hot path, matched first
            Route("GET", "/v2", self._server_meta, summary="Server metadata", response="ServerMetadata"),
            Route("GET", "/v2/health/live", self._live, summary="Liveness", response="Live"),
            Route("GET", "/v2/health/ready", self._ready, summary="Readiness", response="Ready"),
            Route("GET", "/v2/models", self._list_models, summary="Loaded models", response="ModelList"),
            Route("GET", _MODEL, self._model_meta, "tenant", "Model metadata", response="ModelMetadata"),
            Route("GET", _MODEL + "/ready", self._model_ready, "tenant", "Model readiness", response="ModelReady"),
            Route("GET", _MODEL + "/config", self._model_config, "tenant", "Model configuration"),
            Route("GET", _MODEL + "/stats", self._model_stats, "tenant", "This replica's model statistics"),
            Route("GET", "/metrics", self._metrics, summary="Prometheus metrics", response="Text", content=("text/plain",)),
            Route("GET", "/v2/openapi.json", self._openapi, summary="This document (OpenAPI 3.1)"),
            Route("POST", "/v2/repository/index", self._repo_index, "admin", "Every registered model version",
                  response="List"),
            Route("POST", "/v2/repository/models/{name}/{action}", self._repo_load, "admin", "Load or unload a model",
                  enums={"action": ("load", "unload")}),
            *admin.routes(),
            *(extra_routes or []),  # the dashboard
        ]
        self._openapi_doc: bytes | None = None

    async def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes | BodyReader, client_host: str | None,
        query: str = "",
    ) -> Response:
        """``body`` is the bytes, or a reader that is awaited only once the caller is admitted: a request
        refused for its key, rate or the tenant's share costs no body read."""
        try:
            for route in self.routes:
                match = route.pattern.fullmatch(path)
                if match is None or route.method != method:
                    continue
                # Segments are matched percent-encoded and decoded one by one, so an encoded "/" stays
                # inside its segment and reaches the name check instead of re-shaping the path.
                groups = [unquote(g) if g is not None else None for g in match.groups()]
                if route.caller:  # a route that authenticates its caller itself (the jobs' owner or the admin)
                    body = body if isinstance(body, bytes) else await body()
                    return await route.handler(*groups, headers=headers, body=body, query=query, client_host=client_host)
                if route.access == "tenant":
                    principal = self.gate.authenticate(headers.get("authorization"), headers.get("x-tenant"), client_host,
                                                       model=groups[0] if "{name}" in route.template else None)
                    if route.admitted:  # infer and the jobs submission: a rate token and an in-flight slot first
                        async with self.gate.admit(principal):
                            body = body if isinstance(body, bytes) else await body()
                            return await route.handler(*groups, headers=headers, body=body, query=query, principal=principal)
                    body = body if isinstance(body, bytes) else await body()
                    return await route.handler(*groups, headers=headers, body=body, query=query, principal=principal)
                body = body if isinstance(body, bytes) else await body()
                if route.access == "admin":
                    return await self._admin(route, groups, headers, body, client_host, query)
                if route.access == "viewer":
                    viewer = self._viewer(headers.get("authorization"), client_host)
                    return await route.handler(*groups, headers=headers, body=body, query=query, viewer=viewer)
                return await route.handler(*groups, headers=headers, body=body, query=query)
            if any(r.pattern.fullmatch(path) for r in self.routes):
                return _json(405, {"error": f"method {method} not allowed on {path}"})
            raise NotFound(f"no route for {method} {path}")
        except AdmissionRefused as exc:  # over quota: answered after its Retry-After (bounded), unchanged
            await self.gate.hold.hold(exc.tenant, exc.retry_after_s)
            return error_response(exc)
        except WattgateError as exc:
            return error_response(exc)
        except Exception:  # a bug must cost one request, never the server
            log.exception("unhandled error on %s %s", method, path)
            return _json(500, {"error": "internal error; see the gateway log"})

    def _viewer(self, authorization: str | None, client_host: str | None) -> str | None:
        """Whose data a read-only view may show: None (everyone's) for the admin, else the one tenant
        the caller's API key names. No key: as the admin API (the admin key, or loopback without one)."""
        if authorization and self.gate.mode != "off" and not self._auth.is_admin_key(authorization):
            principal = self.gate.authenticate(authorization, None, client_host)  # Unauthorized if invalid
            if principal.tenant is not None:
                return principal.tenant
        self._auth.check(authorization, client_host)
        return None

    async def _admin(self, route: Route, groups: list, headers: dict[str, str], body: bytes, client_host: str | None,
                     query: str) -> Response:
        """An admin call: authorised, then (unless it only reads) written to the audit log, whatever its outcome."""
        note: dict = {}  # what the handler adds for the audit log (a key id, a tenant; never a key)
        try:
            who = self._auth.check(headers.get("authorization"), client_host)
            response = await route.handler(*groups, headers=headers, body=body, query=query, note=note)
            status = response[0]
        except WattgateError as exc:
            who, status, response = "unauthenticated", exc.status_code, None
            if not isinstance(exc, (Unauthorized, Forbidden)):
                who = self._auth.who(headers.get("authorization"))
            if self.audit is not None and route.method != "GET":
                self.audit.record(who, f"{route.method} {route.template}", client_host, status, path=_short(route, groups),
                                  actor=_actor(headers), **note)
            raise
        if self.audit is not None and route.method != "GET":
            self.audit.record(who, f"{route.method} {route.template}", client_host, status, path=_short(route, groups),
                              actor=_actor(headers), **note)
        return response

    async def _openapi(self, **_):
        if self._openapi_doc is None:
            from gateway.openapi import openapi_document

            self._openapi_doc = json.dumps(openapi_document(self.routes, self.gate.mode), separators=(",", ":")).encode()
        return 200, {"content-type": "application/json"}, self._openapi_doc

    # -- handlers ----------------------------------------------------------------------------
    async def _server_meta(self, **_):
        return _json(200, self.dp.server_metadata())

    async def _live(self, **_):
        return _json(200, {"live": True})

    async def _ready(self, **_):
        if not self.dp.ready():
            raise Unavailable("no model is ready")
        return _json(200, {"ready": True})

    async def _list_models(self, **_):
        return _json(200, {"models": self.dp.list_models()})

    async def _model_meta(self, name, version, **_):
        return _json(200, self.dp.model_metadata(name, version))

    async def _model_ready(self, name, version, **_):
        self.dp.model_ready(name, version)
        return _json(200, {"name": name, "ready": True})

    async def _model_config(self, name, version, **_):
        loaded = self.dp.host.resolve(name, version)
        card, serving = loaded.card, loaded.serving
        return _json(200, {"name": card.name, "platform": "onnxruntime_onnx", "max_batch_size": serving.max_batch_size,
                           "dynamic_batching": {"max_queue_delay_microseconds": int(serving.batch_wait_timeout_s * 1e6)},
                           "input": [t.model_dump() for t in card.inputs], "output": [t.model_dump() for t in card.outputs]})

    async def _model_stats(self, name, version, **_):
        return _json(200, self.dp.model_stats(name, version))

    async def _infer(self, name, version, headers, body, principal=None, **_):
        try:
            out, out_headers = await self.dp.infer(name, version, body, headers, principal)
        except BudgetDeferred as exc:
            if self._defer is None:
                raise
            return await self._defer(name, version, headers, body, principal, exc)
        return 200, out_headers, out

    async def _metrics(self, **_):
        return 200, {"content-type": "text/plain; version=0.0.4"}, (await self._metrics_text()).encode()

    async def _repo_index(self, **_):
        return _json(200, self.dp.host.index())

    async def _repo_load(self, name, action, note=None, **_):
        await self.admin.load_or_unload(name, action)
        return _json(200, {"name": name, "action": action, "state": self.dp.host.models[name].state})
