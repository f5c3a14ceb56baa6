"""Post-training quantization with ONNX Runtime (dynamic and static INT8) and fp16 conversion for GPU variants."""

from __future__ import annotations

import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np


@dataclass(frozen=True)
class QuantizeReport:
    mode: str  # "dynamic-int8" | "static-int8" | "fp16"
    per_channel: bool
    size_bytes_before: int
    size_bytes_after: int
    quantized_ops: dict[str, int]
    duration_s: float

    def to_dict(self) -> dict:
        return {
            "mode": self.mode,
            "per_channel": self.per_channel,
            "size_bytes_before": self.size_bytes_before,
            "size_bytes_after": self.size_bytes_after,
            "quantized_ops": dict(self.quantized_ops),
            "duration_s": round(self.duration_s, 3),
        }


_QUANT_OPS = {"MatMulInteger", "DynamicQuantizeLinear", "QuantizeLinear", "DequantizeLinear", "QGemm", "QLinearMatMul",
              "DynamicQuantizeMatMul", "QAttention", "MatMulIntegerToFloat"}


def _op_counts(path: Path, only: set[str] | None = None) -> dict[str, int]:
    import onnx

    counts = Counter(n.op_type for n in onnx.load(str(path), load_external_data=False).graph.node)
    return {k: v for k, v in sorted(counts.items()) if only is None or k in only}


def gemm_to_matmul(src: Path, dst: Path) -> Path:
    """Rewrite Gemm(A, B_const, C) as MatMul + Add: dynamic INT8 in ORT quantizes MatMul, not Gemm."""
    import onnx
    from onnx import helper, numpy_helper

    model = onnx.load(str(src))
    graph = model.graph
    inits = {i.name: i for i in graph.initializer}
    nodes = []
    for node in graph.node:
        attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
        rewritable = (
            node.op_type == "Gemm" and node.input[1] in inits and attrs.get("transA", 0) == 0
            and attrs.get("alpha", 1.0) == 1.0 and attrs.get("beta", 1.0) == 1.0
        )
        if not rewritable:
            nodes.append(node)
            continue
        w_name = node.input[1]
        if attrs.get("transB", 0):
            w = numpy_helper.to_array(inits[w_name]).T.copy()
            w_name = f"{w_name}_T"
            graph.initializer.append(numpy_helper.from_array(w, w_name))
        mm_out = node.output[0] if len(node.input) < 3 else f"{node.output[0]}_mm"
        nodes.append(helper.make_node("MatMul", [node.input[0], w_name], [mm_out], name=f"{node.name or node.output[0]}_matmul"))
        if len(node.input) >= 3:
            nodes.append(helper.make_node("Add", [mm_out, node.input[2]], [node.output[0]], name=f"{node.name or node.output[0]}_add"))
    del graph.node[:]
    graph.node.extend(nodes)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return dst


# 7-bit weights for dynamic INT8 (see quantize_dynamic_int8); pipelines put it in their step keys.
DYNAMIC_INT8_REDUCE_RANGE = True


def quantize_dynamic_int8(src: str | Path, dst: str | Path, per_channel: bool = True,
                          reduce_range: bool = DYNAMIC_INT8_REDUCE_RANGE) -> QuantizeReport:
    """Weights to INT8 offline, activations quantized on the fly per batch; no calibration data needed.

    ``reduce_range``: 7-bit weights. ONNX Runtime multiplies uint8 activations by int8 weights with
    VPMADDUBSW on x86 CPUs without VNNI (AVX2, AVX-512F), whose int16 pairwise sums saturate with
    full 8-bit weights: measured on an AVX2-only EPYC, a tiny MLP's outputs moved 0.19 instead of
    < 0.1. A file is built once and served on any CPU, so the safe range is the default."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    src, dst = Path(src), Path(dst)
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        staged = gemm_to_matmul(src, Path(tmp) / "matmul.onnx")
        quantize_dynamic(
            str(staged), str(dst), per_channel=per_channel, reduce_range=reduce_range, weight_type=QuantType.QInt8,
            op_types_to_quantize=["MatMul", "Attention"],
            # Fused com.microsoft ops (Attention, SkipLayerNormalization) defeat shape inference;
            # their outputs are fp32 activations.
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    return QuantizeReport("dynamic-int8", per_channel, src.stat().st_size, dst.stat().st_size,
                          _op_counts(dst, _QUANT_OPS), time.perf_counter() - t0)


class ArrayCalibrationReader:
    """Feeds calibration batches (dicts of input name -> array) to ORT's static quantizer."""

    def __init__(self, batches: Iterable[dict[str, np.ndarray]]) -> None:
        self._batches = list(batches)
        if not self._batches:
            raise ValueError("static quantization needs at least one calibration batch")
        self._it: Iterator[dict[str, np.ndarray]] = iter(self._batches)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)

    def rewind(self) -> None:
        self._it = iter(self._batches)


def quantize_static_int8(
    src: str | Path, dst: str | Path, calibration: Iterable[dict[str, np.ndarray]], per_channel: bool = True
) -> QuantizeReport:
    """Weights and activations INT8 (QDQ format) with activation ranges from the calibration set."""
    from onnxruntime.quantization import CalibrationDataReader, CalibrationMethod, QuantFormat, QuantType, quantize_static

    class _Reader(ArrayCalibrationReader, CalibrationDataReader):
        pass

    src, dst = Path(src), Path(dst)
    t0 = time.perf_counter()
    quantize_static(
        str(src), str(dst), _Reader(calibration), quant_format=QuantFormat.QDQ, per_channel=per_channel,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8, calibrate_method=CalibrationMethod.MinMax,
    )
    return QuantizeReport("static-int8", per_channel, src.stat().st_size, dst.stat().st_size,
                          _op_counts(dst, _QUANT_OPS), time.perf_counter() - t0)


def convert_fp16(src: str | Path, dst: str | Path) -> QuantizeReport:
    """fp16 weights and compute for GPU variants; inputs and outputs stay fp32 so clients see no change."""
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    src, dst = Path(src), Path(dst)
    t0 = time.perf_counter()
    # ArgMax/Softmax stay fp32: the label must not flip on fp16 ties, and softmax sums need the range.
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True, op_block_list=["ArgMax", "Softmax"])
    # The converter appends the casts it inserts for blocked ops at the end of the node list.
    topological_sort(model.graph)
    onnx.checker.check_model(model)
    onnx.save(model, str(dst))
    return QuantizeReport("fp16", False, src.stat().st_size, dst.stat().st_size, _op_counts(dst, {"Cast"}),
                          time.perf_counter() - t0)


def topological_sort(graph) -> None:
    """Reorder ``graph.node`` in place so every node follows the producers of its inputs (Kahn)."""
    available = {i.name for i in graph.input} | {i.name for i in graph.initializer} | {""}
    pending = list(graph.node)
    ordered = []
    while pending:
        ready = [n for n in pending if all(i in available for i in n.input)]
        if not ready:
            raise ValueError("graph has a cycle or an input nothing produces")
        ready_ids = {id(n) for n in ready}
        pending = [n for n in pending if id(n) not in ready_ids]
        for n in ready:
            ordered.append(n)
            available.update(n.output)
    del graph.node[:]
    graph.node.extend(ordered)
