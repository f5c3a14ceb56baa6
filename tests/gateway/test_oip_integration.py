"""The gateway on a real Ray Serve, driven over real HTTP by tritonclient and raw requests."""

from __future__ import annotations

import asyncio
import json

import httpx
import numpy as np
import pytest
import tritonclient.http as triton

from wattgate.settings import load_settings

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def gateway(deploy, digits_repository):
    settings = load_settings(
        None,
        models={"repository": str(digits_repository), "defaults": {"max_batch_size": 32, "batch_wait_timeout_s": 0.02}},
        server={"max_request_bytes": 256 * 1024, "state_dir": str(digits_repository.parent / "state-oip")},
        cache={"enabled": False},
    )
    return deploy(settings)


def _client(url: str) -> triton.InferenceServerClient:
    return triton.InferenceServerClient(url.removeprefix("http://"))


@pytest.mark.parametrize("binary_in,binary_out", [(False, False), (True, True), (True, False), (False, True)])
def test_tritonclient_infer_equals_direct_onnxruntime(gateway, pixels, direct, binary_in, binary_out):
    client = _client(gateway)
    x = pixels[:5]
    inp = triton.InferInput("pixels", list(x.shape), "FP32")
    inp.set_data_from_numpy(x, binary_data=binary_in)
    outs = [triton.InferRequestedOutput("probabilities", binary_data=binary_out), triton.InferRequestedOutput("label", binary_data=binary_out)]
    result = client.infer("digits", [inp], outputs=outs)
    want = direct(x)
    np.testing.assert_allclose(result.as_numpy("probabilities"), want["probabilities"], rtol=1e-5, atol=1e-6)
    np.testing.assert_array_equal(result.as_numpy("label"), want["label"])


def test_tritonclient_health_and_metadata(gateway):
    client = _client(gateway)
    assert client.is_server_live()
    assert client.is_server_ready()
    assert client.is_model_ready("digits")
    meta = client.get_model_metadata("digits")
    assert meta["name"] == "digits"
    assert meta["inputs"] == [{"name": "pixels", "datatype": "FP32", "shape": [-1, 64]}]
    assert {o["name"] for o in meta["outputs"]} == {"probabilities", "label"}
    assert client.get_server_metadata()["name"] == "wattgate"
    assert client.get_model_metadata("digits", "1")["parameters"]["version"] == "1"


def test_concurrent_requests_are_batched_and_split_correctly(gateway, pixels, direct):
    async def fire():
        async with httpx.AsyncClient(timeout=30, limits=httpx.Limits(max_connections=64)) as c:
            async def one(i):
                rows = 1 + i % 3
                x = pixels[i * 3 : i * 3 + rows]
                body = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist()}]}
                r = await c.post(f"{gateway}/v2/models/digits/infer", json=body)
                return x, r

            return await asyncio.gather(*(one(i) for i in range(96)))

    before = httpx.get(f"{gateway}/v2/models/digits/stats").json()["model_stats"][0]
    for x, r in asyncio.run(fire()):
        assert r.status_code == 200, r.text
        out = {o["name"]: o for o in r.json()["outputs"]}
        assert out["label"]["shape"] == [x.shape[0]]
        np.testing.assert_array_equal(out["label"]["data"], direct(x)["label"])
    after = httpx.get(f"{gateway}/v2/models/digits/stats").json()["model_stats"][0]
    rows = after["inference_count"] - before["inference_count"]
    calls = after["execution_count"] - before["execution_count"]
    assert rows == sum(1 + i % 3 for i in range(96))
    assert calls < 96, "96 concurrent requests should have been merged into fewer runtime calls"
    biggest = max(b["batch_size"] for b in after["batch_stats"])
    assert 1 < biggest <= 32


BAD = [
    ("malformed json", "/v2/models/digits/infer", b"{not json", {}, 400),
    ("not an object", "/v2/models/digits/infer", b"[1,2]", {}, 400),
    ("wrong dtype", "/v2/models/digits/infer", json.dumps({"inputs": [{"name": "pixels", "datatype": "INT32", "shape": [1, 64], "data": [0] * 64}]}).encode(), {}, 400),
    ("wrong shape", "/v2/models/digits/infer", json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 63], "data": [0] * 63}]}).encode(), {}, 400),
    ("data/shape mismatch", "/v2/models/digits/infer", json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [2, 64], "data": [0] * 64}]}).encode(), {}, 400),
    ("strings as numbers", "/v2/models/digits/infer", json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": ["a"] * 64}]}).encode(), {}, 400),
    ("unknown input", "/v2/models/digits/infer", json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1, 64], "data": [0] * 64}]}).encode(), {}, 400),
    ("unknown output", "/v2/models/digits/infer", json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0] * 64}], "outputs": [{"name": "nope"}]}).encode(), {}, 400),
    ("too many rows", "/v2/models/digits/infer", json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [33, 64], "data": [0] * 33 * 64}]}).encode(), {}, 400),
    ("bad binary header", "/v2/models/digits/infer", b'{"inputs":[]}', {"Inference-Header-Content-Length": "999"}, 400),
    ("binary size lies", "/v2/models/digits/infer", b'{"inputs":[{"name":"pixels","datatype":"FP32","shape":[1,64],"parameters":{"binary_data_size":256}}]}' + b"\0" * 8, {"Inference-Header-Content-Length": "105"}, 400),
    ("unknown model", "/v2/models/nosuch/infer", json.dumps({"inputs": []}).encode(), {}, 404),
    ("unknown version", "/v2/models/digits/versions/9/infer", json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0] * 64}]}).encode(), {}, 404),
    ("hostile name", "/v2/models/..%2F..%2Fetc%2Fpasswd/infer", b"{}", {}, 400),
    ("hostile name 2", "/v2/models/a%00b/infer", b"{}", {}, 400),
    ("huge payload", "/v2/models/digits/infer", b"[" + b"0," * 200_000 + b"0]", {}, 413),
]


@pytest.mark.parametrize("label,path,body,headers,status", BAD, ids=[b[0] for b in BAD])
def test_bad_input_gets_4xx_json_error_and_server_keeps_serving(gateway, pixels, label, path, body, headers, status):
    r = httpx.post(gateway + path, content=body, headers=headers, timeout=30)
    assert r.status_code == status, r.text
    assert isinstance(r.json()["error"], str) and r.json()["error"]
    x = pixels[:1]
    ok = httpx.post(f"{gateway}/v2/models/digits/infer", json={"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": x.reshape(-1).tolist()}]})
    assert ok.status_code == 200


def test_repository_index_and_unload_load(gateway):
    index = httpx.post(f"{gateway}/v2/repository/index").json()
    assert {"name": "digits", "version": "1", "state": "READY", "reason": ""} in index
    assert httpx.post(f"{gateway}/v2/repository/models/digits/unload").status_code == 200
    r = httpx.post(f"{gateway}/v2/models/digits/infer", json={"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": [0] * 64}]})
    assert r.status_code == 503 and "not loaded" in r.json()["error"]
    assert httpx.post(f"{gateway}/v2/repository/models/digits/load").status_code == 200
    assert httpx.get(f"{gateway}/v2/models/digits/ready").status_code == 200
    assert httpx.post(f"{gateway}/v2/repository/models/nosuch/load").status_code == 404
