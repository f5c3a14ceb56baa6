"""Open Inference Protocol v2 (KServe V2 / Triton) REST codec, JSON and binary tensor extension.

Pure bytes in, bytes out: no HTTP server and no Ray, so it is unit-tested directly. The binary
layout follows Triton's binary tensor data extension exactly as ``tritonclient.http`` sends it:
a JSON header of ``Inference-Header-Content-Length`` bytes, then each binary tensor's raw bytes in
the order the header lists them, sized by ``parameters.binary_data_size``.
"""

from __future__ import annotations

import json
import zlib
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
import orjson

from models.card import TensorSpec
from wattgate.errors import BadRequest, PayloadTooLarge
from wattgate.tensors import Tensor, deserialize_bytes_tensor, element_count, numpy_dtype, serialize_bytes_tensor

HEADER_LENGTH = "inference-header-content-length"
MAX_RANK = 8
MAX_ID_CHARS = 256


@dataclass(frozen=True)
class RequestedOutput:
    name: str
    binary: bool


@dataclass
class InferRequest:
    inputs: list[Tensor]
    outputs: list[RequestedOutput] | None  # None: every output, as JSON unless binary_data_output
    id: str | None = None
    parameters: dict[str, Any] = field(default_factory=dict)
    binary_default: bool = False

    @property
    def rows(self) -> int:
        return self.inputs[0].batch_size if self.inputs else 0


def decode_body(body: bytes, content_encoding: str | None, max_bytes: int) -> bytes:
    """Undo gzip/deflate (tritonclient's request_compression_algorithm) without a decompression bomb."""
    if not content_encoding or content_encoding == "identity":
        return body
    if content_encoding not in ("gzip", "deflate"):
        raise BadRequest(f"unsupported Content-Encoding {content_encoding!r}")
    d = zlib.decompressobj(wbits=31 if content_encoding == "gzip" else 15)
    try:
        out = d.decompress(body, max_bytes + 1)
    except zlib.error as exc:
        raise BadRequest(f"body is not valid {content_encoding}: {exc}") from exc
    if len(out) > max_bytes or d.unconsumed_tail:
        raise PayloadTooLarge(f"decompressed body exceeds the {max_bytes}-byte limit")
    return out


def parse_infer_request(body: bytes, header_length: str | int | None = None) -> InferRequest:
    json_part, binary = _split(body, header_length)
    try:
        # orjson: strict RFC 8259 (no NaN literals), UTF-8 checked, nesting capped; ~5x json's speed.
        doc = orjson.loads(json_part)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"request body is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise BadRequest("request body must be a JSON object")
    raw_inputs = doc.get("inputs")
    if not isinstance(raw_inputs, list) or not raw_inputs:
        raise BadRequest("'inputs' must be a non-empty list")
    params = doc.get("parameters") or {}
    if not isinstance(params, dict):
        raise BadRequest("'parameters' must be an object")
    offset = 0
    inputs = []
    for i, raw in enumerate(raw_inputs):
        tensor, used = _parse_input(raw, i, binary, offset)
        offset += used
        inputs.append(tensor)
    if offset != len(binary):
        raise BadRequest(f"binary section holds {len(binary)} bytes but the inputs declare {offset}")
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        raise BadRequest("an input name appears twice")
    binary_default = bool(params.get("binary_data_output", False))
    outputs = None
    if doc.get("outputs") is not None:
        if not isinstance(doc["outputs"], list):
            raise BadRequest("'outputs' must be a list")
        outputs = []
        for o in doc["outputs"]:
            if not isinstance(o, dict) or not isinstance(o.get("name"), str):
                raise BadRequest("each requested output needs a 'name'")
            op = o.get("parameters") or {}
            outputs.append(RequestedOutput(o["name"], bool(op.get("binary_data", binary_default))))
    rid = doc.get("id")
    if isinstance(rid, int) and not isinstance(rid, bool):
        rid = str(rid)
    if rid is not None and (not isinstance(rid, str) or not 0 < len(rid) <= MAX_ID_CHARS):
        raise BadRequest(f"'id' must be a string of 1 to {MAX_ID_CHARS} characters")
    return InferRequest(inputs, outputs, rid, params, binary_default)


def _split(body: bytes, header_length) -> tuple[bytes, memoryview]:
    if header_length is None or header_length == "":
        return body, memoryview(b"")
    try:
        n = int(header_length)
    except (TypeError, ValueError):
        raise BadRequest(f"Inference-Header-Content-Length {header_length!r} is not an integer") from None
    if n < 0 or n > len(body):
        raise BadRequest(f"Inference-Header-Content-Length {n} does not fit a {len(body)}-byte body")
    view = memoryview(body)
    return bytes(view[:n]), view[n:]


def _parse_input(raw: Any, index: int, binary: memoryview, offset: int) -> tuple[Tensor, int]:
    if not isinstance(raw, dict):
        raise BadRequest(f"input {index} must be an object")
    name, datatype, shape = raw.get("name"), raw.get("datatype"), raw.get("shape")
    if not isinstance(name, str) or not name:
        raise BadRequest(f"input {index} needs a string 'name'")
    if not isinstance(datatype, str):
        raise BadRequest(f"input {name!r} needs a string 'datatype'")
    if not isinstance(shape, list) or len(shape) > MAX_RANK or not all(isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape):
        raise BadRequest(f"input {name!r} needs 'shape' as a list of at most {MAX_RANK} non-negative integers")
    dtype = numpy_dtype(datatype)
    count = element_count(tuple(shape))
    params = raw.get("parameters") or {}
    size = params.get("binary_data_size") if isinstance(params, dict) else None
    if size is not None:
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise BadRequest(f"input {name!r}: binary_data_size {size!r} does not fit the binary section")
        chunk = binary[offset : offset + size]
        if datatype == "BYTES":
            array = deserialize_bytes_tensor(chunk, count)
        else:
            if size != count * dtype.itemsize:
                raise BadRequest(f"input {name!r}: {size} bytes of {datatype} cannot have shape {shape}")
            array = np.frombuffer(chunk, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
        return Tensor(name, datatype, tuple(shape), array.reshape(shape)), size
    if "data" not in raw:
        raise BadRequest(f"input {name!r} has neither 'data' nor binary_data_size")
    array = _json_array(raw["data"], name, datatype, dtype, count)
    return Tensor(name, datatype, tuple(shape), array.reshape(shape)), 0


def _json_array(data: Any, name: str, datatype: str, dtype: np.dtype, count: int) -> np.ndarray:
    flat = _flatten(data)
    if len(flat) != count:
        raise BadRequest(f"input {name!r}: {len(flat)} values cannot fill its shape ({count} elements)")
    if datatype == "BYTES":
        if not all(isinstance(v, str) for v in flat):
            raise BadRequest(f"input {name!r}: BYTES data must be strings")
        arr = np.empty(count, dtype=np.object_)
        arr[:] = [v.encode("utf-8") for v in flat]
        return arr
    kinds = set(map(type, flat))  # one C-level pass instead of an isinstance() per element
    if datatype == "BOOL":
        if kinds - {bool}:
            raise BadRequest(f"input {name!r}: BOOL data must be true/false")
    elif kinds - {int, float}:
        raise BadRequest(f"input {name!r}: {datatype} data must be numbers")
    elif dtype.kind in "iu" and float in kinds:
        raise BadRequest(f"input {name!r}: {datatype} data must be integers")
    try:
        with np.errstate(over="raise", invalid="raise"):
            arr = np.asarray(flat, dtype=np.float64 if dtype.kind == "f" else None)
            out = arr.astype(dtype)
        if dtype.kind in "iu" and not np.array_equal(out, arr):
            raise OverflowError
    except (OverflowError, FloatingPointError, ValueError, TypeError):
        raise BadRequest(f"input {name!r}: values do not fit {datatype}") from None
    return out


def _flatten(data: Any) -> list:
    if not isinstance(data, list):
        return [data]
    if not data or not isinstance(data[0], list):
        return data
    out: list = []
    stack = [data]
    while stack:  # iterative: a hostile nesting depth cannot blow the recursion limit
        item = stack.pop()
        if isinstance(item, list):
            stack.extend(reversed(item))
        else:
            out.append(item)
    return out


def validate_inputs(inputs: Sequence[Tensor], specs: Sequence[TensorSpec], max_batch_rows: int | None = None) -> None:
    """Names, datatypes and shapes against the model's metadata; -1 matches any size."""
    by_name = {t.name: t for t in inputs}
    expected = {s.name for s in specs}
    unknown = sorted(set(by_name) - expected)
    if unknown:
        raise BadRequest(f"unknown input(s) {unknown}; the model takes {sorted(expected)}")
    rows = None
    for spec in specs:
        t = by_name.get(spec.name)
        if t is None:
            raise BadRequest(f"missing input {spec.name!r}")
        if t.datatype != spec.datatype:
            raise BadRequest(f"input {spec.name!r} must be {spec.datatype}, got {t.datatype}")
        if len(t.shape) != len(spec.shape) or any(s != -1 and s != d for s, d in zip(spec.shape, t.shape)):
            raise BadRequest(f"input {spec.name!r} must have shape {spec.shape} (-1 = any), got {list(t.shape)}")
        if t.shape and rows is None:
            rows = t.shape[0]
        elif t.shape and t.shape[0] != rows:
            raise BadRequest("all inputs must have the same number of rows (axis 0)")
    if rows == 0:
        raise BadRequest("a request needs at least one row")
    if max_batch_rows is not None and rows is not None and rows > max_batch_rows:
        raise BadRequest(f"a request may carry at most {max_batch_rows} rows, got {rows}")


def select_outputs(request: InferRequest, specs: Sequence[TensorSpec]) -> list[RequestedOutput]:
    names = [s.name for s in specs]
    if request.outputs is None:
        return [RequestedOutput(n, request.binary_default) for n in names]
    for o in request.outputs:
        if o.name not in names:
            raise BadRequest(f"unknown output {o.name!r}; the model has {names}")
    return request.outputs


def encode_infer_response(
    model: str,
    version: str,
    outputs: Sequence[Tensor],
    requested: Sequence[RequestedOutput],
    request_id: str | None,
    parameters: dict[str, Any],
) -> tuple[bytes, dict[str, str]]:
    binary_flags = {o.name: o.binary for o in requested}
    out_docs, blobs, arrays = [], [], []
    for t in outputs:
        doc: dict[str, Any] = {"name": t.name, "datatype": t.datatype, "shape": list(t.shape)}
        if binary_flags.get(t.name):
            raw = t.raw_bytes()
            doc["parameters"] = {"binary_data_size": len(raw)}
            blobs.append(raw)
        elif t.datatype == "BYTES":
            doc["data"] = [b.decode("utf-8", errors="replace") for b in t.data.reshape(-1)]
        else:
            doc["data"] = _flat(t.data.astype(np.float32) if t.datatype == "FP16" else t.data)
            arrays.append(doc["data"])
        out_docs.append(doc)
    head: dict[str, Any] = {"model_name": model, "model_version": version, "outputs": out_docs, "parameters": parameters}
    if request_id is not None:
        head["id"] = request_id
    header = _dumps(head, arrays)
    if not blobs:
        return header, {"content-type": "application/json"}
    return header + b"".join(blobs), {
        "content-type": "application/octet-stream",
        "inference-header-content-length": str(len(header)),
    }


_HEADER_NAMES = {
    "energy_j": "x-energy-j",
    "energy_method": "x-energy-method",
    "carbon_g": "x-carbon-g",
    "intensity_g_per_kwh": "x-intensity-g-per-kwh",
    "region": "x-region",
    "hardware": "x-hardware",
    "variant": "x-variant",
    "pool": "x-pool",
    "cache": "x-cache",
    "route_reason": "x-route-reason",
}
_ASCII = str.maketrans({"≤": "<=", "≥": ">=", "\r": " ", "\n": " "})


_reason_headers: dict[str, str] = {}  # route reason -> its header value; reasons come from a small set


def _reason_header(reason: str) -> str:
    value = _reason_headers.get(reason)
    if value is None:
        value = reason.translate(_ASCII).encode("ascii", "replace").decode("ascii")
        if len(_reason_headers) < 4096:
            _reason_headers[reason] = value
    return value


def parameter_headers(params: dict[str, Any]) -> dict[str, str]:
    """A response's key figures as headers too; header values must be single-line latin-1, so ASCII."""
    out = {}
    for key, header in _HEADER_NAMES.items():
        value = params.get(key)
        if value is None:
            continue
        if isinstance(value, float):
            out[header] = f"{value:.6g}"
        elif key == "route_reason":  # the only free text
            out[header] = _reason_header(value)
        else:
            out[header] = str(value)
    return out


def _flat(data: np.ndarray) -> np.ndarray:
    """1-D, contiguous and native-endian: what orjson serialises without a Python list."""
    flat = np.ascontiguousarray(data.reshape(-1))
    return flat if flat.dtype.isnative else flat.astype(flat.dtype.newbyteorder("="))


def _dumps(doc: dict[str, Any], arrays: list[np.ndarray]) -> bytes:
    # orjson writes NaN/inf as null; Triton and its clients use json's NaN/Infinity, so keep those.
    if any(a.dtype.kind == "f" and not np.isfinite(a).all() for a in arrays):
        return json.dumps(doc, separators=(",", ":"), default=_plain).encode()
    return orjson.dumps(doc, option=orjson.OPT_SERIALIZE_NUMPY, default=str)


def _plain(value: Any) -> Any:
    return value.tolist() if isinstance(value, (np.ndarray, np.generic)) else str(value)


__all__ = [
    "InferRequest",
    "RequestedOutput",
    "decode_body",
    "encode_infer_response",
    "parameter_headers",
    "parse_infer_request",
    "select_outputs",
    "serialize_bytes_tensor",
    "validate_inputs",
]
