"""Tiny models shared by the optimizer tests: every fixture builds in milliseconds."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest


@pytest.fixture
def tiny_mlp(tmp_path: Path):
    """A 64-16-8-10 ReLU MLP in the digits ONNX interface, with random but fixed weights."""
    from models.digits import mlp_to_onnx

    rng = np.random.default_rng(0)
    sizes = [64, 16, 8, 10]
    ws = [rng.normal(0, 0.5, (a, b)).astype(np.float32) for a, b in zip(sizes[:-1], sizes[1:])]
    bs = [rng.normal(0, 0.1, b).astype(np.float32) for b in sizes[1:]]
    path = tmp_path / "tiny.onnx"
    mlp_to_onnx(ws, bs, path)
    return path, ws, bs


@pytest.fixture
def pixels():
    return np.random.default_rng(1).uniform(0, 16, (40, 64)).astype(np.float32)


def run_onnx(path, inputs: dict[str, np.ndarray], outputs=None):
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return sess.run(outputs, inputs)


@pytest.fixture(autouse=True, scope="session")
def _one_torch_thread():
    """Two shared cores: torch's default thread pool only adds contention for these tiny models."""
    import importlib.util

    if importlib.util.find_spec("torch") is not None:
        import torch

        torch.set_num_threads(1)
    yield


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: slower tests that use the real model or the whole stdlib")
