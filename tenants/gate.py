"""Who is calling and may they: the credential in, a ``Principal`` (tenant, key id, limits) out, then
admission against the tenant's quotas. Front ends (HTTP, gRPC) only extract the header or metadata.

    mode off       no key is read; the tenant is unknown unless a trusted proxy sends X-Tenant
    mode optional  a key, when sent, must be valid and names the tenant; without one, as off
    mode required  every model call needs a valid key
"""

from __future__ import annotations

import ipaddress
import itertools
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import AsyncIterator

from tenants.keys import KeyLimits, KeyStore, check_tenant, parse_bearer
from tenants.fair import FairQueue
from tenants.hold import AdmissionRefused, RefusalHold
from tenants.limits import Limiter
from tenants.settings import AuthSettings
from wattgate.errors import BadRequest, Forbidden, TooManyRequests, Unauthorized
from wattgate.metrics import MetricsRegistry


@dataclass(frozen=True)
class Principal:
    tenant: str | None = None
    key_id: str | None = None
    limits: KeyLimits | None = None

    def allows(self, model: str) -> bool:
        return self.limits is None or self.limits.models is None or model in self.limits.models


ANONYMOUS = Principal()
_SLOT_PREFIX = uuid.uuid4().hex[:12]
_slots = itertools.count(1)


def _networks(entries: list[str]) -> list:
    try:
        return [ipaddress.ip_network(e, strict=False) for e in entries]
    except ValueError as exc:
        raise BadRequest(f"auth.trusted_proxies: {exc}") from None


class TenantGate:
    def __init__(self, settings: AuthSettings, keys: KeyStore | None, limiter: Limiter, fair: FairQueue,
                 hold: RefusalHold | None = None) -> None:
        self.settings = settings
        self.keys = keys
        self.limiter = limiter
        self.fair = fair
        self.hold = hold or RefusalHold(settings.refusal_hold_max_s, settings.max_held_refusals,
                                        settings.max_held_refusals_per_tenant)
        self._trusted = _networks(settings.trusted_proxies)

    @property
    def mode(self) -> str:
        return self.settings.mode

    def _trusted_peer(self, peer: str | None) -> bool:
        if not peer or not self._trusted:
            return False
        try:
            addr = ipaddress.ip_address(peer.split("%")[0])
        except ValueError:
            return False
        return any(addr in net for net in self._trusted)

    def authenticate(self, authorization: str | None, x_tenant: str | None, peer: str | None,
                     model: str | None = None) -> Principal:
        """The caller, or Unauthorized / Forbidden. A key's tenant wins over any X-Tenant header."""
        credential = parse_bearer(authorization) if self.mode != "off" else None
        if credential is None:
            if self.mode == "required":
                raise Unauthorized("this gateway needs an API key: send 'Authorization: Bearer <key>'")
            if x_tenant and self._trusted_peer(peer):
                try:
                    return Principal(tenant=check_tenant(x_tenant))
                except BadRequest:
                    raise BadRequest("X-Tenant from a trusted proxy is not a valid tenant name") from None
            return ANONYMOUS
        record = self.keys.verify(*credential)
        principal = Principal(record.tenant, record.key_id, record.limits)
        if model is not None and not principal.allows(model):
            raise Forbidden(f"API key {record.key_id} is not allowed to use model {model[:64]!r}")
        return principal

    @asynccontextmanager
    async def admit(self, principal: Principal) -> AsyncIterator[None]:
        """Holds the tenant's place for one request: a rate token and an in-flight slot (refused at
        once when over), then a slot of this replica (queued in weighted fair order when saturated).
        A refusal here is an ``AdmissionRefused``, which the front ends hold (``self.hold``) before answering."""
        if principal.tenant is None:
            await self.fair.acquire(None)
            try:
                yield
            finally:
                self.fair.release()
            return
        limits = principal.limits or KeyLimits()
        slot = f"{_SLOT_PREFIX}-{next(_slots)}"  # unique across replicas, for Redis's in-flight set
        try:
            await self.limiter.acquire(principal.tenant, limits, slot)
        except TooManyRequests as exc:
            raise AdmissionRefused(exc.message, exc.retry_after_s, principal.tenant) from None
        try:
            try:
                await self.fair.acquire(principal.tenant, limits.weight)
            except TooManyRequests as exc:
                raise AdmissionRefused(exc.message, exc.retry_after_s, principal.tenant) from None
            try:
                yield
            finally:
                self.fair.release()
        finally:
            await self.limiter.release(principal.tenant, limits, slot)


def build_gate(settings: AuthSettings, keys: KeyStore | None, metrics: MetricsRegistry | None = None) -> TenantGate:
    """``metrics``: the replica's registry, which then exports the fair queue's and the hold's counters."""
    from tenants.limits import LocalLimiter, RedisLimiter

    limiter = RedisLimiter(settings.redis_url, settings.redis_prefix) if settings.redis_url else LocalLimiter()
    fair = FairQueue(settings.fair.capacity, settings.fair.max_queue_per_tenant, settings.fair.max_wait_s, metrics)
    hold = RefusalHold(settings.refusal_hold_max_s, settings.max_held_refusals, settings.max_held_refusals_per_tenant,
                       metrics)
    return TenantGate(settings, keys, limiter, fair, hold)
