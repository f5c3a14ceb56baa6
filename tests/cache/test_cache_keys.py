import json

import numpy as np
import pytest

from cache.keys import cache_key
from wattgate.errors import BadRequest
from wattgate.tensors import Tensor, deserialize_bytes_tensor, numpy_dtype, serialize_bytes_tensor


def from_json(name, datatype, shape, flat):
    """As the REST handler builds a tensor from a JSON body: a flat list, reshaped."""
    if datatype == "BYTES":
        arr = np.array(flat).reshape(shape)
        return Tensor.from_numpy(name, arr)
    return Tensor.from_numpy(name, np.asarray(flat, dtype=numpy_dtype(datatype)).reshape(shape))


def from_binary(name, datatype, shape, raw: bytes):
    """As the binary tensor extension builds one: raw little-endian bytes after the JSON header."""
    if datatype == "BYTES":
        count = int(np.prod(shape))
        return Tensor(name, "BYTES", tuple(shape), deserialize_bytes_tensor(raw, count).reshape(shape))
    arr = np.frombuffer(raw, dtype=numpy_dtype(datatype).newbyteorder("<")).reshape(shape)
    return Tensor(name, datatype, tuple(shape), arr)


CASES = [
    ("FP32", [2, 3], [0.5, -1.25, 3.0, 1e-7, 0.0, 42.0]),
    ("INT64", [4], [1, -2, 3, 2**40]),
    ("BOOL", [1, 3], [True, False, True]),
    ("FP16", [2], [1.5, -0.25]),
    ("UINT8", [2, 2], [0, 255, 7, 8]),
]


@pytest.mark.parametrize("datatype,shape,flat", CASES)
def test_json_and_binary_inputs_give_the_same_key(datatype, shape, flat):
    # The JSON body goes through a real JSON round trip, the binary one through raw bytes.
    json_flat = json.loads(json.dumps(flat))
    via_json = from_json("x", datatype, shape, json_flat)
    raw = np.asarray(flat, dtype=numpy_dtype(datatype)).astype(numpy_dtype(datatype).newbyteorder("<")).tobytes()
    via_binary = from_binary("x", datatype, shape, raw)
    assert cache_key("m", "1", "", ["y"], [via_json]) == cache_key("m", "1", "", ["y"], [via_binary])


def test_bytes_tensors_from_json_strings_and_binary_payload_share_a_key():
    words = ["héllo", "", "wörld", "a" * 300]
    via_json = from_json("text", "BYTES", [2, 2], json.loads(json.dumps(words)))
    raw = serialize_bytes_tensor(np.array([w.encode() for w in words], dtype=object))
    via_binary = from_binary("text", "BYTES", [2, 2], raw)
    assert cache_key("m", "1", "v", [], [via_json]) == cache_key("m", "1", "v", [], [via_binary])
    other = from_json("text", "BYTES", [2, 2], ["héllo", "", "wörld", "a" * 299])
    assert cache_key("m", "1", "v", [], [other]) != cache_key("m", "1", "v", [], [via_json])


def test_big_endian_and_strided_arrays_hash_like_their_canonical_form():
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    canonical = Tensor.from_numpy("x", np.ascontiguousarray(base.T))
    strided = Tensor.from_numpy("x", base.T)  # Fortran-ordered view, not C-contiguous
    big = Tensor("x", "FP32", (4, 3), np.ascontiguousarray(base.T).astype(">f4"))
    keys = {cache_key("m", "1", "", [], [t]) for t in (canonical, strided, big)}
    assert len(keys) == 1


def test_input_order_and_requested_output_order_do_not_matter():
    a = Tensor.from_numpy("a", np.array([1, 2], dtype=np.int32))
    b = Tensor.from_numpy("b", np.array([3.0], dtype=np.float32))
    k1 = cache_key("m", "1", "", ["p", "q"], [a, b])
    k2 = cache_key("m", "1", "", ["q", "p", "q"], [b, a])
    assert k1 == k2


def test_every_field_changes_the_key():
    x = Tensor.from_numpy("x", np.array([[1, 2, 3, 4]], dtype=np.int32))
    base = cache_key("m", "1", "fp32", ["y"], [x])
    variants = [
        cache_key("n", "1", "fp32", ["y"], [x]),
        cache_key("m", "2", "fp32", ["y"], [x]),
        cache_key("m", "1", "int8", ["y"], [x]),
        cache_key("m", "1", "fp32", ["z"], [x]),
        cache_key("m", "1", "fp32", [], [x]),
        cache_key("m", "1", "fp32", ["y"], [Tensor.from_numpy("x2", x.data)]),
        cache_key("m", "1", "fp32", ["y"], [Tensor.from_numpy("x", x.data.view(np.uint32))]),  # same bytes, other datatype
        cache_key("m", "1", "fp32", ["y"], [Tensor.from_numpy("x", x.data.reshape(2, 2))]),  # same bytes, other shape
        cache_key("m", "1", "fp32", ["y"], [Tensor.from_numpy("x", np.array([[1, 2, 3, 5]], dtype=np.int32))]),
    ]
    assert base not in variants
    assert len(set(variants)) == len(variants)


def test_framing_is_unambiguous():
    # Naive concatenation would make these two identical.
    assert cache_key("m", "1", "ab", ["c"], []) != cache_key("m", "1", "a", ["bc"], [])
    t1 = Tensor.from_numpy("x", np.array([b"ab", b"c"], dtype=object))
    t2 = Tensor.from_numpy("x", np.array([b"a", b"bc"], dtype=object))
    assert cache_key("m", "1", "", [], [t1]) != cache_key("m", "1", "", [], [t2])


def test_key_is_namespaced_by_model_and_version():
    key = cache_key("digits", "3", "", [], [Tensor.from_numpy("x", np.zeros(2, dtype=np.float32))])
    prefix, digest = key.rsplit(":", 1)
    assert prefix == "wg:v1:digits:3"
    assert len(digest) == 64 and int(digest, 16) >= 0


def test_duplicate_input_names_are_rejected():
    x = Tensor.from_numpy("x", np.zeros(2, dtype=np.float32))
    with pytest.raises(BadRequest):
        cache_key("m", "1", "", [], [x, x])


def test_parameters_that_change_outputs_change_the_key_whatever_their_order():
    x = [Tensor.from_numpy("x", np.zeros(2, dtype=np.float32))]
    plain = cache_key("m", "1", "", [], x)
    assert cache_key("m", "1", "", [], x, parameters={}) == plain
    top3 = cache_key("m", "1", "", [], x, parameters={"top_k": 3, "temperature": 0.5})
    assert top3 == cache_key("m", "1", "", [], x, parameters={"temperature": 0.5, "top_k": 3})
    assert top3 not in (plain, cache_key("m", "1", "", [], x, parameters={"top_k": 4, "temperature": 0.5}))
    with pytest.raises(BadRequest):
        cache_key("m", "1", "", [], x, parameters={"when": object()})
