"""Open Inference Protocol over gRPC: ``inference.GRPCInferenceService`` messages <-> the data plane's values.

Pure protobuf conversion (tritonclient's generated ``service_pb2``, no vendored proto), no server:
the gRPC front end (``gateway/grpc_api.py``) hands ``parse_infer_message`` and ``encode_infer_message``
to ``DataPlane.serve``, so both protocols share every step between parsing and encoding. Inputs come
as typed ``contents`` or as ``raw_input_contents`` (little-endian, BYTES length-prefixed as in the
binary tensor extension); outputs always go out as ``raw_output_contents``, as Triton sends them.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from tritonclient.grpc import service_pb2 as pb

from serving.dataplane import InferAnswer
from serving.protocol import MAX_ID_CHARS, MAX_RANK, InferRequest, RequestedOutput
from wattgate.errors import BadRequest
from wattgate.tensors import Tensor, deserialize_bytes_tensor, element_count, numpy_dtype

# Datatype -> its typed field in InferTensorContents, and the wide dtype protobuf hands back for it.
# FP16 (and BF16) have no typed field: they travel in raw_input_contents only.
_CONTENTS: dict[str, tuple[str, Any]] = {
    "BOOL": ("bool_contents", np.bool_),
    "INT8": ("int_contents", np.int64),
    "INT16": ("int_contents", np.int64),
    "INT32": ("int_contents", np.int64),
    "INT64": ("int64_contents", np.int64),
    "UINT8": ("uint_contents", np.uint64),
    "UINT16": ("uint_contents", np.uint64),
    "UINT32": ("uint_contents", np.uint64),
    "UINT64": ("uint64_contents", np.uint64),
    "FP32": ("fp32_contents", np.float32),
    "FP64": ("fp64_contents", np.float64),
    "BYTES": ("bytes_contents", None),
}


def parse_infer_message(msg: pb.ModelInferRequest) -> InferRequest:
    """A ModelInferRequest as the data plane's InferRequest; BadRequest for anything malformed."""
    if not msg.inputs:
        raise BadRequest("'inputs' must be a non-empty list")
    raw = msg.raw_input_contents
    if raw and len(raw) != len(msg.inputs):
        raise BadRequest(f"raw_input_contents holds {len(raw)} tensors for {len(msg.inputs)} inputs")
    inputs = [_input(t, raw[i] if raw else None) for i, t in enumerate(msg.inputs)]
    names = [t.name for t in inputs]
    if len(set(names)) != len(names):
        raise BadRequest("an input name appears twice")
    outputs = None
    if msg.outputs:
        if not all(o.name for o in msg.outputs):
            raise BadRequest("each requested output needs a 'name'")
        outputs = [RequestedOutput(o.name, True) for o in msg.outputs]
    if len(msg.id) > MAX_ID_CHARS:
        raise BadRequest(f"'id' must be a string of 1 to {MAX_ID_CHARS} characters")
    return InferRequest(inputs, outputs, msg.id or None, read_parameters(msg.parameters), binary_default=True)


def _input(t: pb.ModelInferRequest.InferInputTensor, raw: bytes | None) -> Tensor:
    name, datatype, shape = t.name, t.datatype, tuple(t.shape)
    if not name:
        raise BadRequest("every input needs a 'name'")
    if len(shape) > MAX_RANK or any(d < 0 for d in shape):
        raise BadRequest(f"input {name!r} needs 'shape' as a list of at most {MAX_RANK} non-negative integers")
    dtype = numpy_dtype(datatype)
    count = element_count(shape)  # checked against the bytes or values received before anything is allocated
    if raw is not None:
        if t.HasField("contents"):
            raise BadRequest(f"input {name!r} has both contents and raw_input_contents")
        if datatype == "BYTES":
            array = deserialize_bytes_tensor(raw, count)
        elif len(raw) != count * dtype.itemsize:
            raise BadRequest(f"input {name!r}: {len(raw)} bytes of {datatype} cannot have shape {list(shape)}")
        else:
            array = np.frombuffer(raw, dtype=dtype.newbyteorder("<")).astype(dtype, copy=False)
        return Tensor(name, datatype, shape, array.reshape(shape))
    field, wide = _CONTENTS.get(datatype, (None, None))
    if field is None:
        raise BadRequest(f"input {name!r}: {datatype} travels only in raw_input_contents")
    values = getattr(t.contents, field)
    if len(values) != count:
        raise BadRequest(f"input {name!r}: {len(values)} values cannot fill its shape ({count} elements)")
    if datatype == "BYTES":
        array = np.empty(count, dtype=np.object_)
        array[:] = list(values)
    else:
        array = np.array(values, dtype=wide)
        if array.dtype != dtype:
            narrow = array.astype(dtype)
            if not np.array_equal(narrow, array):
                raise BadRequest(f"input {name!r}: values do not fit {datatype}")
            array = narrow
    return Tensor(name, datatype, shape, array.reshape(shape))


def read_parameters(params) -> dict[str, Any]:
    """A protobuf ``map<string, InferParameter>`` as a plain dict."""
    out = {}
    for key, p in params.items():
        which = p.WhichOneof("parameter_choice")
        if which is not None:
            out[key] = getattr(p, which)
    return out


def write_parameters(target, values: dict[str, Any]) -> None:
    """Fill a ``map<string, InferParameter>``; a None (unknown carbon) is left out, as the map has no null."""
    for key, value in values.items():
        if value is None:
            continue
        p = target[key]
        if isinstance(value, bool):
            p.bool_param = value
        elif isinstance(value, int):
            p.int64_param = value
        elif isinstance(value, float):
            p.double_param = value
        else:
            p.string_param = str(value)


def encode_infer_message(answer: InferAnswer) -> pb.ModelInferResponse:
    """The data plane's answer as a ModelInferResponse: outputs in raw_output_contents, figures in parameters."""
    response = pb.ModelInferResponse(model_name=answer.model, model_version=answer.version, id=answer.request_id)
    for t in answer.outputs:
        response.outputs.add(name=t.name, datatype=t.datatype, shape=t.shape)
        response.raw_output_contents.append(t.raw_bytes())
    write_parameters(response.parameters, answer.parameters)
    return response
