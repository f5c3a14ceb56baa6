"""OIP over gRPC on a real Ray Serve (HAProxy + Serve's gRPC ingress), driven by tritonclient.grpc
unchanged and by a raw gRPC channel for what tritonclient cannot send."""

from __future__ import annotations

import asyncio
import contextlib
import io
import os
import re
import time
from pathlib import Path

import grpc
import httpx
import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc import service_pb2_grpc
from tritonclient.utils import InferenceServerException

from loadtests.grpcload import digits_grpc_request, run_grpc_load
from wattgate.settings import load_settings

pytestmark = pytest.mark.integration
_MAX_REQUEST_BYTES = 256 * 1024


@pytest.fixture(scope="module")
def gateway(deploy, digits_repository):
    settings = load_settings(
        None,
        models={"repository": str(digits_repository), "defaults": {"max_batch_size": 32, "batch_wait_timeout_s": 0.02}},
        server={"max_request_bytes": _MAX_REQUEST_BYTES, "state_dir": str(digits_repository.parent / "state-grpc")},
        cache={"enabled": True},  # in-process: one cache behind both protocols
    )
    return deploy(settings)


def _param(result: tg.InferResult, key: str):
    p = result.get_response().parameters[key]
    return getattr(p, p.WhichOneof("parameter_choice"))


def _input(x: np.ndarray) -> tg.InferInput:
    inp = tg.InferInput("pixels", list(x.shape), "FP32")
    inp.set_data_from_numpy(x)
    return inp


@pytest.fixture(scope="module")
def target(gateway, grpc_port) -> str:
    """host:port of the gateway's gRPC ingress, once it answers from this module's deployment."""
    url = f"127.0.0.1:{grpc_port}"
    client = tg.InferenceServerClient(url)
    deadline, probe = time.time() + 60, 0
    while time.time() < deadline:
        probe += 1
        try:  # the previous deployment ran with the cache off
            if _param(client.infer("digits", [_input(np.full((1, 64), probe, np.float32))]), "cache") != "off":
                return url
        except InferenceServerException:
            pass
        time.sleep(0.3)
    raise RuntimeError("the gRPC ingress did not answer from the new deployment")


@pytest.fixture(scope="module")
def stub(target):
    with grpc.insecure_channel(target) as channel:
        yield service_pb2_grpc.GRPCInferenceServiceStub(channel), channel


def _http_infer(gateway: str, x: np.ndarray) -> dict:
    r = httpx.post(f"{gateway}/v2/models/digits/infer", timeout=30,
                   json={"inputs": [{"name": "pixels", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist()}]})
    assert r.status_code == 200, r.text
    return r.json()


def test_tritonclient_grpc_health_and_metadata(target):
    client = tg.InferenceServerClient(target)
    assert client.is_server_live() and client.is_server_ready()
    assert client.is_model_ready("digits") and client.is_model_ready("digits", "1")
    assert not client.is_model_ready("nosuch")
    meta = client.get_model_metadata("digits", as_json=True)
    assert meta["name"] == "digits" and meta["versions"] == ["1"]
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": ["-1", "64"]}]
    assert {o["name"] for o in meta["outputs"]} == {"probabilities", "label"}
    assert client.get_server_metadata(as_json=True)["name"] == "wattgate"


def test_binary_and_typed_tensors_give_the_http_and_onnxruntime_answer(gateway, target, stub, pixels, direct):
    x = pixels[20:25]
    want = direct(x)
    client = tg.InferenceServerClient(target)
    outs = [tg.InferRequestedOutput("probabilities"), tg.InferRequestedOutput("label")]
    binary = client.infer("digits", [_input(x)], outputs=outs)  # raw_input_contents / raw_output_contents
    np.testing.assert_allclose(binary.as_numpy("probabilities"), want["probabilities"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(binary.as_numpy("label"), want["label"])

    typed = pb.ModelInferRequest(model_name="digits", id="typed-1")  # the JSON-equivalent: values in contents
    typed.inputs.add(name="pixels", datatype="FP32", shape=list(x.shape)).contents.fp32_contents.extend(x.reshape(-1))
    response = stub[0].ModelInfer(typed, timeout=30)
    assert response.id == "typed-1"
    np.testing.assert_array_equal(tg.InferResult(response).as_numpy("label"), want["label"])

    http = _http_infer(gateway, x)
    assert next(o["data"] for o in http["outputs"] if o["name"] == "label") == binary.as_numpy("label").tolist()
    params = binary.get_response(as_json=True)["parameters"]
    assert set(params) == {k for k, v in http["parameters"].items() if v is not None}  # the same figures
    assert _param(binary, "energy_j") > 0 and _param(binary, "carbon_g") > 0
    assert _param(binary, "request_id") == binary.get_response().id


def test_serves_fallback_proxy_answers_grpc_as_haproxy_does(target, pixels, direct):
    """With no ingress replica up for the app (start-up, a restart), HAProxy sends gRPC to Serve's fallback
    proxy, which pickles the decoded message to reach a replica: it must answer, not fail UNKNOWN."""
    fallback = f"127.0.0.1:{os.environ['RAY_SERVE_FALLBACK_PROXY_GRPC_PORT']}"
    client = tg.InferenceServerClient(fallback)
    x = pixels[60:62]
    result = client.infer("digits", [_input(x)], outputs=[tg.InferRequestedOutput("label")],
                          headers={"application": "wattgate"})
    np.testing.assert_array_equal(result.as_numpy("label"), direct(x)["label"])
    assert client.is_server_live(headers={"application": "wattgate"})
    with pytest.raises(InferenceServerException, match="StatusCode.NOT_FOUND"):  # errors keep their codes
        client.infer("nosuch", [_input(x)], headers={"application": "wattgate"})


def test_grpc_and_http_share_one_cache(gateway, target, pixels):
    x = pixels[40:42] + 0.5  # not asked before in this session
    first = _http_infer(gateway, x)
    assert first["parameters"]["cache"] == "miss"
    result = tg.InferenceServerClient(target).infer("digits", [_input(x)])
    assert _param(result, "cache") == "hit"
    assert result.as_numpy("label").tolist() == next(o["data"] for o in first["outputs"] if o["name"] == "label")


def _msg(shape=(1, 64), datatype="FP32", raw: bytes | None = None, model="digits", version="", name="pixels",
         outputs=(), fp32=None) -> pb.ModelInferRequest:
    msg = pb.ModelInferRequest(model_name=model, model_version=version)
    t = msg.inputs.add(name=name, datatype=datatype, shape=list(shape))
    if fp32 is not None:
        t.contents.fp32_contents.extend(fp32)
    else:
        count = int(np.prod(shape)) if raw is None else 0
        msg.raw_input_contents.append(raw if raw is not None else np.zeros(count, np.dtype(np.float32)).tobytes())
    for o in outputs:
        msg.outputs.add(name=o)
    return msg


_CODE = grpc.StatusCode
BAD = [  # the HTTP battery of test_oip_integration.py, over gRPC
    ("malformed protobuf", b"\xff\xff\xff\xff", _CODE.INVALID_ARGUMENT),
    ("truncated protobuf", _msg().SerializeToString()[:40], _CODE.INVALID_ARGUMENT),
    ("no inputs", pb.ModelInferRequest(model_name="digits"), _CODE.INVALID_ARGUMENT),
    ("wrong dtype", _msg(datatype="INT32"), _CODE.INVALID_ARGUMENT),
    ("unknown dtype", _msg(datatype="FP8", raw=b"\0" * 64), _CODE.INVALID_ARGUMENT),
    ("wrong shape", _msg(shape=(1, 63)), _CODE.INVALID_ARGUMENT),
    ("raw size lies", _msg(raw=b"\0" * 255), _CODE.INVALID_ARGUMENT),
    ("contents/shape mismatch", _msg(shape=(2, 64), fp32=[0.0] * 64), _CODE.INVALID_ARGUMENT),
    ("huge declared shape", _msg(shape=(1 << 40, 64), raw=b"\0" * 256), _CODE.INVALID_ARGUMENT),
    ("unknown input", _msg(name="x"), _CODE.INVALID_ARGUMENT),
    ("unknown output", _msg(outputs=["nope"]), _CODE.INVALID_ARGUMENT),
    ("too many rows", _msg(shape=(33, 64)), _CODE.INVALID_ARGUMENT),
    ("unknown model", _msg(model="nosuch"), _CODE.NOT_FOUND),
    ("unknown version", _msg(version="9"), _CODE.NOT_FOUND),
    ("hostile name", _msg(model="../../etc/passwd"), _CODE.INVALID_ARGUMENT),
    ("hostile name 2", _msg(model="a\x00b"), _CODE.INVALID_ARGUMENT),
    ("over max_request_bytes", _msg(shape=(2000, 64)), _CODE.RESOURCE_EXHAUSTED),
    ("over gRPC's message cap", _msg(shape=(1, 64), raw=b"\0" * (17 << 20)), _CODE.RESOURCE_EXHAUSTED),
]


@pytest.mark.parametrize("label,request_,code", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_its_status_code_and_the_server_keeps_serving(stub, pixels, label, request_, code):
    _, channel = stub
    call = channel.unary_unary("/inference.GRPCInferenceService/ModelInfer")  # bytes in, bytes out
    raw = request_ if isinstance(request_, bytes) else request_.SerializeToString()
    with pytest.raises(grpc.RpcError) as info:
        call(raw, timeout=30)
    assert info.value.code() == code, info.value.details()
    assert info.value.details()
    ok = stub[0].ModelInfer(_msg(raw=pixels[:1].tobytes()), timeout=30)
    assert tg.InferResult(ok).as_numpy("label").shape == (1,)


def test_repository_index_unload_and_load_with_tritonclient(target):
    client = tg.InferenceServerClient(target)
    index = client.get_model_repository_index(as_json=True)["models"]
    assert {"name": "digits", "version": "1", "state": "READY"} in index
    client.unload_model("digits")
    with pytest.raises(InferenceServerException) as info:
        client.infer("digits", [_input(np.zeros((1, 64), np.float32))])
    assert info.value.status() == "StatusCode.UNAVAILABLE" and "not loaded" in info.value.message()
    assert not client.is_model_ready("digits")
    client.load_model("digits")
    assert client.is_model_ready("digits")
    with pytest.raises(InferenceServerException) as info:
        client.load_model("nosuch")
    assert info.value.status() == "StatusCode.NOT_FOUND"


def test_the_bench_grpc_load_generator_is_answered_ok(target):
    result = asyncio.run(run_grpc_load(target, digits_grpc_request(), concurrency=4, duration_s=1.0, warmup_s=0.2))
    assert result.requests > 10 and result.status_counts == {"OK": result.requests} and result.p50_ms <= result.p99_ms


def test_readme_grpc_example_runs(target):
    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("### gRPC") : text.index("\n## ", text.index("### gRPC"))]
    block = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(block.replace("127.0.0.1:8001", target), "README", "exec"), {})
    assert re.fullmatch(r"\[\d \d\] True\n", out.getvalue())
