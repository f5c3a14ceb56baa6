"""Fixtures the gateway's integration modules share."""

from __future__ import annotations

import numpy as np
import pytest

from tests.redis_server import LocalRedis


@pytest.fixture(scope="module")
def redis():
    """A redis-server of this module's own (``.url``; ``.kill()``/``.start()`` for outages)."""
    with LocalRedis() as r:
        yield r


@pytest.fixture(scope="module")
def pixels() -> np.ndarray:
    """The digits dataset's images, as the model takes them."""
    from sklearn.datasets import load_digits

    return load_digits().data.astype(np.float32)


@pytest.fixture(scope="module")
def direct(digits_repository):
    """The digits model run straight on ONNX Runtime: what every front end must answer."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(digits_repository / "digits" / "1" / "fp32.onnx"), providers=["CPUExecutionProvider"])
    return lambda x: dict(zip(["probabilities", "label"], sess.run(["probabilities", "label"], {"pixels": x})))
