"""Cached values without pickle: a small header (magic, version, tensor names/types/shapes/lengths) plus raw bytes."""

from __future__ import annotations

import struct
from typing import Sequence

import numpy as np
import orjson

from wattgate.errors import CacheUnavailable, WattgateError
from wattgate.tensors import DATATYPES, Tensor, deserialize_bytes_tensor, element_count, numpy_dtype

MAGIC = b"WGCV"
FORMAT_VERSION = 1
# magic, format version, header length; the JSON header follows, then the tensors' raw bytes in order.
_PREFIX = struct.Struct("<4sBI")
# A header larger than this is corruption, not a real set of outputs.
_MAX_HEADER_BYTES = 1 << 20


def encode_outputs(tensors: Sequence[Tensor]) -> bytes:
    """Raises ValueError for a tensor whose data does not match its datatype and shape."""
    payloads = [t.raw_bytes() for t in tensors]
    for t, p in zip(tensors, payloads):
        count = element_count(tuple(t.shape))
        # A value that cannot decode would be recomputed and rewritten on every request: refuse it here.
        if t.data.size != count or (t.datatype != "BYTES" and len(p) != count * numpy_dtype(t.datatype).itemsize):
            raise ValueError(f"output {t.name!r}: {len(p)} bytes of data do not fit {t.datatype}{list(t.shape)}")
    header = orjson.dumps(
        [
            {"name": t.name, "datatype": t.datatype, "shape": [int(d) for d in t.shape], "nbytes": len(p)}
            for t, p in zip(tensors, payloads)
        ]
    )
    return b"".join([_PREFIX.pack(MAGIC, FORMAT_VERSION, len(header)), header, *payloads])


def decode_outputs(value: bytes) -> list[Tensor]:
    """Inverse of :func:`encode_outputs`; raises CacheUnavailable on anything malformed.

    Fixed-size tensors are zero-copy, read-only views of ``value``.
    """
    try:
        return _decode(memoryview(value))
    except CacheUnavailable:
        raise
    except (ValueError, TypeError, KeyError, UnicodeDecodeError, struct.error, WattgateError) as exc:  # orjson's errors are ValueErrors
        raise CacheUnavailable(f"corrupt cache value: {exc}") from exc


def _decode(view: memoryview) -> list[Tensor]:
    if len(view) < _PREFIX.size:
        raise CacheUnavailable("corrupt cache value: shorter than its header")
    magic, version, header_len = _PREFIX.unpack_from(view)
    if magic != MAGIC:
        raise CacheUnavailable("corrupt cache value: bad magic")
    if version != FORMAT_VERSION:
        raise CacheUnavailable(f"cache value format {version} is not {FORMAT_VERSION}")
    start = _PREFIX.size
    if header_len > _MAX_HEADER_BYTES or start + header_len > len(view):
        raise CacheUnavailable("corrupt cache value: header length out of range")
    entries = orjson.loads(view[start : start + header_len])
    if not isinstance(entries, list):
        raise CacheUnavailable("corrupt cache value: header is not a list")
    offset = start + header_len
    tensors = []
    for entry in entries:
        name, datatype, shape, nbytes = entry["name"], entry["datatype"], tuple(entry["shape"]), entry["nbytes"]
        if not isinstance(name, str) or datatype not in DATATYPES or not isinstance(nbytes, int) or nbytes < 0:
            raise CacheUnavailable("corrupt cache value: bad tensor entry")
        if not all(isinstance(d, int) and d >= 0 for d in shape):
            raise CacheUnavailable("corrupt cache value: bad shape")
        if offset + nbytes > len(view):
            raise CacheUnavailable("corrupt cache value: truncated tensor data")
        chunk = view[offset : offset + nbytes]
        offset += nbytes
        count = element_count(shape)
        if datatype == "BYTES":
            data = deserialize_bytes_tensor(chunk, count).reshape(shape)
        else:
            dtype = numpy_dtype(datatype).newbyteorder("<")
            if nbytes != count * dtype.itemsize:
                raise CacheUnavailable(f"corrupt cache value: {name} holds {nbytes} bytes, shape needs {count * dtype.itemsize}")
            data = np.frombuffer(chunk, dtype=dtype).reshape(shape)
        tensors.append(Tensor(name=name, datatype=datatype, shape=shape, data=data))
    if offset != len(view):
        raise CacheUnavailable("corrupt cache value: trailing bytes")
    return tensors
