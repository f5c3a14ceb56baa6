"""The data plane: what each Open Inference Protocol call does, free of HTTP servers and Ray.

An infer call flows: parse -> validate against the card -> route -> cache -> run on the routed pool
(batched) -> account energy and carbon -> encode. The front ends only map their calls to these
methods and errors to their statuses: REST (``gateway/http.py``) through ``infer``, gRPC
(``gateway/grpc_api.py``) through ``serve`` with its own codec (``serving/grpc_codec.py``).
"""

from __future__ import annotations

import itertools
import string
import time
import uuid
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Awaitable, Callable, Protocol, TypeVar
from urllib.parse import quote

import numpy as np

from cache.keys import cache_key
from cache.service import CacheOutcome
from routing.live import ClientContext, Execution, Router
from routing.pools import PoolJob
from serving.accounting import RequestAccountant, ServedRequest
from serving.quality_guard import GuardSample, QualityGuard
from serving.host import LoadedVersion, ModelHost
from serving.protocol import (
    MAX_ID_CHARS,
    InferRequest,
    RequestedOutput,
    decode_body,
    encode_infer_response,
    parameter_headers,
    parse_infer_request,
    select_outputs,
    validate_inputs,
)
from wattgate import __version__
from tenants.budgets import BudgetDeferred, BudgetStatus, TenantBudgets
from tenants.gate import ANONYMOUS, Principal
from wattgate.errors import BadRequest, Overloaded, PayloadTooLarge, TooManyRequests, WattgateError
from wattgate.metrics import MetricsRegistry
from wattgate.settings import Settings
from wattgate.tensors import Tensor

# Printable ASCII goes into the X-Request-Id header as it is; anything else is percent-encoded.
_HEADER_SAFE = "".join(c for c in string.printable if c not in "%\t\n\r\x0b\x0c")

T = TypeVar("T")

EXTENSIONS = ["binary_tensor_data", "model_repository", "statistics", "energy", "carbon", "green_routing"]


@dataclass(frozen=True)
class InferAnswer:
    """What one infer call produced, for a protocol front end to encode."""

    model: str
    version: str
    outputs: list[Tensor]
    requested: list[RequestedOutput]
    request_id: str
    parameters: dict[str, Any]  # energy, carbon, route and cache figures (README "Energy and carbon")


@dataclass
class _Parsed:
    """A REST body already parsed and validated against ``loaded``, with its cache key per variant."""

    loaded: LoadedVersion
    request: InferRequest
    requested: list[RequestedOutput]
    wanted_variant: str | None
    keys: dict[str, str]


class BodyMemo:
    """Byte-identical REST bodies that hit the prediction cache, parsed once: the next identical body
    skips JSON parsing, validation and tensor hashing, so a repeated request costs close to a lookup.

    Only bodies that have hit go in (a miss-only workload pays one dict lookup), each at most
    ``max_body_bytes``; least recently used first out past ``max_entries`` or ``max_bytes``."""

    def __init__(self, max_entries: int = 4096, max_bytes: int = 16 << 20, max_body_bytes: int = 64 << 10) -> None:
        self.max_entries, self.max_bytes, self.max_body_bytes = max_entries, max_bytes, max_body_bytes
        self._entries: OrderedDict[tuple, _Parsed] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple, loaded: LoadedVersion) -> _Parsed | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.loaded is not loaded:  # the model was reloaded: its card may differ
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return entry

    def put(self, key: tuple, entry: _Parsed) -> None:
        size = len(key[-1])
        if size > self.max_body_bytes or key in self._entries:
            return
        self._entries[key] = entry
        self._bytes += size
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            self._drop(next(iter(self._entries)))

    def _drop(self, key: tuple) -> None:
        del self._entries[key]
        self._bytes -= len(key[-1])

    def __len__(self) -> int:
        return len(self._entries)


class Cache(Protocol):
    async def get_or_compute(self, key: str, compute: Callable[[], Awaitable[tuple[list[Tensor], Execution]]], *,
                             model: str, version: str) -> CacheOutcome: ...


class DataPlane:
    def __init__(self, settings: Settings, host: ModelHost, router: Router, accountant: RequestAccountant,
                 cache: Cache | None = None, metrics: MetricsRegistry | None = None,
                 budgets: TenantBudgets | None = None, guard: QualityGuard | None = None) -> None:
        self.settings = settings
        self.budgets = budgets
        self.guard = guard
        self.host = host
        self.router = router
        self.accountant = accountant
        self.cache = cache
        self.memo = BodyMemo() if cache is not None else None  # only a cache hit can skip the parse
        self._shed = (metrics or MetricsRegistry()).counter(
            "wattgate_shed_requests_total", "Requests answered 503 + Retry-After: every pool was past its bound", ("model",)
        )
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
    async def infer(self, name: str, version: str | None, body: bytes, headers: dict[str, str],
                    principal: Principal | None = None) -> tuple[bytes, dict[str, str]]:
        """OIP REST: the request body in; the response body and its headers out."""
        memo_key = (name, version, headers.get("content-encoding"), headers.get("inference-header-content-length"), body) \
            if self.memo is not None else None
        return await self.serve(name, version, lambda: self.parse_rest(body, headers), _encode_rest, headers, principal,
                                memo_key=memo_key)

    def check(self, name: str, version: str | None, body: bytes, headers: dict[str, str]) -> tuple[LoadedVersion, InferRequest]:
        """Validate an OIP REST body exactly as ``infer`` would (same errors), without running it:
        deferrable jobs (``jobs/``) check what they store."""
        loaded = self.host.resolve(name, version)
        request = self.parse_rest(body, headers)
        self._validate(loaded, request)
        return loaded, request

    async def serve(self, name: str, version: str | None, parse: Callable[[], InferRequest],
                    encode: Callable[[InferAnswer], T], headers: dict[str, str], principal: Principal | None = None,
                    *, deferrable: bool = False, memo_key: tuple | None = None) -> T:
        """One infer call for any front end: ``parse`` runs once the model is known (an unknown model is
        NotFound whatever the payload), ``encode`` while the request is still in hand (its CPU is request work).
        ``principal`` is the authenticated caller (its tenant goes to routing, the ledger and its budget).

        ``deferrable``: a job's request, routed on spare capacity only (a full pool is not a shed request).
        ``memo_key``: the raw request (its last item the body bytes) for :class:`BodyMemo`; None: always parse."""
        # While a request is in hand, the replica's dynamic energy is request work; between requests it is idle.
        self.accountant.request_started()
        try:
            return encode(await self._answer(name, version, parse, headers, principal or ANONYMOUS, deferrable, memo_key))
        except WattgateError as exc:
            if isinstance(exc, Overloaded) and not deferrable:  # shed: every pool past its bound
                self._shed.inc(model=name)
            raise
        finally:
            self.accountant.request_finished()

    def parse_rest(self, body: bytes, headers: dict[str, str]) -> InferRequest:
        limit = self.settings.server.max_request_bytes
        if len(body) > limit:
            raise PayloadTooLarge(f"request body of {len(body)} bytes exceeds the {limit}-byte limit")
        body = decode_body(body, headers.get("content-encoding"), limit)
        return parse_infer_request(body, headers.get("inference-header-content-length"))

    @staticmethod
    def _validate(loaded: LoadedVersion, request: InferRequest) -> tuple[list[RequestedOutput], str | None]:
        validate_inputs(request.inputs, loaded.card.inputs, loaded.serving.max_batch_size)
        requested = select_outputs(request, loaded.card.outputs)
        wanted_variant = request.parameters.get("variant")
        if wanted_variant is not None and not isinstance(wanted_variant, str):
            raise BadRequest("parameters.variant must be a string")
        return requested, wanted_variant

    async def _answer(self, name: str, version: str | None, parse: Callable[[], InferRequest],
                      headers: dict[str, str], principal: Principal, deferrable: bool = False,
                      memo_key: tuple | None = None) -> InferAnswer:
        started = time.perf_counter()
        loaded = self.host.resolve(name, version)  # unknown model: 404 before reading the body
        parsed = self.memo.get(memo_key, loaded) if memo_key is not None and self.memo is not None else None
        if parsed is None:
            request = parse()
            requested, wanted_variant = self._validate(loaded, request)
        else:  # this very body hit the cache before: parsed and validated then
            request, requested, wanted_variant = parsed.request, parsed.requested, parsed.wanted_variant
        card = loaded.card
        tenant = principal.tenant
        # A job's request (``deferrable``) was deferred already: the defer action does not apply to it again.
        wants_defer = request.parameters.get("deferrable") is True and not deferrable
        budget = self.budgets.status(tenant, principal.limits, wants_defer) if self.budgets is not None else None
        if budget is not None and budget.action != "ok":
            excluded = self.guard.exclusions if self.guard is not None else None
            wanted_variant = self._budget_action(budget, card, loaded, wanted_variant, excluded)
        slo_ms = request.parameters.get("slo_ms")
        context = ClientContext(
            client_region=headers.get("x-client-region"),
            slo_ms=slo_ms if isinstance(slo_ms, (int, float)) else None,
            tenant=tenant,  # from the key (or a trusted proxy), never from a header anyone can set
            deferrable=deferrable,
        )
        route = self.router.route(card, wanted_variant, loaded.variants, context)
        output_names = [o.name for o in requested]

        async def compute() -> tuple[list[Tensor], Execution]:
            # Built here, not before the cache: a hit never tokenises text.
            item = loaded.work_item(route.variant, request.inputs)
            job = PoolJob(card.name, card.version, route.variant, item, loaded.output_names)
            execution = await self.router.execute(route, job)
            outputs = [Tensor.from_numpy(n, np.asarray(execution.result.outputs[n])) for n in output_names]
            return outputs, execution

        request_id = request.id or _client_request_id(headers) or f"{self._id_prefix}-{next(self._ids)}"
        if self.cache is not None:
            key = parsed.keys.get(route.variant) if parsed is not None else None
            if key is None:
                key = cache_key(card.name, card.version, route.variant, output_names, request.inputs)
                if parsed is not None:
                    parsed.keys[route.variant] = key
            outcome = await self.cache.get_or_compute(key, compute, model=card.name, version=card.version)
            if outcome.status == "hit" and parsed is None and memo_key is not None:
                self.memo.put(memo_key, _Parsed(loaded, request, requested, wanted_variant, {route.variant: key}))
            # Only the request that ran the model carries its batch's energy; hits and followers pay their own.
            outputs, cache_status = outcome.outputs, outcome.status
            execution = outcome.extra if outcome.computed else None
        else:
            (outputs, execution), cache_status = await compute(), "off"
        served = ServedRequest(
            card=card, route=route, execution=execution, cache_status=cache_status,
            latency_ms=(time.perf_counter() - started) * 1000, request_id=request_id, rows=request.rows, tenant=tenant,
        )
        accounted = self.accountant.account(served)
        params = accounted.parameters()
        variant = accounted.record.variant
        if self.guard is not None and self.guard.wants(loaded, variant):
            # After the answer exists and off its path: the guard only queues the sample here.
            answer = execution.result.outputs if execution is not None else {t.name: t.data for t in outputs}
            self.guard.offer(GuardSample(loaded, variant, request.inputs, answer,
                                         request.parameters.get("labels"), request_id,
                                         accounted.energy.energy_j if execution is not None else None))
        if self.guard is not None:  # live quality, and the carbon the variant saved (estimates)
            params.update(self.guard.on_served(loaded, variant, accounted.record.carbon_g))
        if tenant is not None:
            params["tenant"] = tenant
            after = self.budgets.status(tenant, principal.limits) if self.budgets is not None else None
            if after is not None:  # what is left after this request, and what was done about the budget
                params.update(after.parameters(), budget_action=budget.action if budget is not None else "ok")
        return InferAnswer(card.name, card.version, outputs, requested, request_id, params)

    @staticmethod
    def _budget_action(budget: BudgetStatus, card, loaded: LoadedVersion, wanted_variant: str | None,
                       excluded=None) -> str | None:
        """Reject, refuse deferrable work, or pick the cheaper variant the card allows: its cheapest fallback
        that is loaded here and that the quality guard has not taken out of routing (``excluded``; the
        router would only swap an excluded one back to the dearer reference)."""
        retry_s = max(1.0, budget.period_end_s - time.time())
        spent = f"tenant {budget.tenant} has spent {budget.used_ratio:.0%} of its {budget.budget_g:g} gCO2e {budget.period} carbon budget"
        if budget.action == "reject":
            raise TooManyRequests(f"{spent}; requests are refused until the period ends", retry_s)
        if budget.action == "defer":  # over HTTP the gateway turns this into a job (gateway/jobs_api.py)
            raise BudgetDeferred(f"{spent}; deferrable work is not served now: submit it as a job "
                                 f"(POST /v2/models/{card.name}/jobs) or retry after the period ends", retry_s,
                                 budget.tenant, budget.defer_deadline_s)
        cheaper = [v for v in card.fallback_variants
                   if v in loaded.variants and not (excluded is not None and excluded.is_excluded(card.name, v))]
        return cheaper[0] if cheaper else wanted_variant


def _encode_rest(answer: InferAnswer) -> tuple[bytes, dict[str, str]]:
    # One id joins the response body, its X-Request-Id header and the ledger row.
    body, headers = encode_infer_response(answer.model, answer.version, answer.outputs, answer.requested,
                                          answer.request_id, answer.parameters)
    headers.update(parameter_headers(answer.parameters))
    headers["x-request-id"] = quote(answer.request_id, safe=_HEADER_SAFE)
    return body, headers


def _client_request_id(headers: dict[str, str]) -> str | None:
    """The client's X-Request-Id when it sent a usable one (short, printable ASCII), else None."""
    value = headers.get("x-request-id")
    if value and len(value) <= MAX_ID_CHARS and value.isascii() and value.isprintable():
        return value
    return None
