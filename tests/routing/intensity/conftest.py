"""Fixtures for the intensity tests: fake APIs that are always shut down, a controllable clock."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from intensity_fakes import FakeApi, FakeTime  # noqa: E402

GRID_DATA = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "grid"


@pytest.fixture
def fake_api():
    servers: list[FakeApi] = []

    def start(handler) -> FakeApi:
        api = FakeApi(handler)
        servers.append(api)
        return api

    yield start
    for api in servers:
        try:
            api.close()
        except OSError:
            pass


@pytest.fixture
def fake_time() -> FakeTime:
    return FakeTime()


@pytest.fixture
def grid_data() -> Path:
    return GRID_DATA
