"""Fixtures the gateway's integration modules share."""

from __future__ import annotations

import pytest

from tests.redis_server import LocalRedis


@pytest.fixture(scope="module")
def redis():
    """A redis-server of this module's own (``.url``; ``.kill()``/``.start()`` for outages)."""
    with LocalRedis() as r:
        yield r
