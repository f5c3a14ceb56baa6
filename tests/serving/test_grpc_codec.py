"""The gRPC codec against the messages tritonclient.grpc itself builds and reads."""

from __future__ import annotations

import numpy as np
import pytest
import tritonclient.grpc as tg
from tritonclient.grpc import service_pb2 as pb
from tritonclient.grpc._utils import _get_inference_request

from serving.dataplane import InferAnswer
from serving.grpc_codec import encode_infer_message, parse_infer_message, read_parameters, write_parameters
from serving.protocol import RequestedOutput, parse_infer_request
from wattgate.errors import BadRequest
from wattgate.tensors import Tensor


def _tritonclient_request(arrays: dict[str, tuple[np.ndarray, str]], outputs=(), parameters=None, request_id=""):
    inputs = []
    for name, (arr, dt) in arrays.items():
        i = tg.InferInput(name, list(arr.shape), dt)
        i.set_data_from_numpy(arr)
        inputs.append(i)
    outs = [tg.InferRequestedOutput(n) for n in outputs]
    return _get_inference_request("m", inputs, "", request_id, outs, 0, False, False, 0, None, parameters)


def test_parses_tritonclient_raw_inputs_of_every_kind():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    ids = np.array([[1, 2], [3, 4], [5, 6]], dtype=np.int64)
    half = np.array([0.5, -2, 1e4], dtype=np.float16)
    text = np.array([b"hello", "wörld".encode(), b""], dtype=np.object_)
    msg = _tritonclient_request({"x": (x, "FP32"), "ids": (ids, "INT64"), "h": (half, "FP16"), "text": (text, "BYTES")},
                                outputs=["y"], parameters={"variant": "int8", "slo_ms": 50}, request_id="r-1")
    req = parse_infer_message(msg)
    got = {t.name: t for t in req.inputs}
    np.testing.assert_array_equal(got["x"].data, x)
    np.testing.assert_array_equal(got["ids"].data, ids)
    np.testing.assert_array_equal(got["h"].data, half)
    assert list(got["text"].data) == list(text)
    assert got["x"].shape == (3, 4) and req.rows == 3
    assert req.outputs == [RequestedOutput("y", True)]
    assert req.parameters == {"variant": "int8", "slo_ms": 50} and req.id == "r-1"


def test_typed_contents_parse_to_the_same_tensors_as_json():
    x = np.arange(6, dtype=np.float32).reshape(2, 3) / 4
    msg = pb.ModelInferRequest(model_name="m")
    msg.inputs.add(name="x", datatype="FP32", shape=[2, 3]).contents.fp32_contents.extend(x.reshape(-1))
    msg.inputs.add(name="n", datatype="INT8", shape=[2]).contents.int_contents.extend([-3, 7])
    msg.inputs.add(name="s", datatype="BYTES", shape=[1]).contents.bytes_contents.append(b"hi")
    from_grpc = {t.name: t for t in parse_infer_message(msg).inputs}
    from_json = {t.name: t for t in parse_infer_request(
        b'{"inputs":[{"name":"x","datatype":"FP32","shape":[2,3],"data":[0,0.25,0.5,0.75,1,1.25]},'
        b'{"name":"n","datatype":"INT8","shape":[2],"data":[-3,7]},{"name":"s","datatype":"BYTES","shape":[1],"data":["hi"]}]}').inputs}
    for name in ("x", "n", "s"):
        assert from_grpc[name] == from_json[name]  # name, datatype, shape
        assert from_grpc[name].data.dtype == from_json[name].data.dtype
        np.testing.assert_array_equal(from_grpc[name].data, from_json[name].data)


def _one_input(datatype="FP32", shape=(1, 4), raw=None, fp32=None):
    msg = pb.ModelInferRequest(model_name="m")
    t = msg.inputs.add(name="x", datatype=datatype, shape=list(shape))
    if fp32 is not None:
        t.contents.fp32_contents.extend(fp32)
    if raw is not None:
        msg.raw_input_contents.append(raw)
    return msg


@pytest.mark.parametrize("msg,fragment", [
    (pb.ModelInferRequest(model_name="m"), "non-empty"),
    (_one_input(raw=b"\0" * 15), "15 bytes of FP32 cannot have shape [1, 4]"),
    (_one_input(shape=(1 << 40, 1 << 20), raw=b"\0" * 16), "cannot have shape"),  # huge declared shape, nothing allocated
    (_one_input(shape=(1 << 40,), fp32=[1.0]), "1 values cannot fill"),
    (_one_input(shape=[1] * 9, raw=b"\0" * 4), "at most 8"),
    (_one_input(datatype="FP8", raw=b"\0" * 4), "unknown datatype"),
    (_one_input(datatype="FP16", shape=(1,), fp32=[1.0]), "only in raw_input_contents"),
    (_one_input(datatype="BYTES", shape=(2,), raw=b"\x05\0\0\0ab"), "truncated"),
    (_one_input(fp32=[1, 2, 3, 4], raw=b"\0" * 16), "both contents and raw"),
])
def test_malformed_messages_are_bad_requests(msg, fragment):
    with pytest.raises(BadRequest, match=fragment.replace("[", r"\[").replace("]", r"\]")):
        parse_infer_message(msg)


def test_raw_contents_must_cover_every_input_and_ints_must_fit():
    msg = _one_input(raw=b"\0" * 16)
    msg.inputs.add(name="y", datatype="FP32", shape=[1, 4])
    with pytest.raises(BadRequest, match="1 tensors for 2 inputs"):
        parse_infer_message(msg)
    small = pb.ModelInferRequest(model_name="m")
    small.inputs.add(name="n", datatype="INT8", shape=[1]).contents.int_contents.append(300)
    with pytest.raises(BadRequest, match="do not fit INT8"):
        parse_infer_message(small)


def test_response_reads_back_through_tritonclient_with_figures_in_parameters():
    probs = np.array([[0.25, 0.75], [1.0, 0.0]], dtype=np.float32)
    labels = np.array([1, 0], dtype=np.int64)
    words = np.array([b"a", b"bc"], dtype=np.object_)
    outputs = [Tensor.from_numpy("probabilities", probs), Tensor.from_numpy("label", labels), Tensor.from_numpy("w", words)]
    params = {"energy_j": 0.012, "energy_measured": False, "batch_size": 2, "pool": "fr-x86", "carbon_g": None}
    answer = InferAnswer("digits", "1", outputs, [RequestedOutput(t.name, True) for t in outputs], "req-9", params)
    response = pb.ModelInferResponse.FromString(encode_infer_message(answer).SerializeToString())
    result = tg.InferResult(response)
    np.testing.assert_array_equal(result.as_numpy("probabilities"), probs)
    np.testing.assert_array_equal(result.as_numpy("label"), labels)
    assert list(result.as_numpy("w")) == [b"a", b"bc"]
    assert (response.model_name, response.model_version, response.id) == ("digits", "1", "req-9")
    # An unknown carbon figure has no null in a protobuf map: it is left out, not sent as 0.
    assert read_parameters(response.parameters) == {"energy_j": 0.012, "energy_measured": False, "batch_size": 2, "pool": "fr-x86"}


def test_parameters_keep_their_types():
    msg = pb.ModelInferResponse()
    write_parameters(msg.parameters, {"b": True, "i": 3, "f": 0.5, "s": "x", "o": ["listed"]})
    kinds = {k: v.WhichOneof("parameter_choice") for k, v in msg.parameters.items()}
    assert kinds == {"b": "bool_param", "i": "int64_param", "f": "double_param", "s": "string_param", "o": "string_param"}
