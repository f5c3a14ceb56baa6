"""HTTP routing for the Open Inference Protocol and the admin API; the only layer that knows statuses.

``HttpApi.handle`` takes plain method/path/headers/body and returns status, headers and body, so the
same code serves behind Ray Serve (``gateway/app.py``) and behind a bare ASGI server in tests.
"""

from __future__ import annotations

import logging
import math
import re
from urllib.parse import unquote
from typing import Awaitable, Callable

from gateway.admin import AdminApi, json_response as _json
from gateway.auth import AdminAuth
from serving.dataplane import DataPlane
from wattgate.errors import NotFound, Unavailable, WattgateError

log = logging.getLogger("wattgate.http")

Response = tuple[int, dict[str, str], bytes]
_SEG = r"([^/]+)"
_MODEL = rf"/v2/models/{_SEG}(?:/versions/{_SEG})?"


def error_response(exc: WattgateError) -> Response:
    status, headers, body = _json(exc.status_code, exc.to_dict())
    retry_after_s = getattr(exc, "retry_after_s", None)  # shed under overload: when to come back
    if retry_after_s is not None:
        headers["retry-after"] = str(max(1, math.ceil(retry_after_s)))
    return status, headers, body


class HttpApi:
    def __init__(self, dataplane: DataPlane, admin: AdminApi, metrics_text: Callable[[], Awaitable[str]],
                 extra_routes: list[tuple[str, re.Pattern, Callable, bool]] | None = None) -> None:
        self.dp = dataplane
        self.admin = admin
        self._metrics_text = metrics_text
        self._auth = AdminAuth(dataplane.settings.server)
        self._routes: list[tuple[str, re.Pattern, Callable, bool]] = [
            ("POST", re.compile(_MODEL + "/infer"), self._infer, False),  # the hot path, matched first
            ("GET", re.compile(r"/v2/?"), self._server_meta, False),
            ("GET", re.compile(r"/v2/health/live"), self._live, False),
            ("GET", re.compile(r"/v2/health/ready"), self._ready, False),
            ("GET", re.compile(r"/v2/models"), self._list_models, False),
            ("GET", re.compile(_MODEL), self._model_meta, False),
            ("GET", re.compile(_MODEL + "/ready"), self._model_ready, False),
            ("GET", re.compile(_MODEL + "/config"), self._model_config, False),
            ("GET", re.compile(_MODEL + "/stats"), self._model_stats, False),
            ("GET", re.compile(r"/metrics"), self._metrics, False),
            ("POST", re.compile(r"/v2/repository/index"), self._repo_index, True),
            ("POST", re.compile(rf"/v2/repository/models/{_SEG}/(load|unload)"), self._repo_load, True),
            *[(m, p, h, True) for m, p, h in admin.routes()],
            *(extra_routes or []),  # (method, path, handler, needs_admin): the dashboard
        ]

    async def handle(
        self, method: str, path: str, headers: dict[str, str], body: bytes, client_host: str | None, query: str = ""
    ) -> Response:
        try:
            for m, pattern, handler, needs_admin in self._routes:
                match = pattern.fullmatch(path)
                if match is None or m != method:
                    continue
                if needs_admin:
                    self._auth.check(headers.get("authorization"), client_host)
                # Segments are matched percent-encoded and decoded one by one, so an encoded "/" stays
                # inside its segment and reaches the name check instead of re-shaping the path.
                groups = [unquote(g) if g is not None else None for g in match.groups()]
                return await handler(*groups, headers=headers, body=body, query=query)
            if any(p.fullmatch(path) for _, p, _, _ in self._routes):
                return _json(405, {"error": f"method {method} not allowed on {path}"})
            raise NotFound(f"no route for {method} {path}")
        except WattgateError as exc:
            return error_response(exc)
        except Exception:  # a bug must cost one request, never the server
            log.exception("unhandled error on %s %s", method, path)
            return _json(500, {"error": "internal error; see the gateway log"})

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

    async def _infer(self, name, version, headers, body, **_):
        out, out_headers = await self.dp.infer(name, version, body, headers)
        return 200, out_headers, out

    async def _metrics(self, **_):
        return 200, {"content-type": "text/plain; version=0.0.4"}, (await self._metrics_text()).encode()

    async def _repo_index(self, **_):
        return _json(200, self.dp.host.index())

    async def _repo_load(self, name, action, **_):
        await self.admin.load_or_unload(name, action)
        return _json(200, {"name": name, "action": action, "state": self.dp.host.models[name].state})
