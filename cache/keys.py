"""Cache keys: a sha256 over model, version, variant, requested outputs and canonical input tensors."""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from typing import Any, Mapping, Sequence

import numpy as np

from wattgate.errors import BadRequest
from wattgate.tensors import Tensor

KEY_NAMESPACE = "wg:v1"
# Bump when the framing below changes, so old entries can never be read as new ones.
_KEY_FORMAT = b"wattgate-cache-key/1"
_LITTLE_ENDIAN_HOST = sys.byteorder == "little"


def cache_key(
    model: str,
    version: str,
    variant: str,
    requested_outputs: Sequence[str],
    inputs: Sequence[Tensor],
    *,
    parameters: Mapping[str, Any] | None = None,
) -> str:
    """``wg:v1:{model}:{version}:{sha256 hex}``; equal for equal tensors however they arrived (JSON or binary).

    Every field is length-prefixed, so no two different requests frame to the same byte stream.
    Requested outputs are a set (order and repeats do not matter); inputs are ordered by name.
    Pass ``variant=""`` when the request does not pin one, and in ``parameters`` every request
    parameter that can change the outputs (transport-only ones such as ``binary_data`` stay out, or
    JSON and binary requests stop sharing entries). Input tensors' own parameters are not hashed.
    """
    h = hashlib.sha256()
    _field(h, _KEY_FORMAT)
    for text in (model, version, variant):
        _field(h, text.encode("utf-8"))
    outputs = sorted(set(requested_outputs))
    _count(h, len(outputs))
    for name in outputs:
        _field(h, name.encode("utf-8"))
    if parameters:
        try:
            canonical = json.dumps(parameters, sort_keys=True, separators=(",", ":"), allow_nan=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise BadRequest(f"request parameters are not plain JSON: {exc}") from None
    else:
        canonical = b"{}"
    _field(h, canonical)
    ordered = sorted(inputs, key=lambda t: t.name)
    _count(h, len(ordered))
    previous = None
    for tensor in ordered:
        if tensor.name == previous:
            raise BadRequest(f"input {tensor.name!r} appears twice")
        previous = tensor.name
        _field(h, tensor.name.encode("utf-8"))
        _field(h, tensor.datatype.encode("ascii"))
        _count(h, len(tensor.shape))
        for dim in tensor.shape:
            h.update(struct.pack("<q", int(dim)))
        _tensor_bytes(h, tensor)
    return f"{KEY_NAMESPACE}:{model}:{version}:{h.hexdigest()}"


def _count(h, n: int) -> None:
    h.update(struct.pack("<Q", n))


def _field(h, data: bytes) -> None:
    h.update(struct.pack("<Q", len(data)))
    h.update(data)


def _tensor_bytes(h, tensor: Tensor) -> None:
    data = tensor.data
    # Fast path: hash the array's own buffer instead of copying it; byte-for-byte what raw_bytes() returns.
    if (
        tensor.datatype != "BYTES"
        and isinstance(data, np.ndarray)
        and data.dtype != np.object_
        and data.flags.c_contiguous
        and (data.dtype.byteorder in "<|" or (data.dtype.byteorder == "=" and _LITTLE_ENDIAN_HOST))
    ):
        _count(h, data.nbytes)
        h.update(data.reshape(-1).view(np.uint8))
        return
    _field(h, tensor.raw_bytes())
