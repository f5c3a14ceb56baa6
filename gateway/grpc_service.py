"""``inference.GRPCInferenceService`` as Serve's gRPC ingress registers it: tritonclient's generated
service, except that a request whose bytes do not parse reaches the deployment as a ``MalformedRequest``
(answered INVALID_ARGUMENT, as HTTP answers malformed JSON 400) instead of gRPC's own INTERNAL.

Importing it also makes the service's messages picklable. Where HAProxy has no ingress replica up for
the app (start-up, a replica restarting), Serve's fallback proxy takes the call and hands the decoded
message to a replica through a ``DeploymentHandle``, pickling it and the response. tritonclient's
generated classes name their module ``grpc_service_pb2``, which does not import, so without this the
call failed UNKNOWN ("Can't pickle ... grpc_service_pb2").

Kept apart from ``gateway/grpc_api.py``: Serve's proxies import this module too, and need nothing else.
"""

from __future__ import annotations

import copyreg
from dataclasses import dataclass
from typing import Any, Callable

from google.protobuf.message import DecodeError, Message
from tritonclient.grpc import service_pb2, service_pb2_grpc

SERVICER = "gateway.grpc_service.add_servicer_to_server"  # for Serve's gRPCOptions.grpc_servicer_functions


@dataclass(frozen=True)
class MalformedRequest:
    """Bytes that are not the RPC's request message; ``reason`` is the protobuf parser's."""

    reason: str


def _rebuild(name: str, data: bytes) -> Message:
    return getattr(service_pb2, name).FromString(data)


def _reduce(message: Message) -> tuple[Callable[[str, bytes], Message], tuple[str, bytes]]:
    return _rebuild, (type(message).__name__, message.SerializeToString())


for _name in service_pb2.DESCRIPTOR.message_types_by_name:  # nested messages travel inside their parents
    copyreg.pickle(getattr(service_pb2, _name), _reduce)


def add_servicer_to_server(servicer: Any, server: Any) -> None:
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, _LenientServer(server))


def _lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def parse_or_flag(raw: bytes) -> Any:
        try:
            return parse(raw)
        except DecodeError as exc:
            return MalformedRequest(str(exc) or "not a valid protobuf message")

    return parse_or_flag


class _LenientServer:
    """Hands the generated handlers to the real server with lenient request deserializers."""

    def __init__(self, server: Any) -> None:
        self._server = server

    @staticmethod
    def _wrap(handlers: dict) -> dict:
        return {name: h._replace(request_deserializer=_lenient(h.request_deserializer)) if h.request_deserializer else h
                for name, h in handlers.items()}

    def add_generic_rpc_handlers(self, generic_handlers) -> None:
        for generic in generic_handlers:  # grpc's _GenericHandler, whose table Serve's server rewrites too
            generic._method_handlers = self._wrap(generic._method_handlers)
        self._server.add_generic_rpc_handlers(generic_handlers)

    def add_registered_method_handlers(self, service: str, handlers: dict) -> None:
        add = getattr(self._server, "add_registered_method_handlers", None)
        if add is not None:
            add(service, self._wrap(handlers))
