"""Fixtures for the data plane's tests (``make_plane`` lives in tests/conftest.py)."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits


@pytest.fixture(scope="session")
def pixels() -> np.ndarray:
    return load_digits().data.astype(np.float32)
