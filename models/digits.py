"""Builds the bundled ``digits`` classifier: an MLP trained on scikit-learn's handwritten digits.

Runs offline (the dataset ships with scikit-learn) and without torch: the MLP is trained with
scikit-learn and written to ONNX node by node. Clients send the raw 8x8 pixel values (0-16).

    python -m models.digits --repository model_repository
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

INPUT_NAME = "pixels"


def load_split(seed: int = 0):
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    x, y = load_digits(return_X_y=True)
    return train_test_split(x.astype(np.float32), y.astype(np.int64), test_size=0.25, random_state=seed, stratify=y)


def mlp_to_onnx(weights: list[np.ndarray], biases: list[np.ndarray], path: Path, input_scale: float = 1 / 16) -> None:
    """ReLU MLP -> ONNX with outputs ``probabilities`` [-1, C] (FP32) and ``label`` [-1] (INT64)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    nodes, inits = [], [numpy_helper.from_array(np.array([input_scale], np.float32), "scale")]
    nodes.append(helper.make_node("Mul", [INPUT_NAME, "scale"], ["h0"]))
    h = "h0"
    for i, (w, b) in enumerate(zip(weights, biases)):
        inits += [numpy_helper.from_array(w.astype(np.float32), f"W{i}"), numpy_helper.from_array(b.astype(np.float32), f"B{i}")]
        nodes.append(helper.make_node("Gemm", [h, f"W{i}", f"B{i}"], [f"z{i}"]))
        h = f"z{i}"
        if i < len(weights) - 1:
            nodes.append(helper.make_node("Relu", [h], [f"a{i}"]))
            h = f"a{i}"
    nodes.append(helper.make_node("Softmax", [h], ["probabilities"], axis=1))
    nodes.append(helper.make_node("ArgMax", [h], ["label"], axis=1, keepdims=0))
    n_in, n_out = weights[0].shape[0], weights[-1].shape[1]
    graph = helper.make_graph(
        nodes,
        "digits_mlp",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", n_in])],
        [
            helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["batch", n_out]),
            helper.make_tensor_value_info("label", TensorProto.INT64, ["batch"]),
        ],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], producer_name="wattgate")
    model.ir_version = 8
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def train_digits_mlp(hidden=(128, 64), seed: int = 0):
    from sklearn.neural_network import MLPClassifier

    x_train, x_test, y_train, y_test = load_split(seed)
    clf = MLPClassifier(hidden_layer_sizes=hidden, max_iter=400, random_state=seed, early_stopping=False)
    clf.fit(x_train / 16.0, y_train)
    accuracy = float((clf.predict(x_test / 16.0) == y_test).mean())
    return clf, accuracy, (x_test, y_test)


def build(repository: Path, version: str = "1", force: bool = False) -> Path:
    from models.registry import ModelRegistry  # mlp_to_onnx alone must import on bare GPU images

    registry = ModelRegistry(repository)
    if not force and "digits" in registry.names():
        return registry.variant_path(registry.show("digits"))
    clf, accuracy, (x_test, y_test) = train_digits_mlp()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fp32.onnx"
        mlp_to_onnx(clf.coefs_, clf.intercepts_, path)
        _check_equivalence(path, clf, x_test)
        card = registry.register(
            "digits",
            version,
            {"fp32": path},
            owner="wattgate",
            description="8x8 handwritten digits (scikit-learn), ReLU MLP 64-128-64-10; send raw pixel values 0-16.",
            quality={"fp32": {"accuracy": round(accuracy, 4)}},
            quality_floor={"accuracy": 0.95},
        )
    return registry.variant_path(card)


def _check_equivalence(path: Path, clf, x: np.ndarray) -> None:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    probs, labels = sess.run(None, {INPUT_NAME: x})
    if not np.allclose(probs, clf.predict_proba(x / 16.0), atol=1e-4) or not (labels == clf.predict(x / 16.0)).all():
        raise RuntimeError("ONNX export disagrees with the trained model")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repository", type=Path, default=Path("model_repository"))
    p.add_argument("--version", default="1")
    p.add_argument("--force", action="store_true", help="rebuild even if digits is registered")
    args = p.parse_args(argv)
    print(build(args.repository, args.version, args.force))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
