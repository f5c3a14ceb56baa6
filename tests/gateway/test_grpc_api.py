"""The gRPC layer over a real data plane, without Ray: RPCs, status codes, retry info, admin access.

Serve hands each call a ``RayServegRPCContext``; ``Context`` below offers the same methods, so the
layer is driven here as Serve drives it (the real ingress is tested in test_grpc_integration.py).
"""

from __future__ import annotations

import asyncio
import inspect
import json
from unittest.mock import Mock

import grpc
import numpy as np
import pytest
import tritonclient.grpc as tg
from google.rpc import error_details_pb2, status_pb2
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc._utils import _get_inference_request

from gateway.admin import AdminApi
from gateway.grpc_api import UNARY_RPCS, GrpcApi, GrpcIngress, grpc_status, peer_host
from wattgate import errors


class Context:
    def __init__(self, metadata=(), peer="ipv4:127.0.0.1:50000"):
        self._metadata, self._peer = list(metadata), peer
        self.code, self.details, self.trailers = None, "", []

    def invocation_metadata(self):
        return self._metadata

    def peer(self):
        return self._peer

    def set_code(self, code):
        self.code = code

    def set_details(self, details):
        self.details = details

    def set_trailing_metadata(self, trailers):
        self.trailers = trailers


def _grpc_api(plane):
    return GrpcApi(plane.dataplane, AdminApi(plane.host.registry, plane.host))


def _call(api, rpc, request, **context):
    ctx = Context(**context)
    return asyncio.run(api.call(rpc, request, ctx)), ctx


def _infer_request(x: np.ndarray, model="digits", request_id="") -> pb.ModelInferRequest:
    inp = tg.InferInput("pixels", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return _get_inference_request(model, [inp], "", request_id, [], 0, False, False, 0, None, None)


def test_model_infer_answers_as_http_does(make_plane):
    plane = make_plane(cache={"enabled": False})
    x = np.random.default_rng(3).integers(0, 17, (3, 64)).astype(np.float32)
    response, ctx = _call(_grpc_api(plane), "ModelInfer", _infer_request(x, request_id="g-1"))
    assert ctx.code is None, ctx.details
    body = json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [3, 64], "data": x.reshape(-1).tolist()}]})
    http, _ = asyncio.run(plane.dataplane.infer("digits", None, body.encode(), {}))
    http = json.loads(http)
    result = tg.InferResult(response)
    assert result.as_numpy("label").tolist() == next(o["data"] for o in http["outputs"] if o["name"] == "label")
    params = result.get_response(as_json=True)["parameters"]
    assert set(params) == {k for k, v in http["parameters"].items() if v is not None}
    assert params["request_id"]["string_param"] == response.id == "g-1"
    assert params["energy_j"]["double_param"] > 0 and params["batch_size"]["int64_param"] == "3"


@pytest.mark.parametrize("exc,code", [
    (errors.BadRequest("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.InvalidName("x"), grpc.StatusCode.INVALID_ARGUMENT),
    (errors.Unauthorized("x"), grpc.StatusCode.UNAUTHENTICATED),
    (errors.Forbidden("x"), grpc.StatusCode.PERMISSION_DENIED),
    (errors.ModelNotFound("x"), grpc.StatusCode.NOT_FOUND),
    (errors.PayloadTooLarge("x"), grpc.StatusCode.RESOURCE_EXHAUSTED),
    (errors.Unavailable("x"), grpc.StatusCode.UNAVAILABLE),
    (errors.DependencyError("x"), grpc.StatusCode.UNAVAILABLE),
    (errors.BackendError("x"), grpc.StatusCode.INTERNAL),
])
def test_errors_map_to_status_codes(exc, code):
    assert grpc_status(exc) == (code, "x", [])


def test_a_shed_request_is_resource_exhausted_with_retry_info_and_is_counted(make_plane, monkeypatch):
    plane = make_plane()

    def overloaded(*args, **kwargs):
        raise errors.Overloaded("every pool is at its in-flight bound", retry_after_s=2.2)

    monkeypatch.setattr(plane.dataplane.router, "route", overloaded)
    _, ctx = _call(_grpc_api(plane), "ModelInfer", _infer_request(np.zeros((1, 64), np.float32)))
    assert ctx.code == grpc.StatusCode.RESOURCE_EXHAUSTED and "in-flight bound" in ctx.details
    trailers = dict(ctx.trailers)
    assert trailers["retry-after"] == "3"
    status = status_pb2.Status.FromString(trailers["grpc-status-details-bin"])
    info = error_details_pb2.RetryInfo()
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0] and status.details[0].Unpack(info)
    assert info.retry_delay.seconds == 3
    assert plane.metrics.snapshot()["wattgate_shed_requests_total"]["series"] == [[["digits"], 1.0]]


@pytest.mark.parametrize("request_,code", [
    (_infer_request(np.zeros((1, 64), np.float32), model="nosuch"), grpc.StatusCode.NOT_FOUND),
    (_infer_request(np.zeros((1, 63), np.float32)), grpc.StatusCode.INVALID_ARGUMENT),
    (_infer_request(np.zeros((1, 64), np.float32), model="../etc"), grpc.StatusCode.INVALID_ARGUMENT),
    (pb.ModelInferRequest(model_name="digits", inputs=[pb.ModelInferRequest.InferInputTensor(
        name="pixels", datatype="FP32", shape=[1, 64])], raw_input_contents=[b"\0" * (2 << 20)]),
     grpc.StatusCode.RESOURCE_EXHAUSTED),  # over max_request_bytes (1 MiB here)
])
def test_bad_calls_get_their_code_and_the_next_call_is_served(make_plane, request_, code):
    plane = make_plane(server={"max_request_bytes": 1 << 20})
    api = _grpc_api(plane)
    _, ctx = _call(api, "ModelInfer", request_)
    assert ctx.code == code and ctx.details
    response, ctx = _call(api, "ModelInfer", _infer_request(np.zeros((1, 64), np.float32)))
    assert ctx.code is None and tg.InferResult(response).as_numpy("label").shape == (1,)


def test_health_metadata_and_readiness(make_plane):
    api = _grpc_api(make_plane())
    assert _call(api, "ServerLive", pb.ServerLiveRequest())[0].live
    assert _call(api, "ServerReady", pb.ServerReadyRequest())[0].ready
    assert _call(api, "ModelReady", pb.ModelReadyRequest(name="digits"))[0].ready
    assert not _call(api, "ModelReady", pb.ModelReadyRequest(name="nosuch"))[0].ready
    assert _call(api, "ServerMetadata", pb.ServerMetadataRequest())[0].name == "wattgate"
    meta, _ = _call(api, "ModelMetadata", pb.ModelMetadataRequest(name="digits", version="1"))
    assert (meta.name, list(meta.versions), meta.platform) == ("digits", ["1"], "onnxruntime_onnx")
    assert [(t.name, t.datatype, list(t.shape)) for t in meta.inputs] == [("pixels", "FP32", [-1, 64])]
    _, ctx = _call(api, "ModelMetadata", pb.ModelMetadataRequest(name="nosuch"))
    assert ctx.code == grpc.StatusCode.NOT_FOUND


def test_repository_calls_need_loopback_without_a_key(make_plane):
    api = _grpc_api(make_plane())
    _, ctx = _call(api, "RepositoryIndex", pb.RepositoryIndexRequest(), peer="ipv4:10.1.2.3:4000")
    assert ctx.code == grpc.StatusCode.PERMISSION_DENIED
    index, ctx = _call(api, "RepositoryIndex", pb.RepositoryIndexRequest(), peer="ipv6:%5B::1%5D:4000")
    assert ctx.code is None and [(m.name, m.version, m.state) for m in index.models] == [("digits", "1", "READY")]


def test_repository_calls_with_a_key_need_it_and_unload_then_load(make_plane):
    api = _grpc_api(make_plane(server={"admin_api_key": "s3cret"}))
    for metadata in ([], [("authorization", "Bearer wrong")]):
        _, ctx = _call(api, "RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name="digits"), metadata=metadata)
        assert ctx.code == grpc.StatusCode.UNAUTHENTICATED
    key = [("authorization", "Bearer s3cret")]
    _, ctx = _call(api, "RepositoryModelUnload", pb.RepositoryModelUnloadRequest(model_name="digits"), metadata=key)
    assert ctx.code is None
    _, ctx = _call(api, "ModelInfer", _infer_request(np.zeros((1, 64), np.float32)))
    assert ctx.code == grpc.StatusCode.UNAVAILABLE and "not loaded" in ctx.details
    _, ctx = _call(api, "RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name="digits"), metadata=key)
    assert ctx.code is None and _call(api, "ModelReady", pb.ModelReadyRequest(name="digits"))[0].ready
    _, ctx = _call(api, "RepositoryModelLoad", pb.RepositoryModelLoadRequest(model_name="nosuch"), metadata=key)
    assert ctx.code == grpc.StatusCode.NOT_FOUND


def test_rpcs_not_served_are_unimplemented(make_plane):
    response, ctx = _call(_grpc_api(make_plane()), "CudaSharedMemoryStatus", pb.CudaSharedMemoryStatusRequest())
    assert ctx.code == grpc.StatusCode.UNIMPLEMENTED and isinstance(response, pb.CudaSharedMemoryStatusResponse)


def test_the_ingress_has_a_method_per_unary_rpc_taking_serves_context_keyword():
    assert {"ModelInfer", "ServerLive", "RepositoryIndex", "RepositoryModelLoad"} <= set(UNARY_RPCS)
    assert "ModelStreamInfer" not in UNARY_RPCS
    for rpc in UNARY_RPCS:
        assert list(inspect.signature(getattr(GrpcIngress, rpc)).parameters) == ["self", "request", "grpc_context"]


def test_peer_host():
    assert peer_host("ipv4:127.0.0.1:5000") == "127.0.0.1"
    assert peer_host("ipv6:%5B::1%5D:5000") == "::1"
    assert peer_host("unix:/tmp/s") is None


class _RecordingServer:
    def __init__(self):
        self.generic, self.registered = [], {}

    def add_generic_rpc_handlers(self, handlers):
        self.generic.extend(handlers)

    def add_registered_method_handlers(self, service, handlers):
        self.registered[service] = handlers


def test_malformed_bytes_reach_the_api_flagged_and_are_invalid_argument(make_plane):
    from gateway.grpc_service import MalformedRequest, add_servicer_to_server

    server = _RecordingServer()
    add_servicer_to_server(Mock(), server)  # as Serve registers it: a stand-in servicer whose methods it replaces
    parse = server.registered["inference.GRPCInferenceService"]["ModelInfer"].request_deserializer
    generic_parse = server.generic[0]._method_handlers["/inference.GRPCInferenceService/ModelInfer"].request_deserializer
    good = _infer_request(np.zeros((1, 64), np.float32))
    assert parse(good.SerializeToString()) == good and generic_parse(good.SerializeToString()) == good
    flagged = parse(b"\xff\xff\xff\xff")
    assert isinstance(flagged, MalformedRequest) and isinstance(generic_parse(b"\x0a\x05ab"), MalformedRequest)
    _, ctx = _call(_grpc_api(make_plane()), "ModelInfer", flagged)
    assert ctx.code == grpc.StatusCode.INVALID_ARGUMENT and "not a valid protobuf message" in ctx.details


def test_service_messages_pickle_as_serves_fallback_proxy_moves_them():
    """tritonclient's classes name an unimportable module (grpc_service_pb2); gateway.grpc_service registers
    reducers so the fallback proxy's DeploymentHandle can pickle requests and responses (Ray: cloudpickle)."""
    import pickle

    import ray.cloudpickle as cloudpickle

    import gateway.grpc_service  # noqa: F401  (the import registers them)

    request = _infer_request(np.arange(64, dtype=np.float32).reshape(1, 64))
    response = pb.ModelInferResponse(model_name="digits", id="r-1")
    response.parameters["energy_j"].double_param = 0.25
    for dumps, loads in ((pickle.dumps, pickle.loads), (cloudpickle.dumps, cloudpickle.loads)):
        for message in (request, response, pb.ServerLiveResponse(live=True)):
            copy = loads(dumps(message))
            assert type(copy) is type(message) and copy == message
