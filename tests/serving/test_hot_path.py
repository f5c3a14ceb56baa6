"""The per-request cuts of issue 18: a repeated body that hit the cache skips parsing, the books that
only a scrape reads are fed in groups, and the energy anomaly detector sees one request per batch.
Each test checks that the cut keeps the answers and the books exactly as they were."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from serving.accounting import FLUSH_EVERY
from serving.dataplane import BodyMemo
from wattgate.metrics import MetricsRegistry


def _body(x: np.ndarray, **doc) -> bytes:
    return json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": list(x.shape),
                                   "data": x.reshape(-1).tolist()}], **doc}).encode()


def _run(plane, body: bytes, headers: dict | None = None) -> dict:
    out, _ = asyncio.run(plane.dataplane.infer("digits", None, body, headers or {}))
    return json.loads(out)


def _count_parses(plane, monkeypatch) -> list:
    calls = []
    real = plane.dataplane.parse_rest

    def counting(body, headers):
        calls.append(body)
        return real(body, headers)

    monkeypatch.setattr(plane.dataplane, "parse_rest", counting)
    return calls


def test_a_body_that_hit_the_cache_is_not_parsed_again_and_answers_the_same(make_plane, pixels, monkeypatch):
    plane = make_plane()
    parses = _count_parses(plane, monkeypatch)
    body = _body(pixels[3:5], id="req-7")
    answers = [_run(plane, body) for _ in range(4)]
    assert [a["parameters"]["cache"] for a in answers] == ["miss", "hit", "hit", "hit"]
    assert len(parses) == 2, "parsed on the miss and on the first hit, then served from the memo"
    assert all(a["outputs"] == answers[0]["outputs"] and a["id"] == "req-7" for a in answers)
    assert len(plane.dataplane.memo) == 1
    # Any other byte string is parsed: one more space, or a different content encoding header.
    _run(plane, body.replace(b'"id"', b' "id"'))
    _run(plane, body, {"inference-header-content-length": str(len(body))})
    assert len(parses) == 4


def test_a_bad_body_never_enters_the_memo_and_fails_every_time(make_plane, pixels, monkeypatch):
    from wattgate.errors import BadRequest

    plane = make_plane()
    parses = _count_parses(plane, monkeypatch)
    bad = _body(pixels[:1]).replace(b'"FP32"', b'"INT8"')
    for _ in range(3):
        with pytest.raises(BadRequest):
            _run(plane, bad)
    assert len(parses) == 3 and len(plane.dataplane.memo) == 0


def test_a_reloaded_model_drops_its_memo_entries(make_plane, pixels):
    plane = make_plane()
    body = _body(pixels[:1])
    _run(plane, body), _run(plane, body)
    assert len(plane.dataplane.memo) == 1
    host = plane.dataplane.host
    loaded = host.resolve("digits", None)
    memo_key = next(iter(plane.dataplane.memo._entries))
    assert plane.dataplane.memo.get(memo_key, object()) is None, "another loaded version: not this entry"
    assert len(plane.dataplane.memo) == 0
    assert plane.dataplane.memo.get(memo_key, loaded) is None


def test_the_memo_is_bounded_by_entries_and_bytes():
    memo = BodyMemo(max_entries=3, max_bytes=100, max_body_bytes=60)
    loaded = object()
    for i in range(5):
        memo.put(("m", None, None, None, b"%d" % i), object())
    assert len(memo) == 3 and memo.get(("m", None, None, None, b"0"), loaded) is None
    memo.put(("m", None, None, None, b"x" * 61), object())  # over max_body_bytes: never kept
    assert ("m", None, None, None, b"x" * 61) not in memo._entries
    for i in range(2):
        memo.put(("m", None, None, None, bytes([65 + i]) * 50), object())
    assert memo._bytes <= 100


def test_batched_books_match_the_requests_after_a_scrape(make_plane, pixels):
    plane = make_plane(cache={"enabled": False})
    n = 7  # fewer than FLUSH_EVERY: all still pending until the scrape flushes them
    assert n < FLUSH_EVERY
    answers = [_run(plane, _body(pixels[i:i + 1])) for i in range(n)]
    snap = plane.snapshot()
    requests = sum(v for _, v in snap["wattgate_requests_total"]["series"])
    energy = sum(v for _, v in snap["wattgate_energy_joules_total"]["series"])
    pool_requests = sum(v for _, v in snap["wattgate_pool_requests_total"]["series"])
    latency_count = sum(v[-1] for _, v in snap["wattgate_request_latency_seconds"]["series"])
    tenant_requests = sum(v for _, v in snap["wattgate_tenant_requests_total"]["series"])
    assert requests == pool_requests == latency_count == tenant_requests == n
    assert energy == pytest.approx(sum(a["parameters"]["energy_j"] for a in answers), rel=1e-9)
    slo = {tuple(k)[-1]: v for k, v in snap["wattgate_slo_requests_total"]["series"]}
    assert slo["met"] + slo["missed"] == n


def test_the_accountant_flushes_every_group_without_a_scrape(make_plane, pixels):
    plane = make_plane(cache={"enabled": False})
    body = _body(pixels[:1])

    async def many():
        for _ in range(FLUSH_EVERY + 5):
            await plane.dataplane.infer("digits", None, body, {})

    asyncio.run(many())
    # Read the registry itself (no scrape): one full group has reached the books, the rest is pending.
    fam = plane.metrics.snapshot()["wattgate_requests_total"]["series"]
    assert sum(v for _, v in fam) == FLUSH_EVERY
    assert len(plane.dataplane.accountant._pending) == 5


def test_the_anomaly_detector_sees_one_observation_per_batch(make_plane, digits_repository, pixels):
    plane = make_plane(cache={"enabled": False}, routing={"topology_file": "/nonexistent"},
                       models={"repository": str(digits_repository),
                               "defaults": {"max_batch_size": 32, "batch_wait_timeout_s": 0.05}})
    body = _body(pixels[:1])

    async def burst():
        return await asyncio.gather(*(plane.dataplane.infer("digits", None, body, {}) for _ in range(24)))

    for _ in range(3):
        asyncio.run(burst())
    plane.snapshot()
    batches = sum(s["execution_count"] for s in plane.dataplane.model_stats("digits", None)["model_stats"])
    assert batches < 72, "the bursts were batched"
    det = plane.anomaly_sink.detector
    observed = sum(len(s.learned_j) + len(s.recent) for s in det._series.values())
    assert observed == batches


def test_many_observations_land_in_the_same_buckets_as_one_by_one():
    values = [0.0, 1e-4, 2e-4, 1e-3, 0.5, 3.0, 100.0, float("nan")]
    a, b = MetricsRegistry(), MetricsRegistry()
    ha, hb = a.histogram("h", "x", ("m",)), b.histogram("h", "x", ("m",))
    for v in values:
        ha.observe(v, m="x")
    hb.observe_many_key(("x",), values)
    sa, sb = a.snapshot()["h"]["series"], b.snapshot()["h"]["series"]
    assert sa[0][1][:-2] == sb[0][1][:-2] and sa[0][1][-1] == sb[0][1][-1]
