"""The data plane: what each Open Inference Protocol call does, free of HTTP frameworks and Ray.

An infer call flows: parse -> validate against the card -> cache -> route -> batch + run ->
meter and account -> encode. The HTTP layer only maps paths to these methods and errors to statuses.
"""

from __future__ import annotations

import itertools
import time
import uuid
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from gateway.batcher import TextWorkItem, WorkItem, WorkResult
from gateway.host import LoadedVersion, ModelHost
from gateway.protocol import (
    decode_body,
    encode_infer_response,
    parse_infer_request,
    select_outputs,
    validate_inputs,
)
from models.card import ModelCard
from wattgate import __version__
from wattgate.errors import BadRequest, PayloadTooLarge
from wattgate.settings import Settings
from wattgate.tensors import Tensor

EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics", "energy", "carbon", "green_routing"]


@dataclass
class Executed:
    """What running a request produced, before accounting."""

    outputs: list[Tensor]
    result: WorkResult | None
    variant: str
    pool: Any  # the pool that served it (a routing decision carries more)


class Accounting(Protocol):
    def account(self, *, card: ModelCard, executed: Executed, cache_status: str, latency_ms: float,
                request_id: str, rows: int, cache_cost: Any) -> dict[str, Any]: ...


class Router(Protocol):
    def route(self, card: ModelCard, loaded: LoadedVersion, requested_variant: str | None, rows: int, context: dict) -> tuple[str, Any]: ...

    async def execute(self, pool: Any, loaded: LoadedVersion, variant: str, item: WorkItem) -> WorkResult: ...


class Cache(Protocol):
    async def get_or_compute(self, key: str, compute, *, model: str, version: str): ...


class DataPlane:
    def __init__(self, settings: Settings, host: ModelHost, router: Router, accounting: Accounting, cache: Cache | None = None) -> None:
        self.settings = settings
        self.host = host
        self.router = router
        self.accounting = accounting
        self.cache = cache
        self._config_id = settings.fingerprint()
        # Request ids unique per replica without a uuid4 (os.urandom) per request.
        self._id_prefix = uuid.uuid4().hex[:12]
        self._ids = itertools.count(1)

    # -- health and metadata -----------------------------------------------------------------
    def server_metadata(self) -> dict:
        return {"name": "wattgate", "version": __version__, "extensions": EXTENSIONS, "config_id": self._config_id}

    def ready(self) -> bool:
        return any(m.state == "READY" for m in self.host.models.values())

    def model_metadata(self, name: str, version: str | None) -> dict:
        card = self.host.resolve(name, version).card
        return {
            "name": card.name,
            "versions": sorted((v for v in self.host.models[name].versions), key=lambda s: (not s.isdigit(), int(s) if s.isdigit() else 0, s)),
            "platform": "onnxruntime_onnx",
            "inputs": [t.model_dump() for t in card.inputs],
            "outputs": [t.model_dump() for t in card.outputs],
            "parameters": {
                "version": card.version,
                "stage": card.stage,
                "default_variant": card.default_variant,
                "variants": sorted(card.variants),
                "owner": card.owner,
                "description": card.description,
            },
        }

    def model_ready(self, name: str, version: str | None) -> bool:
        self.host.resolve(name, version)
        return True

    def model_stats(self, name: str, version: str | None) -> dict:
        """Triton-style statistics for this replica: runtime calls, rows and the batch sizes seen."""
        loaded = self.host.resolve(name, version)
        stats = []
        for variant, b in sorted(loaded.batchers.items()):
            stats.append({
                "name": name, "version": loaded.card.version, "variant": variant,
                "inference_count": b.rows_seen, "execution_count": b.calls,
                "batch_stats": [{"batch_size": k, "count": v} for k, v in sorted(b.batch_sizes.items())],
            })
        return {"model_stats": stats}

    def list_models(self) -> list[dict]:
        return [
            {"name": m.name, "versions": sorted(m.versions), "state": m.state, "reason": m.reason}
            for m in sorted(self.host.models.values(), key=lambda m: m.name)
        ]

    # -- inference ---------------------------------------------------------------------------
    async def infer(self, name: str, version: str | None, body: bytes, headers: dict[str, str]) -> tuple[bytes, dict[str, str]]:
        started = time.perf_counter()
        loaded = self.host.resolve(name, version)  # unknown model: 404 before reading the body
        limit = self.settings.server.max_request_bytes
        if len(body) > limit:
            raise PayloadTooLarge(f"request body of {len(body)} bytes exceeds the {limit}-byte limit")
        body = decode_body(body, headers.get("content-encoding"), limit)
        request = parse_infer_request(body, headers.get("inference-header-content-length"))
        card = loaded.card
        validate_inputs(request.inputs, card.inputs, loaded.serving.max_batch_size)
        requested = select_outputs(request, card.outputs)
        wanted_variant = request.parameters.get("variant")
        if wanted_variant is not None and not isinstance(wanted_variant, str):
            raise BadRequest("parameters.variant must be a string")
        context = {
            "client_region": headers.get("x-client-region"),
            "tenant": headers.get("x-tenant"),
            "slo_ms": request.parameters.get("slo_ms") if isinstance(request.parameters.get("slo_ms"), (int, float)) else None,
        }
        variant, pool = self.router.route(card, loaded, wanted_variant, request.rows, context)
        output_names = [o.name for o in requested]

        async def compute() -> tuple[list[Tensor], Executed]:
            item = self._work_item(loaded, variant, request.inputs)
            result = await self.router.execute(pool, loaded, variant, item)
            outputs = [Tensor.from_numpy(n, np.asarray(result.outputs[n])) for n in output_names]
            return outputs, Executed(outputs, result, variant, result.served_by or pool)

        cache_status, cache_cost = "off", None
        if self.cache is not None:
            key = self._cache_key(card, variant, output_names, request.inputs)
            outcome = await self.cache.get_or_compute(key, compute, model=card.name, version=card.version)
            cache_status, cache_cost = outcome.status, outcome
            # Only the request that ran the model carries its energy; hits and followers pay their own.
            executed = outcome.extra if outcome.computed else Executed(outcome.outputs, None, variant, pool)
            outputs = outcome.outputs
        else:
            outputs, executed = await compute()
        request_id = request.id or f"{self._id_prefix}-{next(self._ids)}"
        latency_ms = (time.perf_counter() - started) * 1000
        params = self.accounting.account(
            card=card, executed=executed, cache_status=cache_status, latency_ms=latency_ms,
            request_id=request_id, rows=request.rows, cache_cost=cache_cost,
        )
        body, out_headers = encode_infer_response(card.name, card.version, outputs, requested, request.id, params)
        out_headers.update(_parameter_headers(params))
        return body, out_headers

    def _work_item(self, loaded: LoadedVersion, variant: str, inputs: list[Tensor]) -> WorkItem | TextWorkItem:
        pre = loaded.preprocessors.get(variant)
        if pre is not None:
            return TextWorkItem(pre.rows(inputs))
        arrays = {t.name: t.data for t in inputs}
        rows = inputs[0].shape[0] if inputs[0].shape else 1
        return WorkItem(arrays, rows, float(rows))

    @staticmethod
    def _cache_key(card: ModelCard, variant: str, outputs: list[str], inputs: list[Tensor]) -> str:
        from cache.keys import cache_key

        return cache_key(card.name, card.version, variant, outputs, inputs)


_HEADER_NAMES = {
    "energy_j": "x-energy-j",
    "energy_method": "x-energy-method",
    "carbon_g": "x-carbon-g",
    "intensity_g_per_kwh": "x-intensity-g-per-kwh",
    "region": "x-region",
    "hardware": "x-hardware",
    "variant": "x-variant",
    "pool": "x-pool",
    "cache": "x-cache",
    "route_reason": "x-route-reason",
}


_ASCII = str.maketrans({"≤": "<=", "≥": ">=", "\r": " ", "\n": " "})


def _parameter_headers(params: dict[str, Any]) -> dict[str, str]:
    """The same figures as response headers; header values must be single-line latin-1, so ASCII."""
    out = {}
    for key, header in _HEADER_NAMES.items():
        if key in params and params[key] is not None:
            value = params[key]
            if isinstance(value, float):
                out[header] = f"{value:.6g}"
            elif key == "route_reason":  # the only free text
                out[header] = value.translate(_ASCII).encode("ascii", "replace").decode("ascii")
            else:
                out[header] = str(value)
    return out
