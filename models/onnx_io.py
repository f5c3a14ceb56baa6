"""Reads an ONNX graph's served interface and validates it with onnx.checker."""

from __future__ import annotations

import hashlib
from pathlib import Path

from models.card import TensorSpec
from wattgate.errors import BadRequest

# onnx.TensorProto element type -> OIP datatype
_ONNX_TO_OIP = {
    1: "FP32", 2: "UINT8", 3: "INT8", 4: "UINT16", 5: "INT16", 6: "INT32", 7: "INT64",
    8: "BYTES", 9: "BOOL", 10: "FP16", 11: "FP64", 12: "UINT32", 13: "UINT64",
}


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _spec(value_info) -> TensorSpec:
    t = value_info.type.tensor_type
    dims = [d.dim_value if d.HasField("dim_value") else -1 for d in t.shape.dim]
    try:
        datatype = _ONNX_TO_OIP[t.elem_type]
    except KeyError:
        raise BadRequest(f"ONNX input/output {value_info.name!r} has an unsupported element type {t.elem_type}") from None
    return TensorSpec(name=value_info.name, datatype=datatype, shape=dims)


def inspect_onnx(path: Path) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """Validate ``path`` with onnx.checker and return its (inputs, outputs), -1 for dynamic axes."""
    import onnx  # registration-time only; the serving path never needs it

    try:
        onnx.checker.check_model(str(path))
        model = onnx.load(str(path), load_external_data=False)
    except Exception as exc:  # onnx raises several unrelated types
        raise BadRequest(f"{Path(path).name} is not a valid ONNX model: {exc}") from exc
    initializers = {i.name for i in model.graph.initializer}
    inputs = [_spec(v) for v in model.graph.input if v.name not in initializers]
    outputs = [_spec(v) for v in model.graph.output]
    return inputs, outputs
