"""The live quality guard: a sample of the requests a cheaper variant served is run again on the
reference variant, off the request path, and the answers compared (``models/quality.py``).

The data plane hands over a sampled request only after it has answered it (:meth:`QualityGuard.offer`
queues and returns at once; a full queue drops the sample and counts it). One worker task per
replica takes samples one at a time and runs them on the reference variant's own batch queue, as
request work, so the meter charges that run to the guard: its energy and carbon are the cost of
quality assurance, metered, labelled ``wattgate_quality_guard_*`` and written to the ledger's
``quality`` table with every sample. A reference that fails is counted and logged; the client
already has its answer.

Below the card's floor (after ``min_rows`` compared rows) the guard alerts: a warning log line,
``wattgate_variant_quality_alert`` = 1; with ``action: exclude`` it also takes the variant out of
routing (``routing/exclusions.py``) until an operator re-enables it.
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
from routing.pools import PoolJob
from serving.host import LoadedVersion, ModelHost
from wattgate.errors import BadRequest, WattgateError
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


class QualityGuard:
    def __init__(
        self,
        settings: QualityGuardSettings,
        run: Callable[[PoolJob], Awaitable[WorkResult]],
        metrics: MetricsRegistry,
        exclusions: VariantExclusions | None = None,
        ledger: EnergyLedger | None = None,
        carbon_g: Callable[[RequestEnergy], float | None] = lambda e: None,
        work: tuple[Callable[[], None], Callable[[], None]] = (lambda: None, lambda: None),
        intensity_g_per_kwh: Callable[[], float | None] = lambda: None,
        rng: random.Random | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self._run = run
        self.exclusions = exclusions
        self.ledger = ledger
        self._carbon_g = carbon_g
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
        self.energy = metrics.counter(
            "wattgate_quality_guard_energy_joules_total", "Energy of the guard's reference runs (the cost of the check)", labels)
        self.carbon = metrics.counter(
            "wattgate_quality_guard_carbon_grams_total", "Carbon of the guard's reference runs", labels)

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
            result = await self._run(job)
        except WattgateError as exc:
            self.samples.inc(model=model, variant=variant, outcome="failed")
            log.warning("quality guard: reference %s/%s failed on request %s: %s", model, reference, sample.request_id, exc)
            return None
        finally:
            self._work_finished()
        try:
            comparison = compare(metric, output, result.outputs, sample.served)
        except ValueError as exc:
            self.samples.inc(model=model, variant=variant, outcome="failed")
            log.warning("quality guard: cannot compare %s/%s with %s: %s", model, variant, reference, exc)
            return None
        energy_j = result.energy.energy_j
        carbon_g = self._carbon_g(result.energy)
        self._hour_j += energy_j
        self.energy.inc(energy_j, model=model, variant=variant)
        if carbon_g is not None:
            self.carbon.inc(carbon_g, model=model, variant=variant)
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
        self.tracker.reset(model, variant)
        self.alert.set(0.0, model=model, variant=variant)
        self.excluded.set(0.0, model=model, variant=variant)
        return done

    def refresh(self) -> None:
        """At each scrape: accuracy and exclusion gauges from the current state."""
        for (model, variant, metric), (value, _) in self.tracker.current().items():
            if metric == "accuracy":
                self.accuracy.set(value, model=model, variant=variant)
        if self.exclusions is not None:
            for e in self.exclusions.active():
                self.excluded.set(1.0, model=e.model, variant=e.variant)

    def close(self) -> None:
        if self._worker is not None:
            self._worker.cancel()
