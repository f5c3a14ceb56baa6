"""Jobs end to end on a real data plane (digits, replayed DE intensity, a settable clock), without Ray."""

from __future__ import annotations

import asyncio
import json
import threading
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest

from jobs.assembly import build_jobs
from routing.intensity.traces import load_trace
from wattgate.errors import BadRequest, NotFound, PayloadTooLarge
from wattgate.metrics import render

from jobs_fakes import DIRTY, TRACES, digits_body

JSON = {"content-type": "application/json"}


@pytest.fixture
def gw(make_plane, replay_sections):
    def _make(**jobs):
        replay_sections["jobs"].update(jobs)
        parts = make_plane(**replay_sections)
        return parts, build_jobs(parts)
    return _make


async def run_due(parts, jobs):
    await asyncio.gather(*await jobs.runner.tick())


def trace_min_within(hours: float):
    trace = load_trace(TRACES / "DE_2020H1.csv", region="DE")
    points = [(t, g) for t, g in zip(trace.times, trace.intensity_g_per_kwh) if DIRTY <= t < DIRTY + timedelta(hours=hours)]
    return min(points, key=lambda p: p[1])


async def test_a_job_at_a_dirty_hour_runs_in_the_forecast_minimum_and_books_the_counterfactual(gw):
    parts, jobs = gw()
    job, created = jobs.service.submit("digits", None, digits_body(2, deadline=12 * 3600), JSON)
    best_t, best_g = trace_min_within(12)
    assert created and job.state == "scheduled" and job.plan.decision == "shifted"
    assert abs((job.plan.start - best_t).total_seconds()) <= 1800  # within one trace step
    assert job.plan.expected_g_per_kwh == pytest.approx(best_g, rel=0.05)
    await run_due(parts, jobs)
    assert jobs.store.get(job.id).state == "scheduled"  # not yet: the clock is at the dirty hour
    parts.provider.clock.set(job.plan.start)
    parts.intensity.refresh()
    await run_due(parts, jobs)
    shown = jobs.service.show(job.id)
    assert shown["state"] == "done" and shown["results"][0]["outputs"][1]["shape"] == [2]
    params = shown["results"][0]["parameters"]
    assert params["request_id"] == f"{job.id}-0" and params["intensity_g_per_kwh"] < job.intensity_at_submission["DE"]
    t = shown["totals"]
    assert t["counterfactual_carbon_g"] > t["carbon_g"] > 0 and t["carbon_avoided_g"] > 0
    row = parts.ledger_sink.ledger.jobs()[0]
    assert (row.job_id, row.decision, row.state) == (job.id, "shifted", "done")
    assert row.counterfactual_carbon_g == pytest.approx(t["counterfactual_carbon_g"]) and row.carbon_g == pytest.approx(t["carbon_g"])
    assert [r.request_id for r in parts.ledger_sink.ledger.records()] == [f"{job.id}-0"]
    text = render(parts.snapshot())
    line = next(x for x in text.splitlines() if x.startswith('wattgate_shift_carbon_avoided_grams_total{model="digits"}'))
    assert float(line.split()[-1]) == pytest.approx(t["carbon_avoided_g"], rel=1e-3)
    assert 'wattgate_jobs{state="done"} 1.0' in text


async def test_without_a_forecast_it_runs_now_and_says_so(make_plane, tmp_path):
    parts = make_plane(intensity={"provider": "static"}, routing={"topology_file": str(tmp_path / "none.yaml")})
    jobs = build_jobs(parts)
    job, _ = jobs.service.submit("digits", None, digits_body(deadline=3600), JSON)
    assert job.plan.decision == "no-forecast" and "runs now" in job.plan.reason
    await run_due(parts, jobs)
    assert jobs.store.get(job.id).state == "done"


@pytest.mark.parametrize("body,error,words", [
    (digits_body(deadline=-5), BadRequest, "in the past"),
    (digits_body(deadline="2020-03-02T16:00:00Z"), BadRequest, "in the past"),
    (digits_body(deadline=47 * 3600), BadRequest, "beyond the forecast horizon"),
    (digits_body(deadline=100 * 3600), BadRequest, "max_deadline_h"),
    (digits_body(), BadRequest, "deadline is required"),
    (digits_body(deadline=3600, callback_url="ftp://example.com/x"), BadRequest, "http or https"),
    (digits_body(deadline=3600, callback_url="http://127.0.0.1:9/x"), BadRequest, "loopback"),
    (digits_body(deadline=3600, callback_url="http://169.254.169.254/latest"), BadRequest, "link-local"),
    (b"[1, 2", BadRequest, "not valid JSON"),
    (b'{"inputs": [{"name": "pixels", "datatype": "FP32", "shape": [1, 3], "data": [0, 0, 0]}]}', BadRequest, "shape"),
    (b"[" + b",".join([digits_body(deadline=60)] * 1001) + b"]", PayloadTooLarge, "at most 1000"),
])
def test_bad_submissions_fail_with_the_reason(gw, body, error, words):
    parts, jobs = gw()
    if words == "beyond the forecast horizon":  # the replayed forecast ends with the trace (June)
        parts.provider.clock.set(load_trace(TRACES / "DE_2020H1.csv", region="DE").end - timedelta(hours=2))
    with pytest.raises(error) as info:
        jobs.service.submit("digits", None, body, JSON)
    assert words in info.value.message


def test_an_unknown_job_is_404_and_an_unknown_model_is_the_same_404_as_infer(gw):
    _, jobs = gw()
    with pytest.raises(NotFound):
        jobs.service.show("nope")
    with pytest.raises(NotFound):
        jobs.service.submit("nope", None, digits_body(deadline=60), JSON)


async def test_a_list_is_one_job_and_a_known_job_id_is_idempotent(gw):
    parts, jobs = gw()
    body = json.dumps([json.loads(digits_body(1, deadline=600, job_id="batch-1")), json.loads(digits_body(3))]).encode()
    job, created = jobs.service.submit("digits", None, body, JSON)
    again, created_again = jobs.service.submit("digits", None, body, JSON)
    assert (job.id, job.requests_n, job.rows, created) == ("batch-1", 2, 4, True)
    assert (again.id, created_again) == ("batch-1", False) and jobs.store.counts() == {"scheduled": 1}


async def test_cancel_and_a_model_unloaded_before_the_job_runs(gw):
    parts, jobs = gw()
    a, _ = jobs.service.submit("digits", None, digits_body(deadline=12 * 3600), JSON)
    b, _ = jobs.service.submit("digits", None, digits_body(deadline=12 * 3600), JSON)
    assert jobs.service.cancel(a.id)["state"] == "cancelled"
    parts.host.unload("digits")
    parts.provider.clock.set(b.plan.start)
    await run_due(parts, jobs)
    failed = jobs.store.get(b.id)
    assert failed.state == "failed" and "digits" in failed.error
    assert {r.job_id: r.state for r in parts.ledger_sink.ledger.jobs()} == {b.id: "failed"}


async def test_the_callback_gets_the_finished_job(gw):
    got = []

    class Hook(BaseHTTPRequestHandler):
        def do_POST(self):
            got.append(json.loads(self.rfile.read(int(self.headers["content-length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        parts, jobs = gw(allow_private_callbacks=True)
        url = f"http://127.0.0.1:{server.server_port}/done"
        job, _ = jobs.service.submit("digits", None, digits_body(deadline=600, callback_url=url), JSON)
        parts.provider.clock.set(job.plan.start)
        await run_due(parts, jobs)
        assert got and got[0]["id"] == job.id and got[0]["state"] == "done" and got[0]["totals"]["energy_j"] > 0
    finally:
        server.shutdown()
