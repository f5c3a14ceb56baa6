"""Tensors as the Open Inference Protocol names them: datatype strings, shapes and numpy arrays."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from wattgate.errors import BadRequest

# OIP / Triton datatype -> numpy dtype. BYTES are object arrays of ``bytes``.
_TO_NUMPY: dict[str, Any] = {
    "BOOL": np.bool_,
    "UINT8": np.uint8,
    "UINT16": np.uint16,
    "UINT32": np.uint32,
    "UINT64": np.uint64,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "FP16": np.float16,
    "FP32": np.float32,
    "FP64": np.float64,
    "BYTES": np.object_,
}
_FROM_NUMPY = {np.dtype(v).str: k for k, v in _TO_NUMPY.items() if k != "BYTES"}

DATATYPES = tuple(_TO_NUMPY)


def numpy_dtype(datatype: str) -> np.dtype:
    try:
        return np.dtype(_TO_NUMPY[datatype])
    except KeyError:
        raise BadRequest(f"unknown datatype {datatype!r}; expected one of {', '.join(DATATYPES)}") from None


def datatype_of(array: np.ndarray) -> str:
    if array.dtype == np.object_ or array.dtype.kind in ("S", "U"):
        return "BYTES"
    try:
        return _FROM_NUMPY[array.dtype.str]
    except KeyError:
        raise BadRequest(f"numpy dtype {array.dtype} has no Open Inference Protocol datatype") from None


@dataclass(frozen=True)
class Tensor:
    """A named tensor; ``data`` is a numpy array whose shape equals ``shape``."""

    name: str
    datatype: str
    shape: tuple[int, ...]
    data: np.ndarray = field(compare=False, repr=False)
    parameters: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def from_numpy(cls, name: str, array: np.ndarray) -> "Tensor":
        dt = datatype_of(array)
        if dt == "BYTES" and array.dtype != np.object_:
            array = np.array([_as_bytes(x) for x in array.reshape(-1)], dtype=np.object_).reshape(array.shape)
        return cls(name=name, datatype=dt, shape=tuple(int(d) for d in array.shape), data=array)

    def raw_bytes(self) -> bytes:
        """The tensor's bytes as the binary tensor extension lays them out (little-endian, row-major)."""
        if self.datatype == "BYTES":
            return serialize_bytes_tensor(self.data)
        return np.ascontiguousarray(self.data).astype(self.data.dtype.newbyteorder("<"), copy=False).tobytes()

    @property
    def batch_size(self) -> int:
        return self.shape[0] if self.shape else 1


def _as_bytes(x: Any) -> bytes:
    if isinstance(x, bytes):
        return x
    if isinstance(x, str):
        return x.encode("utf-8")
    return str(x).encode("utf-8")


def serialize_bytes_tensor(array: np.ndarray) -> bytes:
    """BYTES elements, each prefixed by its 4-byte little-endian length (Triton's layout)."""
    out = bytearray()
    for item in array.reshape(-1):
        b = _as_bytes(item)
        out += len(b).to_bytes(4, "little")
        out += b
    return bytes(out)


def deserialize_bytes_tensor(buf: bytes | memoryview, count: int) -> np.ndarray:
    """Inverse of :func:`serialize_bytes_tensor`; ``count`` is the number of elements expected."""
    view = memoryview(buf)
    items: list[bytes] = []
    offset = 0
    while offset < len(view):
        if offset + 4 > len(view):
            raise BadRequest("truncated BYTES tensor: length prefix cut short")
        n = int.from_bytes(view[offset : offset + 4], "little")
        offset += 4
        if offset + n > len(view):
            raise BadRequest("truncated BYTES tensor: element longer than the data")
        items.append(bytes(view[offset : offset + n]))
        offset += n
    if len(items) != count:
        raise BadRequest(f"BYTES tensor holds {len(items)} elements, shape needs {count}")
    arr = np.empty(count, dtype=np.object_)
    arr[:] = items
    return arr


def element_count(shape: tuple[int, ...]) -> int:
    n = 1
    for d in shape:
        n *= d
    return n
