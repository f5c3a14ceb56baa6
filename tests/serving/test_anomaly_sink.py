"""Anomalies through a real data plane: a spinning thread is injected, the detector flags it with its
cause in the log, the gauge and a webhook received by a local HTTP server."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from wattgate.metrics import render


class _Receiver(BaseHTTPRequestHandler):
    events: list[dict] = []

    def do_POST(self):
        self.events.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
        self.send_response(204)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Receiver.events = []
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/hook", _Receiver.events
    server.shutdown()


def _body(x) -> bytes:
    return json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 64], "data": x.tolist()}]}).encode()


async def _requests(plane, pixels, n):
    for i in range(n):
        await plane.dataplane.infer("digits", None, _body(pixels[i % len(pixels)]), {})


def _spin(stop: threading.Event) -> None:
    while not stop.is_set():  # pure Python: burns CPU (process time) while requests are in hand
        sum(i * i for i in range(2000))


def test_spinning_thread_is_flagged_with_its_cause(make_plane, pixels, webhook, caplog):
    url, events = webhook
    plane = make_plane(cache={"enabled": False}, energy={"meter": "cpu-time-model", "anomaly": {
        "webhook_url": url, "warmup": 15, "window": 9, "z_threshold": 4.0, "min_ratio": 1.5}})
    asyncio.run(_requests(plane, pixels, 80))  # one at a time: batch 1, the baseline
    assert 'wattgate_energy_anomaly{model="digits",variant="fp32",pool="fr-x86"} 0.0' in render(plane.snapshot())

    stop = threading.Event()
    spinner = threading.Thread(target=_spin, args=(stop,), daemon=True)
    caplog.set_level(logging.WARNING, logger="wattgate.anomaly")
    spinner.start()
    try:
        asyncio.run(_requests(plane, pixels, 30))
    finally:
        stop.set()
        spinner.join()

    text = render(plane.snapshot())
    assert 'wattgate_energy_anomaly{model="digits",variant="fp32",pool="fr-x86"} 1.0' in text
    lines = [r.getMessage() for r in caplog.records if r.name == "wattgate.anomaly"]
    assert any("digits/fp32 on fr-x86" in m and "likely cause: thread spin" in m for m in lines), lines
    deadline = time.time() + 10
    while not events and time.time() < deadline:
        time.sleep(0.05)
    assert events and events[0]["kind"] == "wattgate.energy_anomaly" and events[0]["state"] == "started"
    assert events[0]["pool"] == "fr-x86" and events[0]["ratio"] >= 1.5 and "thread spin" in events[0]["cause"]

    # The spin is gone: the series comes back (within a few windows: CPU time on a shared host is
    # noisy, so the window's median may need more than one window to settle) and the webhook hears it.
    cleared = 'wattgate_energy_anomaly{model="digits",variant="fp32",pool="fr-x86"} 0.0'
    for _ in range(10):
        asyncio.run(_requests(plane, pixels, 20))
        if cleared in render(plane.snapshot()):
            break
    assert cleared in render(plane.snapshot())
    deadline = time.time() + 10
    while len(events) < 2 and time.time() < deadline:
        time.sleep(0.05)
    assert [e["state"] for e in events] == ["started", "cleared"]


def test_a_webhook_that_is_down_is_counted_not_raised(make_plane, pixels):
    from energy.anomaly import AnomalyEvent

    plane = make_plane(cache={"enabled": False}, energy={"anomaly": {"webhook_url": "http://127.0.0.1:9/nowhere",
                                                                     "webhook_timeout_s": 1}})
    plane.anomaly_sink._report(AnomalyEvent("digits", "fp32", "fr-x86", "started", "test", 2e-3, 1e-3, 2.0, 9.0))
    deadline = time.time() + 10
    while plane.anomaly_sink.webhook_failures.value() < 1 and time.time() < deadline:
        time.sleep(0.05)
    assert plane.anomaly_sink.webhook_failures.value() == 1
