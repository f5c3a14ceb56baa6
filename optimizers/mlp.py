"""ReLU MLPs in torch and their round trip to the ONNX interface of models/digits.py (same names, same 1/16 scaling)."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn


class MLP(nn.Module):
    """x * input_scale -> (Linear, ReLU)* -> Linear logits; the scale lives in the model as in the ONNX graph."""

    def __init__(self, sizes: Sequence[int], input_scale: float = 1 / 16) -> None:
        super().__init__()
        if len(sizes) < 2:
            raise ValueError("an MLP needs at least input and output sizes")
        self.sizes = tuple(int(s) for s in sizes)
        self.input_scale = float(input_scale)
        self.layers = nn.ModuleList(nn.Linear(a, b) for a, b in zip(self.sizes[:-1], self.sizes[1:]))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = x * self.input_scale
        for i, layer in enumerate(self.layers):
            h = layer(h)
            if i < len(self.layers) - 1:
                h = torch.relu(h)
        return h


def to_weights(model: MLP) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Weights as [in, out] matrices (the ONNX Gemm / scikit-learn orientation) and biases."""
    ws = [layer.weight.detach().cpu().numpy().T.copy() for layer in model.layers]
    bs = [layer.bias.detach().cpu().numpy().copy() for layer in model.layers]
    return ws, bs


def from_weights(weights: Sequence[np.ndarray], biases: Sequence[np.ndarray], input_scale: float = 1 / 16) -> MLP:
    sizes = [weights[0].shape[0]] + [w.shape[1] for w in weights]
    model = MLP(sizes, input_scale)
    with torch.no_grad():
        for layer, w, b in zip(model.layers, weights, biases):
            layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T, dtype=np.float32)))
            layer.bias.copy_(torch.from_numpy(np.array(b, dtype=np.float32)))
    return model


def export_onnx(model: MLP, path: str | Path) -> Path:
    from models.digits import mlp_to_onnx

    ws, bs = to_weights(model)
    mlp_to_onnx(ws, bs, Path(path), input_scale=model.input_scale)
    return Path(path)


def load_onnx(path: str | Path) -> tuple[list[np.ndarray], list[np.ndarray], float]:
    """Read back (weights, biases, input_scale) from a graph written by ``mlp_to_onnx``."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    ws, bs = [], []
    for node in graph.node:
        if node.op_type == "Gemm":
            ws.append(inits[node.input[1]])
            bs.append(inits[node.input[2]])
    if not ws or "scale" not in inits:
        raise ValueError(f"{path} is not an MLP written by mlp_to_onnx")
    return ws, bs, float(inits["scale"].reshape(-1)[0])


def logits(model: MLP, x: np.ndarray) -> np.ndarray:
    with torch.no_grad():
        return model(torch.from_numpy(np.asarray(x, np.float32))).numpy()


def accuracy(model: MLP, x: np.ndarray, y: np.ndarray) -> float:
    return float((logits(model, x).argmax(1) == y).mean())
