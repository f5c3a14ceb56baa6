"""The Ray Serve application: one ingress deployment that parses, routes, batches and runs locally.

Hot path: HAProxy -> ingress replica (HTTP parse, cache, route, batch queue, ONNX Runtime)
-> response; gRPC calls take the same path through Serve's gRPC ingress (``gateway/grpc_api.py``).
A request hops to another process only when the chosen pool lives elsewhere (another node, region
or hardware class); see README "Architecture".
"""

from __future__ import annotations

import logging
from typing import Any

from ray import serve
from starlette.requests import Request
from starlette.responses import Response

from gateway.auth import check_exposure
from gateway.autoscaling import autoscaling_config, control_store_name, scaled_pools
from gateway.grpc_api import GrpcIngress
from gateway.pool_worker import PoolWorker
from gateway.wiring import build_gateway
from routing.topology import load_topology
from wattgate.errors import PayloadTooLarge
from wattgate.settings import Settings, load_settings

log = logging.getLogger("wattgate.app")


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body of {declared} bytes exceeds the {limit}-byte limit")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds the {limit}-byte limit")
        chunks.append(chunk)
    return b"".join(chunks)


@serve.deployment
class Gateway(GrpcIngress):
    def __init__(self, settings: Settings, pool_handles: dict[str, Any] | None = None) -> None:
        logging.basicConfig(level=logging.INFO)
        self.settings = settings
        self.parts = build_gateway(self.settings, pool_handles or {})
        self.api = self.parts.api
        self._background_started = False

    def _start_once(self) -> None:
        if not self._background_started:  # needs the serving event loop, which __init__ may not run on
            self._background_started = True
            self.parts.data.mark_ready()
            self.parts.start_background()

    async def __call__(self, request: Request) -> Response:
        self._start_once()
        scope = request.scope  # read straight from the ASGI scope: request.url parses the whole URL again
        client = scope.get("client")
        status, headers, out = await self.api.handle(
            scope["method"],
            scope.get("raw_path", b"").decode("latin-1").partition("?")[0] or scope["path"],
            dict(request.headers),
            lambda: _read_body(request, self.settings.server.max_request_bytes),  # read once the caller is admitted
            client[0] if client else None,
            scope.get("query_string", b"").decode("latin-1"),
        )
        return Response(out, status_code=status, headers=headers)

    async def _grpc_call(self, rpc: str, request: Any, grpc_context: Any) -> Any:
        self._start_once()
        return await self.parts.grpc.call(rpc, request, grpc_context)

    async def check_health(self) -> None:
        # Serve calls this once the replica is up (before any request) and then periodically: the
        # replica is ready, so what it metered until now is start-up energy. Serve restarts a
        # replica whose check raises; a replica with no model loaded is still live. Async, so it runs
        # on the serving loop: background work (the job runner included) starts without a request.
        self.parts.data.mark_ready()
        self._start_once()

    async def __del__(self):
        close = getattr(getattr(self, "parts", None), "close", None)
        if close:
            close()


def absolute_paths(settings: Settings) -> Settings:
    """Replicas do not share the driver's working directory: hand them absolute paths."""
    server = settings.server.model_copy(update={"state_dir": settings.server.state_dir.resolve()})
    models = settings.models.model_copy(update={"repository": settings.models.repository.resolve()})
    routing = settings.routing.model_copy(update={"topology_file": settings.routing.topology_file.resolve()})
    auth = settings.auth.model_copy(update={"keys_file": settings.state_path(settings.auth.keys_file).resolve(),
                                            "audit_file": settings.state_path(settings.auth.audit_file).resolve()})
    return settings.model_copy(update={"server": server, "models": models, "routing": routing, "auth": auth})


def build_app(settings: Settings) -> serve.Application:
    check_exposure(settings.server, settings.auth)
    settings = absolute_paths(settings)
    s = settings.server
    # Pools on other nodes are deployments of this app, pinned by node label; the ingress gets handles.
    # Pools with an ``autoscaling`` block in the topology scale with wattgate's carbon-aware policy.
    topology = load_topology(settings.routing.topology_file) if settings.routing.topology_file.is_file() else None
    scaled = scaled_pools(topology, settings) if topology is not None else {}
    store = control_store_name(settings)
    pools = {}
    for name, p in settings.pools.items():
        if p.kind != "ray":
            continue
        options: dict[str, Any] = {"num_cpus": p.num_cpus}
        if p.label_selector:
            options["label_selector"] = dict(p.label_selector)
        if name in scaled:
            replicas: dict[str, Any] = {"autoscaling_config": autoscaling_config(topology.pool(name), scaled[name], store)}
        else:
            replicas = {"num_replicas": p.num_replicas}
        pools[name] = PoolWorker.options(
            name=f"pool-{name}", ray_actor_options=options, max_ongoing_requests=s.max_ongoing_requests, **replicas,
            logging_config={"enable_access_log": s.access_log},
        ).bind(settings, name, store if name in scaled else None)
    return Gateway.options(
        name="Gateway",
        num_replicas=s.ingress_replicas,
        max_ongoing_requests=s.max_ongoing_requests,
        ray_actor_options={"num_cpus": s.ingress_num_cpus},
        logging_config={"enable_access_log": s.access_log},
    ).bind(settings, pools)  # pickled whole: secrets (SecretStr) travel intact, never rendered as text


def app_builder(args: dict[str, Any]) -> serve.Application:
    """Entry point for Ray Serve's config-file workflow (``serve run`` / ``serve deploy``)."""
    return build_app(load_settings(args.get("config")))
