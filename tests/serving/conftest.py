"""A real data plane on the digits model, built without Ray: the plain-asyncio batcher, no HTTP."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.datasets import load_digits

from serving.assembly import build_data_plane
from wattgate.settings import load_settings


@pytest.fixture
def make_plane(digits_repository, tmp_path):
    """make_plane(**settings sections) -> DataPlaneParts; closed after the test."""
    built = []

    def _make(**sections):
        sections.setdefault("models", {"repository": str(digits_repository),
                                       "defaults": {"max_batch_size": 32, "batch_wait_timeout_s": 0.01}})
        sections.setdefault("server", {})
        sections["server"].setdefault("state_dir", str(tmp_path / "state"))
        sections.setdefault("intensity", {"provider": "static"})
        parts = build_data_plane(load_settings(None, **sections))
        built.append(parts)
        return parts

    yield _make
    for parts in built:
        parts.close()


@pytest.fixture(scope="session")
def pixels() -> np.ndarray:
    return load_digits().data.astype(np.float32)
