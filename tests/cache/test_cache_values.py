import struct

import numpy as np
import pytest

from cache.values import MAGIC, decode_outputs, encode_outputs
from wattgate.errors import CacheUnavailable
from wattgate.tensors import Tensor


def sample_tensors():
    return [
        Tensor.from_numpy("probs", np.linspace(0, 1, 10, dtype=np.float32).reshape(1, 10)),
        Tensor.from_numpy("label", np.array([7], dtype=np.int64)),
        Tensor.from_numpy("words", np.array([["ab", ""], ["ünï", "x" * 70]])),
        Tensor.from_numpy("flags", np.array([True, False])),
        Tensor.from_numpy("half", np.array([1.5, -2.0], dtype=np.float16)),
        Tensor.from_numpy("scalar", np.array(3.25, dtype=np.float64)),
        Tensor.from_numpy("empty", np.zeros((0, 4), dtype=np.int32)),
    ]


def test_round_trip_keeps_names_types_shapes_and_values():
    tensors = sample_tensors()
    decoded = decode_outputs(encode_outputs(tensors))
    assert [(t.name, t.datatype, t.shape) for t in decoded] == [(t.name, t.datatype, t.shape) for t in tensors]
    for before, after in zip(tensors, decoded):
        assert after.data.shape == before.shape
        assert after.raw_bytes() == before.raw_bytes()
    assert decoded[2].data[1, 0] == "ünï".encode()


def test_values_are_not_pickles():
    value = encode_outputs(sample_tensors())
    assert value.startswith(MAGIC)
    assert not value.startswith(b"\x80")  # pickle protocol 2+ opcode


def test_decoded_arrays_cannot_be_mutated_in_place():
    decoded = decode_outputs(encode_outputs(sample_tensors()))
    with pytest.raises(ValueError):
        decoded[0].data[0, 0] = 9.0


def _corruptions(value: bytes):
    header_len = struct.unpack_from("<I", value, 5)[0]
    yield "empty", b""
    yield "truncated", value[:-3]
    yield "trailing", value + b"\x00"
    yield "magic", b"XXXX" + value[4:]
    yield "version", value[:4] + b"\x09" + value[5:]
    yield "header length", value[:5] + struct.pack("<I", 10**9) + value[9:]
    yield "header json", value[:9] + b"{" * header_len + value[9 + header_len :]
    bad_shape = value.replace(b'"shape":[1,10]', b'"shape":[1,11]')
    assert bad_shape != value
    yield "shape vs bytes", bad_shape
    yield "datatype", value.replace(b'"FP32"', b'"FP99"')


@pytest.mark.parametrize("name,corrupt", list(_corruptions(encode_outputs(sample_tensors()))))
def test_corrupt_values_raise_cache_unavailable(name, corrupt):
    with pytest.raises(CacheUnavailable):
        decode_outputs(corrupt)


@pytest.mark.parametrize(
    "tensor",
    [
        Tensor("y", "FP32", (2,), np.array([1.0, 2.0], dtype=np.float64)),  # data wider than the datatype
        Tensor("y", "FP32", (3,), np.array([1.0, 2.0], dtype=np.float32)),  # shape promises more
        Tensor("w", "BYTES", (3,), np.array([b"a", b"b"], dtype=object)),
    ],
)
def test_tensors_that_could_not_decode_are_refused_at_encode(tensor):
    with pytest.raises(ValueError):
        encode_outputs([tensor])
