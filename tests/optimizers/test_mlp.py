import numpy as np
import pytest

torch = pytest.importorskip("torch")

from optimizers.mlp import MLP, export_onnx, from_weights, load_onnx, logits, to_weights  # noqa: E402
from tests.optimizers.conftest import run_onnx  # noqa: E402


def test_torch_mlp_exports_to_the_digits_interface_and_reads_back(tmp_path, pixels):
    torch.manual_seed(0)
    model = MLP((64, 12, 10))
    path = export_onnx(model, tmp_path / "m.onnx")
    probs, labels = run_onnx(path, {"pixels": pixels})
    expected = torch.softmax(torch.from_numpy(logits(model, pixels)), 1).numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-5)
    assert labels.dtype == np.int64 and (labels == expected.argmax(1)).all()
    ws, bs, scale = load_onnx(path)
    assert scale == pytest.approx(1 / 16)
    for a, b in zip(ws, to_weights(model)[0]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(logits(from_weights(ws, bs, scale), pixels), logits(model, pixels), atol=1e-6)


def test_load_onnx_refuses_a_graph_that_is_not_an_mlp(tmp_path):
    import onnx
    from onnx import TensorProto, helper

    g = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                          [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    onnx.save(helper.make_model(g), str(tmp_path / "relu.onnx"))
    with pytest.raises(ValueError, match="not an MLP"):
        load_onnx(tmp_path / "relu.onnx")
