import numpy as np
import onnx
import pytest

from optimizers.quantize import (
    convert_fp16,
    gemm_to_matmul,
    quantize_dynamic_int8,
    quantize_static_int8,
    topological_sort,
)
from tests.optimizers.conftest import run_onnx


def _ops(path):
    return {n.op_type for n in onnx.load(str(path)).graph.node}


def test_gemm_to_matmul_keeps_the_function(tiny_mlp, pixels, tmp_path):
    path, _, _ = tiny_mlp
    out = gemm_to_matmul(path, tmp_path / "mm.onnx")
    assert "Gemm" not in _ops(out) and "MatMul" in _ops(out)
    a, b = run_onnx(path, {"pixels": pixels}), run_onnx(out, {"pixels": pixels})
    np.testing.assert_allclose(a[0], b[0], atol=1e-6)
    assert (a[1] == b[1]).all()


@pytest.mark.parametrize("per_channel", [False, True])
def test_dynamic_int8_quantizes_the_matmuls_and_stays_close(tiny_mlp, pixels, tmp_path, per_channel):
    path, _, _ = tiny_mlp
    report = quantize_dynamic_int8(path, tmp_path / "q.onnx", per_channel=per_channel)
    ops = _ops(tmp_path / "q.onnx")
    assert ops & {"MatMulInteger", "DynamicQuantizeMatMul"}, ops
    assert report.mode == "dynamic-int8" and report.per_channel is per_channel
    ref, got = run_onnx(path, {"pixels": pixels}), run_onnx(tmp_path / "q.onnx", {"pixels": pixels})
    assert np.abs(ref[0] - got[0]).max() < 0.1
    assert (ref[1] == got[1]).mean() >= 0.85


def test_dynamic_int8_shrinks_a_model_dominated_by_weights(tmp_path):
    from models.digits import mlp_to_onnx

    rng = np.random.default_rng(0)
    ws = [rng.normal(size=(64, 256)).astype(np.float32), rng.normal(size=(256, 10)).astype(np.float32)]
    mlp_to_onnx(ws, [np.zeros(256, np.float32), np.zeros(10, np.float32)], tmp_path / "big.onnx")
    report = quantize_dynamic_int8(tmp_path / "big.onnx", tmp_path / "q.onnx")
    assert report.size_bytes_after < 0.45 * report.size_bytes_before


def test_static_int8_uses_the_calibration_set(tiny_mlp, pixels, tmp_path):
    path, _, _ = tiny_mlp
    calib = [{"pixels": pixels[i : i + 10]} for i in range(0, 40, 10)]
    report = quantize_static_int8(path, tmp_path / "s.onnx", calib)
    ops = _ops(tmp_path / "s.onnx")
    assert {"QuantizeLinear", "DequantizeLinear"} <= ops
    assert report.quantized_ops["QuantizeLinear"] >= 1
    ref, got = run_onnx(path, {"pixels": pixels}), run_onnx(tmp_path / "s.onnx", {"pixels": pixels})
    assert (ref[1] == got[1]).mean() >= 0.85


def test_static_int8_refuses_an_empty_calibration_set(tiny_mlp, tmp_path):
    with pytest.raises(ValueError, match="calibration"):
        quantize_static_int8(tiny_mlp[0], tmp_path / "s.onnx", [])


def test_fp16_halves_the_weights_but_keeps_fp32_inputs_and_outputs(tiny_mlp, pixels, tmp_path):
    path, _, _ = tiny_mlp
    report = convert_fp16(path, tmp_path / "h.onnx")
    model = onnx.load(str(tmp_path / "h.onnx"))
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(i.data_type == onnx.TensorProto.FLOAT16 for i in model.graph.initializer)
    assert report.size_bytes_after < report.size_bytes_before
    ref, got = run_onnx(path, {"pixels": pixels}), run_onnx(tmp_path / "h.onnx", {"pixels": pixels})
    np.testing.assert_allclose(ref[0], got[0], atol=5e-3)


def test_topological_sort_repairs_out_of_order_nodes():
    from onnx import TensorProto, helper

    n1 = helper.make_node("Relu", ["x"], ["a"])
    n2 = helper.make_node("Neg", ["a"], ["y"])
    g = helper.make_graph([n2, n1], "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    topological_sort(g)
    assert [n.op_type for n in g.node] == ["Relu", "Neg"]
