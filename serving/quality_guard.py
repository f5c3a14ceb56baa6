"""The live quality guard: a sample of the requests a cheaper variant served is run again on the
reference variant, off the request path, and the answers compared (``models/quality.py``).

The data plane hands over a sampled request only after it has answered it (:meth:`QualityGuard.offer`
queues and returns at once; a full queue drops the sample and counts it). One worker task per
replica takes samples one at a time and hands each to a :class:`ReferenceRunner`, which places the
reference run like deferrable work (spare capacity only, where the routing policy puts it: the
cleanest pool by default), or on this replica's own pool when no pool has room. The meter of the
pool that ran it charges that run to the guard: its energy and carbon (at that pool's intensity) are
the cost of quality assurance, labelled ``wattgate_quality_guard_*{pool,method}`` and written to the
ledger's ``quality`` table with every sample. A reference that fails is counted and logged; the
client already has its answer.

What a variant saves: each sample gives the energy the reference spent on the request the variant
served; per variant, the ratio of the sums estimates what the reference would have cost. Every
request the variant serves then adds its carbon x (ratio - 1) to ``wattgate_variant_carbon_saved_grams``
and says it in ``variant_carbon_saved_g_est`` (estimates, as in ``wattgate ledger summary``).

Below the card's floor (after ``min_rows`` compared rows) the guard alerts: a warning log line,
``wattgate_variant_quality_alert`` = 1; with ``action: exclude`` it also takes the variant out of
routing (``routing/exclusions.py``) until an operator re-enables it. Those decisions reach the
other ingress replicas through :meth:`QualityGuard.unposted_exclusions` / :meth:`adopt_exclusions`,
which the gateway's control board calls (``gateway/replica_sync.py``); this room knows no Ray.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from dataclasses import dataclass
from typing import Awaitable, Callable

import numpy as np

from energy.attribution import RequestEnergy
from energy.ledger import EnergyLedger
from energy.ledger_record import QualityRecord
from models.quality import AGREEMENT, QualityTracker, Verdict, accuracy, compare, guard_metric, live_floor, parse_labels
from models.work import WorkResult
from routing.exclusions import VariantExclusions
from routing.live import ClientContext, Router
from routing.pools import PoolExecutor, PoolJob
from serving.host import LoadedVersion, ModelHost
from wattgate.errors import BadRequest, Overloaded, Unavailable, WattgateError
from wattgate.metrics import MetricsRegistry
from wattgate.settings import QualityGuardSettings
from wattgate.tensors import Tensor

log = logging.getLogger("wattgate.quality")

_HOUR_S = 3600.0


@dataclass(frozen=True)
class GuardSample:
    """A request the data plane has answered with a non-reference variant."""

    loaded: LoadedVersion
    variant: str
    inputs: list[Tensor]
    served: dict[str, np.ndarray]  # the answer's outputs (those the client asked for)
    labels: object  # the client's ``parameters.labels``, unchecked
    request_id: str
    served_energy_j: float | None


@dataclass(frozen=True)
class ReferenceRun:
    """A reference run and where it ran: its carbon is priced on that pool (None: intensity unknown)."""

    result: WorkResult
    pool: str
    carbon_g: float | None


class ReferenceRunner:
    """Places the guard's reference runs as the router places deferrable work: spare capacity only,
    the active policy's choice among pools with room; this replica's own pool when none has room."""

    def __init__(self, router: Router, local: PoolExecutor, local_pool: str,
                 carbon_g: Callable[[RequestEnergy, str], float | None] = lambda e, pool: None) -> None:
        self.router = router
        self.local = local
        self.local_pool = local_pool
        self._carbon_g = carbon_g

    async def __call__(self, loaded: LoadedVersion, job: PoolJob) -> ReferenceRun:
        try:
            route = self.router.route(loaded.card, job.variant, loaded.variants, ClientContext(deferrable=True))
        except (Overloaded, Unavailable):
            route = None  # no pool has spare capacity for it now
        if route is not None and route.variant == job.variant:
            try:
                execution = await self.router.execute(route, job)
            except Overloaded:
                pass  # filled up since: run it here
            else:
                pool = execution.route.pool.name
                return ReferenceRun(execution.result, pool, self._carbon_g(execution.result.energy, pool))
        result = await self.local.run(job)
        return ReferenceRun(result, self.local_pool, self._carbon_g(result.energy, self.local_pool))


class QualityGuard:
    def __init__(
        self,
        settings: QualityGuardSettings,
        run: Callable[[LoadedVersion, PoolJob], Awaitable[ReferenceRun]],
        metrics: MetricsRegistry,
        exclusions: VariantExclusions | None = None,
        ledger: EnergyLedger | None = None,
        work: tuple[Callable[[], None], Callable[[], None]] = (lambda: None, lambda: None),
        intensity_g_per_kwh: Callable[[], float | None] = lambda: None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._run = run
        self.exclusions = exclusions
        self.ledger = ledger
        self._work_started, self._work_finished = work
        self._intensity = intensity_g_per_kwh
        self._rng = rng or random.Random()
        self._clock = clock
        self.tracker = QualityTracker(settings.window_rows, settings.min_rows)
        self._queue: asyncio.Queue[GuardSample] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: asyncio.Task | None = None
        self._hour_start_s = clock()
        self._hour_j = 0.0
        self._energy_pairs: dict[tuple[str, str], list[float]] = {}  # (model, variant) -> [reference J, served J]
        self._excluded_seen: set[tuple[str, str]] = set()
        self._saved_g: dict[tuple[str, str], float] = {}
        labels = ("model", "variant")
        self.agreement = metrics.gauge(
            "wattgate_variant_agreement", "Live quality of a variant against the reference over the guard's window: "
            "top-1 agreement (classifiers) or mean cosine (embedders)", labels, merge="mean")
        self.accuracy = metrics.gauge(
            "wattgate_variant_accuracy", "Accuracy against client-sent labels on the guard's samples", labels, merge="mean")
        self.alert = metrics.gauge(
            "wattgate_variant_quality_alert", "1 while a variant's live quality is below its card's floor", labels, merge="max")
        self.excluded = metrics.gauge(
            "wattgate_variant_excluded", "1 while the quality guard keeps a variant out of routing", labels, merge="max")
        self.samples = metrics.counter(
            "wattgate_quality_guard_samples_total", "Guard samples by outcome: compared, dropped (queue full), failed "
            "(the reference failed), over_budget, dirty_window (grid above max_intensity_g_per_kwh), "
            "labels_ignored (labels in a wrong shape)", (*labels, "outcome"))
        cost = (*labels, "pool", "method")
        self.energy = metrics.counter(
            "wattgate_quality_guard_energy_joules_total", "Energy of the guard's reference runs (the cost of the check), "
            "by the pool that ran them and how its energy was obtained (method: measured or modelled, as in the ledger)", cost)
        self.carbon = metrics.counter(
            "wattgate_quality_guard_carbon_grams_total", "Carbon of the guard's reference runs at the intensity of the "
            "pool that ran them (method: how their energy was obtained)", cost)
        self.saved = metrics.gauge(
            "wattgate_variant_carbon_saved_grams", "Estimated carbon a variant saved against its reference since the "
            "replica started: each request's carbon x (reference J / variant J - 1), the ratio measured on the guard's "
            "samples (negative when the variant costs more)", labels, merge="sum")

    # -- configuration checks ------------------------------------------------------------------
    def check_models(self, host: ModelHost) -> None:
        """At load: every loaded model with a choice of variants must have its reference variant loaded."""
        for state in host.models.values():
            for loaded in state.versions.values():
                reference = self.settings.reference(loaded.card.name)
                if len(loaded.variants) > 1 and reference not in loaded.variants:
                    raise BadRequest(
                        f"quality_guard: reference variant {reference!r} of {loaded.card.name}:{loaded.card.version} is "
                        f"not loaded (variants: {sorted(loaded.variants)}); set quality_guard.per_model_reference")

    # -- the request path: decide and queue, never wait ------------------------------------------
    def wants(self, loaded: LoadedVersion, variant: str) -> bool:
        reference = self.settings.reference(loaded.card.name)
        if variant == reference or reference not in loaded.variants:
            return False
        return self._rng.random() < self.settings.sample_rate

    def offer(self, sample: GuardSample) -> bool:
        """Queue ``sample`` for the worker; False when skipped (over the energy budget, a dirty window) or dropped (queue full)."""
        model, variant = sample.loaded.card.name, sample.variant
        if self._over_budget():
            self.samples.inc(model=model, variant=variant, outcome="over_budget")
            return False
        limit = self.settings.max_intensity_g_per_kwh
        now_g = self._intensity() if limit is not None else None
        if now_g is not None and now_g > limit:
            self.samples.inc(model=model, variant=variant, outcome="dirty_window")
            return False
        loop = asyncio.get_running_loop()
        if self._queue is None or self._loop is not loop:  # first sample, or the replica's loop was replaced
            self._loop, self._queue = loop, asyncio.Queue(maxsize=self.settings.queue_size)
            self._worker = loop.create_task(self._drain(self._queue), name="wattgate-quality-guard")
        try:
            self._queue.put_nowait(sample)
        except asyncio.QueueFull:
            self.samples.inc(model=model, variant=variant, outcome="dropped")
            return False
        return True

    def live_value(self, loaded: LoadedVersion, variant: str) -> float | None:
        """The variant's rolling live quality so far (None before any compared sample)."""
        return self.tracker.value(loaded.card.name, variant, guard_metric(loaded.card)[0])

    def energy_ratio(self, model: str, variant: str) -> float | None:
        """Reference J / variant J over the guard's samples of ``variant`` (None before one with both)."""
        pair = self._energy_pairs.get((model, variant))
        return pair[0] / pair[1] if pair and pair[1] > 0 else None

    def on_served(self, loaded: LoadedVersion, variant: str, carbon_g: float | None) -> dict:
        """After a request is accounted: book the carbon ``variant`` saved on it (an estimate) and return
        the response's parameters: ``variant_quality`` and ``variant_carbon_saved_g_est`` once known."""
        model, params = loaded.card.name, {}
        live = self.live_value(loaded, variant)
        if live is not None:
            params["variant_quality"] = round(live, 5)
        ratio = self.energy_ratio(model, variant) if variant != self.settings.reference(model) else None
        if ratio is not None and carbon_g is not None:
            saved_g = carbon_g * (ratio - 1.0)
            total_g = self._saved_g[(model, variant)] = self._saved_g.get((model, variant), 0.0) + saved_g
            self.saved.set(total_g, model=model, variant=variant)
            params["variant_carbon_saved_g_est"] = saved_g
        return params

    # -- off the request path ---------------------------------------------------------------------
    async def _drain(self, queue: asyncio.Queue[GuardSample]) -> None:
        while True:
            sample = await queue.get()
            try:
                await self.check(sample)
            except Exception:  # the worker must outlive any one sample
                log.exception("quality guard: sample %s failed unexpectedly", sample.request_id)
            finally:
                queue.task_done()

    async def join(self) -> None:
        """Wait until every queued sample is checked (tests, shutdown)."""
        if self._queue is not None and self._loop is asyncio.get_running_loop():
            await self._queue.join()

    async def check(self, sample: GuardSample) -> Verdict | None:
        """Run ``sample`` on the reference, compare, book and act; None when it could not be compared."""
        loaded, card = sample.loaded, sample.loaded.card
        model, variant = card.name, sample.variant
        reference = self.settings.reference(model)
        metric, output = guard_metric(card)
        rows = sample.inputs[0].batch_size if sample.inputs else 0
        labels = parse_labels(sample.labels, rows) if sample.labels is not None else None
        if sample.labels is not None and labels is None:
            self.samples.inc(model=model, variant=variant, outcome="labels_ignored")
        if output not in sample.served:
            self.samples.inc(model=model, variant=variant, outcome="failed")
            log.info("quality guard: request %s did not ask for %s; nothing to compare", sample.request_id, output)
            return None
        job = PoolJob(model, card.version, reference, loaded.work_item(reference, sample.inputs), loaded.output_names)
        self._work_started()
        try:
            run = await self._run(loaded, job)
        except WattgateError as exc:
            self.samples.inc(model=model, variant=variant, outcome="failed")
            log.warning("quality guard: reference %s/%s failed on request %s: %s", model, reference, sample.request_id, exc)
            return None
        finally:
            self._work_finished()
        result = run.result
        try:
            comparison = compare(metric, output, result.outputs, sample.served)
        except ValueError as exc:
            self.samples.inc(model=model, variant=variant, outcome="failed")
            log.warning("quality guard: cannot compare %s/%s with %s: %s", model, variant, reference, exc)
            return None
        energy_j, carbon_g = result.energy.energy_j, run.carbon_g
        self._hour_j += energy_j
        cost = {"model": model, "variant": variant, "pool": run.pool, "method": result.energy.method}
        self.energy.inc(energy_j, **cost)
        if carbon_g is not None:
            self.carbon.inc(carbon_g, **cost)
        if sample.served_energy_j:  # a cache hit's answer ran nothing: no energy pair to compare
            pair = self._energy_pairs.setdefault((model, variant), [0.0, 0.0])
            pair[0] += energy_j
            pair[1] += sample.served_energy_j
        self.samples.inc(model=model, variant=variant, outcome="compared")
        acc = ref_acc = None
        if labels is not None and metric == AGREEMENT:
            acc_values = accuracy(labels, sample.served[output])
            ref_acc = float(np.mean(accuracy(labels, result.outputs[output])))
            acc = float(np.mean(acc_values))
            self.tracker.observe(model, variant, "accuracy", acc_values, None)
        verdict = self.tracker.observe(model, variant, metric, comparison.values,
                                       live_floor(card, metric, self.settings.floors.get(model)))
        if self.ledger is not None:
            self.ledger.append_quality(QualityRecord(
                time_s=self._clock(), request_id=sample.request_id, model=model, version=card.version, variant=variant,
                reference=reference, metric=metric, value=comparison.mean, rows=len(comparison.values),
                energy_j=energy_j, carbon_g=carbon_g, served_energy_j=sample.served_energy_j,
                energy_method=result.energy.method, accuracy=acc, reference_accuracy=ref_acc,
            ))
        self._act(verdict, reference)
        return verdict

    def _act(self, verdict: Verdict, reference: str) -> None:
        self.agreement.set(verdict.value, model=verdict.model, variant=verdict.variant)
        self.alert.set(1.0 if verdict.below else 0.0, model=verdict.model, variant=verdict.variant)
        if not verdict.tripped:
            return
        log.warning("quality guard alert: %s", verdict.reason())
        if self.settings.action == "exclude" and self.exclusions is not None:
            self.exclusions.exclude(verdict.model, verdict.variant, reference, verdict.reason())

    def _over_budget(self) -> bool:
        budget = self.settings.budget_j_per_hour
        if budget is None:
            return False
        now = self._clock()
        if now - self._hour_start_s >= _HOUR_S:
            self._hour_start_s, self._hour_j = now, 0.0
        return self._hour_j >= budget

    # -- operators -----------------------------------------------------------------------------------
    def enable(self, model: str, variant: str, actor: str, reason: str = "") -> bool:
        """Re-enable an excluded variant; its rolling window starts afresh."""
        done = self.exclusions.enable(model, variant, actor, reason) if self.exclusions is not None else False
        self._restart(model, variant)
        return done

    def _restart(self, model: str, variant: str) -> None:
        self.tracker.reset(model, variant)
        self.alert.set(0.0, model=model, variant=variant)
        self.excluded.set(0.0, model=model, variant=variant)

    # -- the other ingress replicas (called by the gateway's control board) ---------------------------
    def unposted_exclusions(self) -> list[dict]:
        return self.exclusions.unposted() if self.exclusions is not None else []

    def adopt_exclusions(self, view: dict) -> None:
        """Another replica's exclusions and re-enablings: a variant re-enabled there starts afresh here too
        (else this replica's old window would exclude it again on its next sample)."""
        if self.exclusions is None:
            return
        for model, variant in self.exclusions.adopt(view):
            self._restart(model, variant)

    def refresh(self) -> None:
        """At each scrape: accuracy and exclusion gauges from the current state."""
        for (model, variant, metric), (value, _) in self.tracker.current().items():
            if metric == "accuracy":
                self.accuracy.set(value, model=model, variant=variant)
        if self.exclusions is not None:
            active = {(e.model, e.variant) for e in self.exclusions.active()}
            for model, variant in active | self._excluded_seen:
                self.excluded.set(1.0 if (model, variant) in active else 0.0, model=model, variant=variant)
            self._excluded_seen |= active

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
