import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from optimizers.graph import optimize_graph
from tests.optimizers.conftest import run_onnx


def _foldable(path):
    """y = x + (c1 * c2): the constant product folds away, and Identity nodes vanish."""
    c1, c2 = numpy_helper.from_array(np.full(4, 2.0, np.float32), "c1"), numpy_helper.from_array(np.full(4, 3.0, np.float32), "c2")
    nodes = [helper.make_node("Mul", ["c1", "c2"], ["c"]), helper.make_node("Identity", ["c"], ["c_id"]),
             helper.make_node("Add", ["x", "c_id"], ["y"])]
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2, 4])], [c1, c2])
    onnx.save(helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.mark.parametrize("level", ["basic", "extended"])
def test_optimized_model_is_saved_smaller_and_equivalent(tmp_path, level):
    src = _foldable(tmp_path / "g.onnx")
    report = optimize_graph(src, tmp_path / "opt.onnx", level)
    assert report.nodes_before == 3 and report.nodes_after < 3
    x = np.arange(8, dtype=np.float32).reshape(2, 4)
    np.testing.assert_allclose(run_onnx(tmp_path / "opt.onnx", {"x": x})[0], x + 6.0)


def test_unknown_level_is_refused(tmp_path):
    with pytest.raises(ValueError, match="optimization level"):
        optimize_graph(_foldable(tmp_path / "g.onnx"), tmp_path / "o.onnx", "turbo")
