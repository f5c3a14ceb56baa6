"""OIP over gRPC (``inference.GRPCInferenceService``) on Ray Serve's own gRPC ingress; the only layer that
knows gRPC status codes.

Serve's gRPC server (behind HAProxy, in each ingress replica) decodes a call with tritonclient's
generated service (registered by ``gateway/grpc_service.py``) and calls the ingress deployment's
method named after the RPC: ``GrpcIngress`` gives the deployment one per unary RPC, each handing the
call to ``GrpcApi``, which drives the same data plane as HTTP (``DataPlane.serve`` with the codec in
``serving/grpc_codec.py``). A ``WattgateError`` becomes a status code with its message, as
``gateway/http.py`` turns it into an HTTP status; an RPC wattgate does not serve is UNIMPLEMENTED.
"""

from __future__ import annotations

import logging
from typing import Any, Awaitable, Callable
from urllib.parse import unquote

import grpc
from google.protobuf import duration_pb2, message_factory
from google.rpc import code_pb2, error_details_pb2, status_pb2
from tritonclient.grpc import service_pb2 as pb

from gateway.admin import AdminApi
from gateway.auth import AdminAuth
from gateway.grpc_service import MalformedRequest
from serving.dataplane import DataPlane
from serving.grpc_codec import encode_infer_message, parse_infer_message
from tenants.audit import AuditLog
from tenants.gate import Principal, TenantGate, build_gate
from tenants.hold import AdmissionRefused
from tenants.settings import AuthSettings
from wattgate.errors import BadRequest, NotFound, PayloadTooLarge, Unavailable, WattgateError

log = logging.getLogger("wattgate.grpc")

_SERVICE = pb.DESCRIPTOR.services_by_name["GRPCInferenceService"]
# Serve calls a unary RPC's method with the decoded request and answers with the message it returns.
UNARY_RPCS = {m.name: message_factory.GetMessageClass(m.output_type)
              for m in _SERVICE.methods if not (m.client_streaming or m.server_streaming)}

_CODES = {
    400: grpc.StatusCode.INVALID_ARGUMENT,
    401: grpc.StatusCode.UNAUTHENTICATED,
    403: grpc.StatusCode.PERMISSION_DENIED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    413: grpc.StatusCode.RESOURCE_EXHAUSTED,  # over server.max_request_bytes, as gRPC's own size limit answers
    422: grpc.StatusCode.FAILED_PRECONDITION,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,  # a tenant's quota or budget; with retry-after, as a shed call
    502: grpc.StatusCode.UNAVAILABLE,  # a foreign system failed: retrying may help
    503: grpc.StatusCode.UNAVAILABLE,
}


def grpc_status(exc: WattgateError) -> tuple[grpc.StatusCode, str, list[tuple[str, str | bytes]]]:
    """(code, details, trailing metadata) for an error. A shed request (``retry_after_s``) is
    RESOURCE_EXHAUSTED with ``retry-after`` (seconds) and a ``google.rpc.RetryInfo`` in the status details."""
    retry_after_s = getattr(exc, "retry_after_s", None)
    if retry_after_s is None:
        return _CODES.get(exc.status_code, grpc.StatusCode.INTERNAL), exc.message, []
    seconds = max(1, int(-(-retry_after_s // 1)))
    info = error_details_pb2.RetryInfo(retry_delay=duration_pb2.Duration(seconds=seconds))
    status = status_pb2.Status(code=code_pb2.RESOURCE_EXHAUSTED, message=exc.message)
    status.details.add().Pack(info)
    return grpc.StatusCode.RESOURCE_EXHAUSTED, exc.message, [
        ("retry-after", str(seconds)), ("grpc-status-details-bin", status.SerializeToString())]


def peer_host(peer: str) -> str | None:
    """The address in a gRPC peer string (``ipv4:127.0.0.1:5000``, ``ipv6:%5B::1%5D:5000``)."""
    kind, _, rest = unquote(peer).partition(":")
    if kind not in ("ipv4", "ipv6"):
        return None
    return rest.rsplit(":", 1)[0].strip("[]")


class GrpcApi:
    def __init__(self, dataplane: DataPlane, admin: AdminApi, gate: TenantGate | None = None,
                 audit: AuditLog | None = None) -> None:
        self.dp = dataplane
        self.admin = admin
        self.gate = gate or build_gate(AuthSettings(), None)  # mode off: nobody is asked for a key
        self.audit = audit
        self._auth = AdminAuth(dataplane.settings.server)
        self._max_request_bytes = dataplane.settings.server.max_request_bytes
        self._rpcs: dict[str, tuple[Callable[..., Awaitable[Any]], bool]] = {  # name -> (handler, admin only)
            "ModelInfer": (self._model_infer, False),  # the hot path
            "ServerLive": (self._server_live, False),
            "ServerReady": (self._server_ready, False),
            "ModelReady": (self._model_ready, False),
            "ServerMetadata": (self._server_metadata, False),
            "ModelMetadata": (self._model_metadata, False),
            "RepositoryIndex": (self._repository_index, True),
            "RepositoryModelLoad": (self._repository_load, True),
            "RepositoryModelUnload": (self._repository_unload, True),
        }

    async def call(self, rpc: str, request: Any, context: Any) -> Any:
        """Answer one RPC; errors set the status on ``context`` (Serve's RayServegRPCContext) and the
        empty response goes back with it, so nothing is raised into Serve and the server keeps serving."""
        try:
            handler, admin_only = self._rpcs.get(rpc, (None, False))
            if handler is None:
                context.set_code(grpc.StatusCode.UNIMPLEMENTED)
                context.set_details(f"wattgate does not serve {rpc}")
                return UNARY_RPCS[rpc]()
            if isinstance(request, MalformedRequest):
                raise BadRequest(f"{rpc}: the request is not a valid protobuf message ({request.reason})")
            metadata = {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
            peer = peer_host(context.peer())
            if admin_only:
                return await self._admin(rpc, handler, request, metadata, peer)
            if handler == self._model_infer:
                principal = self.gate.authenticate(metadata.get("authorization"), metadata.get("x-tenant"), peer,
                                                   model=request.model_name)
                async with self.gate.admit(principal):
                    return await self._model_infer(request, metadata, principal)
            if rpc in ("ModelReady", "ModelMetadata"):
                self.gate.authenticate(metadata.get("authorization"), metadata.get("x-tenant"), peer, model=request.name)
            return await handler(request, metadata)
        except WattgateError as exc:
            if isinstance(exc, AdmissionRefused):  # over quota: answered after its Retry-After (bounded), unchanged
                await self.gate.hold.hold(exc.tenant, exc.retry_after_s)
            code, details, trailers = grpc_status(exc)
            context.set_code(code)
            context.set_details(details)
            if trailers:
                context.set_trailing_metadata(trailers)
        except Exception:  # a bug must cost one request, never the server
            log.exception("unhandled error in gRPC %s", rpc)
            context.set_code(grpc.StatusCode.INTERNAL)
            context.set_details("internal error; see the gateway log")
        return UNARY_RPCS[rpc]()

    async def _admin(self, rpc: str, handler, request: Any, metadata: dict[str, str], peer: str | None) -> Any:
        """An admin RPC: authorised, and (unless it only reads) written to the audit log whatever its outcome."""
        reads = rpc == "RepositoryIndex"
        try:
            who = self._auth.check(metadata.get("authorization"), peer)
        except WattgateError as exc:
            if self.audit is not None and not reads:
                self.audit.record("unauthenticated", f"gRPC {rpc}", peer, exc.status_code,
                                  model=getattr(request, "model_name", "")[:64])
            raise
        try:
            response = await handler(request, metadata)
        except WattgateError as exc:
            if self.audit is not None and not reads:
                self.audit.record(who, f"gRPC {rpc}", peer, exc.status_code, model=getattr(request, "model_name", "")[:64])
            raise
        if self.audit is not None and not reads:
            self.audit.record(who, f"gRPC {rpc}", peer, 200, model=getattr(request, "model_name", "")[:64])
        return response

    # -- handlers ----------------------------------------------------------------------------
    async def _model_infer(self, request: pb.ModelInferRequest, metadata: dict[str, str],
                           principal: Principal | None = None) -> pb.ModelInferResponse:
        size = request.ByteSize()
        if size > self._max_request_bytes:
            raise PayloadTooLarge(f"request of {size} bytes exceeds the {self._max_request_bytes}-byte limit")
        return await self.dp.serve(request.model_name, request.model_version or None,
                                   lambda: parse_infer_message(request), encode_infer_message, metadata, principal)

    async def _server_live(self, request, metadata) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=True)

    async def _server_ready(self, request, metadata) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=self.dp.ready())

    async def _model_ready(self, request: pb.ModelReadyRequest, metadata) -> pb.ModelReadyResponse:
        try:
            ready = self.dp.model_ready(request.name, request.version or None)
        except (NotFound, Unavailable):  # as Triton: not ready, rather than an error
            ready = False
        return pb.ModelReadyResponse(ready=ready)

    async def _server_metadata(self, request, metadata) -> pb.ServerMetadataResponse:
        meta = self.dp.server_metadata()
        return pb.ServerMetadataResponse(name=meta["name"], version=meta["version"], extensions=meta["extensions"])

    async def _model_metadata(self, request: pb.ModelMetadataRequest, metadata) -> pb.ModelMetadataResponse:
        meta = self.dp.model_metadata(request.name, request.version or None)

        def tensors(specs: list[dict]) -> list:
            return [pb.ModelMetadataResponse.TensorMetadata(name=t["name"], datatype=t["datatype"], shape=t["shape"])
                    for t in specs]

        return pb.ModelMetadataResponse(name=meta["name"], versions=meta["versions"], platform=meta["platform"],
                                        inputs=tensors(meta["inputs"]), outputs=tensors(meta["outputs"]))

    async def _repository_index(self, request: pb.RepositoryIndexRequest, metadata) -> pb.RepositoryIndexResponse:
        models = [pb.RepositoryIndexResponse.ModelIndex(name=m["name"], version=m["version"], state=m["state"],
                                                        reason=m["reason"])
                  for m in self.dp.host.index() if not request.ready or m["state"] == "READY"]
        return pb.RepositoryIndexResponse(models=models)

    async def _repository_load(self, request: pb.RepositoryModelLoadRequest, metadata) -> pb.RepositoryModelLoadResponse:
        await self.admin.load_or_unload(request.model_name, "load")
        return pb.RepositoryModelLoadResponse()

    async def _repository_unload(self, request: pb.RepositoryModelUnloadRequest, metadata) -> pb.RepositoryModelUnloadResponse:
        await self.admin.load_or_unload(request.model_name, "unload")
        return pb.RepositoryModelUnloadResponse()


class GrpcIngress:
    """Mixed into the ingress deployment: one method per unary RPC of the service, named as Serve looks
    it up, each handing its call to ``_grpc_call`` (the deployment's, which reaches ``GrpcApi.call``)."""

    async def _grpc_call(self, rpc: str, request: Any, grpc_context: Any) -> Any:
        raise NotImplementedError


def _forward(rpc: str):
    async def method(self, request, grpc_context):  # Serve passes the context by this keyword's name
        return await self._grpc_call(rpc, request, grpc_context)

    method.__name__ = method.__qualname__ = rpc
    return method


for _rpc in UNARY_RPCS:
    setattr(GrpcIngress, _rpc, _forward(_rpc))
