"""Fixtures for the cache tests: a real redis-server per test on a free loopback port, and counted computes."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from tests.redis_server import LocalRedis
from wattgate.tensors import Tensor


def pytest_configure(config):
    config.addinivalue_line("markers", "integration: slower tests that start real servers")


@pytest.fixture
def redis_server():
    """A running redis-server; ``.url``, ``.proc`` (the Popen), ``.kill()``, ``.start()`` on the same port."""
    server = LocalRedis()
    server.start()
    try:
        yield server
    finally:
        server.close()


class CountingModel:
    """Stands in for a model replica: doubles its input, counts how often it actually ran."""

    def __init__(self, delay_s: float = 0.0) -> None:
        self.calls = 0
        self.delay_s = delay_s

    def compute_for(self, x: np.ndarray, fail: Exception | None = None):
        async def compute():
            self.calls += 1
            if self.delay_s:
                await asyncio.sleep(self.delay_s)
            if fail is not None:
                raise fail
            return [Tensor.from_numpy("y", (x * 2).astype(np.float32))], {"energy_j": 0.5}

        return compute


@pytest.fixture
def model():
    return CountingModel()


@pytest.fixture
def slow_model():
    return CountingModel(delay_s=0.1)
