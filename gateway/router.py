"""Routers pick a variant and a pool for each request and run it there."""

from __future__ import annotations

from typing import Any

from gateway.batcher import WorkItem, WorkResult
from gateway.host import LoadedVersion
from models.card import ModelCard
from wattgate.errors import Unavailable


class LocalExecutor:
    """A logical pool on this replica's own node: the request runs in-process, no extra hop."""

    async def run(self, loaded: LoadedVersion, variant: str, item) -> WorkResult:
        batcher = loaded.batchers.get(variant)
        if batcher is None:
            raise Unavailable(f"variant {variant!r} of {loaded.card.name!r} is not loaded on this gateway")
        return await batcher.infer(item)


class LocalRouter:
    """Serves every request from this replica's own runtimes, reported as one pool."""

    def __init__(self, pool: Any) -> None:
        self.pool = pool
        self._executor = LocalExecutor()

    def route(self, card: ModelCard, loaded: LoadedVersion, requested_variant: str | None, rows: int, context: dict | None = None):
        variant, _ = card.variant(requested_variant)
        if variant not in loaded.batchers:
            raise Unavailable(f"variant {variant!r} of {card.name!r} is not loaded on this gateway")
        return variant, self.pool

    async def execute(self, pool: Any, loaded: LoadedVersion, variant: str, item: WorkItem) -> WorkResult:
        return await self._executor.run(loaded, variant, item)
