"""Builds a replica's parts from settings: the one place that picks implementations."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from gateway.admin import AdminApi
from gateway.batcher import VariantBatcher, WorkItem, WorkResult
from gateway.dataplane import DataPlane
from gateway.host import LoadedVersion, ModelHost
from gateway.http import HttpApi
from models.card import ModelCard
from models.registry import ModelRegistry
from wattgate.metrics import MetricsRegistry, render
from wattgate.settings import Settings

log = logging.getLogger("wattgate.wiring")


@dataclass
class GatewayParts:
    settings: Settings
    registry: ModelRegistry
    host: ModelHost
    dataplane: DataPlane
    api: HttpApi
    metrics: MetricsRegistry

    def close(self) -> None:
        for state in self.host.models.values():
            self.host._close(state)


class LocalRouter:
    """Serves every request from this replica's own runtimes."""

    def route(self, card: ModelCard, loaded: LoadedVersion, requested_variant: str | None, rows: int):
        variant, _ = card.variant(requested_variant)
        if variant not in loaded.batchers:
            from wattgate.errors import Unavailable

            raise Unavailable(f"variant {variant!r} of {card.name!r} is not loaded on this gateway")
        return variant, "local"

    async def execute(self, pool: Any, loaded: LoadedVersion, variant: str, item: WorkItem) -> WorkResult:
        return await loaded.batchers[variant].infer(item)


class BasicAccounting:
    def account(self, *, card, executed, cache_status, latency_ms, request_id, rows, cache_cost):
        return {"variant": executed.variant, "pool": str(executed.pool), "cache": cache_status}


def build_gateway(settings: Settings) -> GatewayParts:
    registry = ModelRegistry(settings.models.repository)
    metrics = MetricsRegistry()

    def charge(work_units):
        return [None] * len(work_units)

    def make_batcher(**kw):
        return VariantBatcher(charge=charge, **kw)

    host = ModelHost(registry, settings.models, make_batcher)
    host.load_startup()
    dataplane = DataPlane(settings, host, LocalRouter(), BasicAccounting(), cache=None)
    admin = AdminApi(registry, host)

    async def metrics_text() -> str:
        return render(metrics.snapshot())

    api = HttpApi(dataplane, admin, metrics_text)
    return GatewayParts(settings, registry, host, dataplane, api, metrics)
