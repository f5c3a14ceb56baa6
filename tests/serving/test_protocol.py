"""The OIP codec against the bytes tritonclient itself produces and parses."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tritonclient.http as triton
from tritonclient.http import InferResult

from serving.protocol import (
    RequestedOutput,
    decode_body,
    encode_infer_response,
    parse_infer_request,
    select_outputs,
    validate_inputs,
)
from models.card import TensorSpec
from wattgate.errors import BadRequest, PayloadTooLarge
from wattgate.tensors import Tensor


def _tritonclient_body(arrays: dict[str, tuple[np.ndarray, str]], binary: bool, outputs=None):
    inputs = []
    for name, (arr, dt) in arrays.items():
        i = triton.InferInput(name, list(arr.shape), dt)
        i.set_data_from_numpy(arr, binary_data=binary)
        inputs.append(i)
    body, json_size = triton.InferenceServerClient.generate_request_body(inputs, outputs=outputs)
    return body, json_size


@pytest.mark.parametrize("binary", [False, True])
def test_parses_tritonclient_requests_json_and_binary(binary):
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    ids = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int64)
    text = np.array([b"hello", "wörld".encode(), b""], dtype=np.object_)
    body, json_size = _tritonclient_body({"x": (x, "FP32"), "ids": (ids, "INT64"), "text": (text, "BYTES")}, binary)
    req = parse_infer_request(body, json_size)
    got = {t.name: t for t in req.inputs}
    np.testing.assert_array_equal(got["x"].data, x)
    np.testing.assert_array_equal(got["ids"].data, ids)
    assert list(got["text"].data) == list(text)
    assert got["x"].shape == (3, 4) and got["text"].datatype == "BYTES"


def test_json_and_binary_give_equal_tensor_bytes():
    x = np.random.default_rng(0).random((2, 5)).astype(np.float32)
    a = parse_infer_request(*_tritonclient_body({"x": (x, "FP32")}, False)).inputs[0]
    b = parse_infer_request(*_tritonclient_body({"x": (x, "FP32")}, True)).inputs[0]
    assert a.raw_bytes() == b.raw_bytes() and a.shape == b.shape and a.datatype == b.datatype


def test_binary_response_parses_with_tritonclient():
    probs = np.random.default_rng(1).random((2, 3)).astype(np.float32)
    label = np.array([2, 0], dtype=np.int64)
    outs = [Tensor.from_numpy("p", probs), Tensor.from_numpy("label", label)]
    body, headers = encode_infer_response("m", "1", outs, [RequestedOutput("p", True), RequestedOutput("label", False)], "abc", {"energy_j": 0.5})
    result = InferResult.from_response_body(body, header_length=int(headers["inference-header-content-length"]))
    np.testing.assert_array_equal(result.as_numpy("p"), probs)
    np.testing.assert_array_equal(result.as_numpy("label"), label)
    assert result.get_response()["parameters"]["energy_j"] == 0.5
    assert result.get_response()["id"] == "abc"


def test_json_response_has_no_binary_header():
    body, headers = encode_infer_response("m", "1", [Tensor.from_numpy("y", np.array([1.5], np.float32))], [RequestedOutput("y", False)], None, {})
    assert "inference-header-content-length" not in headers
    assert json.loads(body)["outputs"][0]["data"] == [1.5]


@pytest.mark.parametrize(
    "doc,msg",
    [
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2], "data": [1]}]}, "cannot fill"),
        ({"inputs": [{"name": "x", "datatype": "INT32", "shape": [1], "data": [1.5]}]}, "integers"),
        ({"inputs": [{"name": "x", "datatype": "INT8", "shape": [1], "data": [300]}]}, "do not fit"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [True]}]}, "numbers"),
        ({"inputs": [{"name": "x", "datatype": "FP99", "shape": [1], "data": [1]}]}, "unknown datatype"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [-1], "data": [1]}]}, "non-negative"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1]}]}, "neither"),
        ({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}, {"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}]}, "twice"),
        ({"inputs": "x"}, "non-empty list"),
    ],
)
def test_bad_requests_raise_bad_request(doc, msg):
    with pytest.raises(BadRequest, match=msg):
        parse_infer_request(json.dumps(doc).encode())


def test_nested_json_data_and_deep_nesting():
    req = parse_infer_request(json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [2, 2], "data": [[1, 2], [3, 4]]}]}).encode())
    np.testing.assert_array_equal(req.inputs[0].data, [[1, 2], [3, 4]])
    deep = "[" * 5000 + "1" + "]" * 5000
    with pytest.raises(BadRequest):  # json's own recursion guard or our count check, never a crash
        parse_infer_request(('{"inputs":[{"name":"x","datatype":"FP32","shape":[1],"data":' + deep + "}]}").encode())


def test_validate_inputs_against_card():
    specs = [TensorSpec(name="x", datatype="FP32", shape=[-1, 4])]
    good = [Tensor.from_numpy("x", np.zeros((3, 4), np.float32))]
    validate_inputs(good, specs, max_batch_rows=8)
    with pytest.raises(BadRequest, match="shape"):
        validate_inputs([Tensor.from_numpy("x", np.zeros((3, 5), np.float32))], specs)
    with pytest.raises(BadRequest, match="must be FP32"):
        validate_inputs([Tensor.from_numpy("x", np.zeros((3, 4), np.float64))], specs)
    with pytest.raises(BadRequest, match="at most 2 rows"):
        validate_inputs(good, specs, max_batch_rows=2)
    with pytest.raises(BadRequest, match="missing"):
        validate_inputs([], specs)


def test_select_outputs_defaults_and_binary_flag():
    specs = [TensorSpec(name="a", datatype="FP32", shape=[-1]), TensorSpec(name="b", datatype="FP32", shape=[-1])]
    req = parse_infer_request(json.dumps({"inputs": [{"name": "x", "datatype": "FP32", "shape": [1], "data": [1]}], "parameters": {"binary_data_output": True}}).encode())
    assert select_outputs(req, specs) == [RequestedOutput("a", True), RequestedOutput("b", True)]


def test_decode_body_bounds_decompression():
    import gzip

    small = gzip.compress(b'{"inputs": []}')
    assert decode_body(small, "gzip", 1000) == b'{"inputs": []}'
    bomb = gzip.compress(b"0" * 100_000)
    with pytest.raises(PayloadTooLarge):
        decode_body(bomb, "gzip", 1000)
    with pytest.raises(BadRequest):
        decode_body(b"not gzip", "gzip", 1000)
