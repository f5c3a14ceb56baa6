"""Per-tenant books: energy, carbon and requests under a bounded ``tenant`` label, and the tenants'
carbon budgets (what each request spent, and ``wattgate_budget_used_ratio{tenant}`` at each scrape)."""

from __future__ import annotations

from typing import Callable, Sequence

from serving.accounting import AccountedRequest
from tenants.budgets import TenantBudgets
from wattgate.metrics import MetricsRegistry

ANONYMOUS_LABEL = "none"  # requests no key or trusted proxy named
OTHER_LABEL = "other"  # tenants past the label limit, or named by a trusted proxy but holding no key


class TenantSink:
    def __init__(self, metrics: MetricsRegistry, budgets: TenantBudgets, known_tenants: Callable[[], set[str]],
                 max_labels: int) -> None:
        self.budgets = budgets
        self._known = known_tenants
        self._max_labels = max_labels
        self._labels: set[str] = set()
        self._requests = metrics.counter("wattgate_tenant_requests_total", "Requests answered, by tenant", ("tenant",))
        self._energy = metrics.counter("wattgate_tenant_energy_joules_total", "Energy charged to requests, by tenant",
                                       ("tenant",))
        self._carbon = metrics.counter("wattgate_tenant_carbon_grams_total",
                                       "gCO2e (operational + embodied) charged to requests of known carbon, by tenant",
                                       ("tenant",))
        self._used = metrics.gauge("wattgate_budget_used_ratio", "A tenant's carbon spent this period over its budget",
                                   ("tenant",), merge="max")

    def label(self, tenant: str | None) -> str:
        """The tenant itself while it holds a key and the label limit allows; else "other" (or "none")."""
        if tenant is None:
            return ANONYMOUS_LABEL
        if tenant in self._labels:
            return tenant
        if len(self._labels) < self._max_labels and tenant in self._known():
            self._labels.add(tenant)
            return tenant
        return OTHER_LABEL

    def record(self, accounted: AccountedRequest) -> None:
        """Per request: the tenant's budget sees its carbon before the tenant's next request is judged."""
        r = accounted.record
        if r.carbon_g is not None and r.tenant is not None:
            self.budgets.add(r.tenant, r.carbon_g)

    def record_many(self, batch: Sequence[AccountedRequest]) -> None:
        """The tenant families, summed per tenant label first (a batched sink)."""
        groups: dict[str | None, list] = {}
        for a in batch:
            r = a.record
            g = groups.get(r.tenant)
            if g is None:
                g = groups[r.tenant] = [0, 0.0, 0.0, False]
            g[0] += 1
            g[1] += r.energy_j
            if r.carbon_g is not None:
                g[2] += r.carbon_g
                g[3] = True
        for tenant, (n, energy_j, carbon_g, known) in groups.items():
            label = (self.label(tenant),)
            self._requests.inc_key(label, float(n))
            self._energy.inc_key(label, energy_j)
            if known:
                self._carbon.inc_key(label, carbon_g)

    def refresh(self) -> None:
        for tenant, ratio in self.budgets.used_ratios().items():
            self._used.set(ratio, tenant=self.label(tenant))
