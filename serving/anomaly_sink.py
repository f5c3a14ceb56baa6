"""Feeds each accounted request to the energy anomaly detector (energy/anomaly.py) and reports what it
finds three ways: the gauge ``wattgate_energy_anomaly{model,variant,pool}`` (1 while anomalous), a
warning log line that names the likely cause, and a JSON POST to ``energy.anomaly.webhook_url``
(sent from a background thread: never on the request path; a failed POST is logged and counted).
"""

from __future__ import annotations

import logging
import queue
import threading
from typing import Sequence

import httpx

from energy.anomaly import AnomalyEvent, EnergyAnomalyDetector, EnergyObservation
from energy.settings import AnomalySettings
from serving.accounting import AccountedRequest
from wattgate.metrics import MetricsRegistry

log = logging.getLogger("wattgate.anomaly")


class Webhook:
    """POSTs events in order from one daemon thread; a full queue drops (and counts) the newest."""

    def __init__(self, url: str, timeout_s: float, on_failure) -> None:
        self.url = url
        self.timeout_s = timeout_s
        self._on_failure = on_failure
        self._queue: queue.Queue[dict | None] = queue.Queue(maxsize=100)
        self._thread = threading.Thread(target=self._run, name="wattgate-anomaly-webhook", daemon=True)
        self._thread.start()

    def send(self, doc: dict) -> None:
        try:
            self._queue.put_nowait(doc)
        except queue.Full:
            self._on_failure("queue full")

    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout_s) as client:
            while (doc := self._queue.get()) is not None:
                try:
                    client.post(self.url, json=doc).raise_for_status()
                except httpx.HTTPError as exc:
                    self._on_failure(str(exc))

    def close(self) -> None:
        self._queue.put(None)
        self._thread.join(timeout=self.timeout_s)


class AnomalySink:
    def __init__(self, detector: EnergyAnomalyDetector, registry: MetricsRegistry, webhook: Webhook | None = None) -> None:
        self.detector = detector
        self.webhook = webhook
        self.gauge = registry.gauge(
            "wattgate_energy_anomaly", "1 while active J per inference is anomalously above its baseline",
            ("model", "variant", "pool"), merge="max",
        )
        self.ignored = registry.counter(
            "wattgate_energy_anomaly_ignored_total", "Observations the detector ignored (NaN, infinite or negative energy)"
        )
        self.webhook_failures = registry.counter(
            "wattgate_energy_anomaly_webhook_failures_total", "Anomaly webhook POSTs that failed or were dropped"
        )
        self.webhook_failures.inc(0.0)  # a series from the start: an alert on it is never an empty query
        self._ignored_seen = 0

    @classmethod
    def from_settings(cls, settings: AnomalySettings, registry: MetricsRegistry) -> "AnomalySink":
        detector = EnergyAnomalyDetector(warmup=settings.warmup, window=settings.window,
                                         z_threshold=settings.z_threshold, min_ratio=settings.min_ratio)
        sink = cls(detector, registry)
        if settings.webhook_url:
            sink.webhook = Webhook(settings.webhook_url, settings.webhook_timeout_s, sink._webhook_failed)
        return sink

    def record_many(self, batch: Sequence[AccountedRequest]) -> None:
        """One observation per batch run: every request of a batch has the same J per inference, so the
        batch's first request stands for it (a batched sink: see serving/accounting.py)."""
        for accounted in batch:
            if not accounted.batch_lead:
                continue
            r = accounted.record
            event = self.detector.observe(EnergyObservation(
                model=r.model, variant=r.variant, pool=r.pool, hardware=r.hardware, version=r.version,
                batch_size=r.batch_size, rows=accounted.rows, active_j=accounted.energy.active_j, time_s=r.time_s,
            ))
            if event is not None:
                self._report(event)

    def _report(self, event: AnomalyEvent) -> None:
        self.gauge.set(1.0 if event.state == "started" else 0.0, model=event.model, variant=event.variant, pool=event.pool)
        if event.state == "started":
            log.warning(
                "energy anomaly %s/%s on %s: %.3g mJ per inference, %.2fx the baseline %.3g mJ (z=%.1f); likely cause: %s",
                event.model, event.variant, event.pool, event.observed_j_per_inference * 1e3, event.ratio,
                event.expected_j_per_inference * 1e3, event.z_score, event.cause,
            )
        else:
            log.info("energy anomaly over: %s/%s on %s", event.model, event.variant, event.pool)
        if self.webhook is not None:
            self.webhook.send({"kind": "wattgate.energy_anomaly", **event.to_dict()})

    def _webhook_failed(self, why: str) -> None:
        self.webhook_failures.inc()
        log.warning("anomaly webhook failed: %s", why)

    def refresh(self) -> None:
        """At each scrape: every series judged so far has a gauge (0 when normal), and the ignored count."""
        for (model, variant, pool), anomalous in self.detector.anomalous().items():
            self.gauge.set(1.0 if anomalous else 0.0, model=model, variant=variant, pool=pool)
        ignored = self.detector.ignored
        self.ignored.inc(max(ignored - self._ignored_seen, 0))
        self._ignored_seen = ignored

    def close(self) -> None:
        if self.webhook is not None:
            self.webhook.close()
