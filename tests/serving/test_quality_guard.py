"""The live quality guard on the data plane: a broken cheaper variant is caught on live traffic and
taken out of routing; the sampled requests never wait for the reference."""

from __future__ import annotations

import asyncio
import json
import logging

import numpy as np
import pytest

from wattgate.errors import BadRequest
from wattgate.metrics import render

GUARD = {"enabled": True, "sample_rate": 1.0, "min_rows": 8, "window_rows": 64, "action": "exclude"}


def _body(x: np.ndarray, **parameters) -> bytes:
    doc = {"inputs": [{"name": "pixels", "datatype": "FP32", "shape": list(x.shape), "data": x.reshape(-1).tolist()}]}
    if parameters:
        doc["parameters"] = parameters
    return json.dumps(doc).encode()


def _plane(make_plane, guarded_repository, **guard):
    return make_plane(models={"repository": str(guarded_repository), "defaults": {"max_batch_size": 32,
                                                                                  "batch_wait_timeout_s": 0.001}},
                      cache={"enabled": False}, quality_guard={**GUARD, **guard})


async def _serve(plane, x: np.ndarray, n: int, **parameters) -> list[dict]:
    """``n`` requests of 4 rows each, in turn, letting the guard catch up between them."""
    docs = []
    for i in range(n):
        rows = x[(4 * i) % len(x):][:4]
        body, _ = await plane.dataplane.infer("digits", None, _body(rows, **parameters), {})
        docs.append(json.loads(body))
        await plane.guard.join()
    return docs


def test_a_broken_variant_is_caught_within_bounded_requests_and_traffic_moves_to_the_reference(
        make_plane, guarded_repository, pixels, caplog):
    plane = _plane(make_plane, guarded_repository)
    with caplog.at_level(logging.WARNING):
        docs = asyncio.run(_serve(plane, pixels, 8))
    variants = [d["parameters"]["variant"] for d in docs]
    # min_rows 8 = two 4-row samples: the guard trips on the second, and from the third request on
    # the router serves the reference instead, saying why.
    assert variants[:2] == ["int8", "int8"] and set(variants[2:]) == {"fp32"}, variants
    assert "excluded by the quality guard" in docs[-1]["parameters"]["route_reason"]
    assert docs[1]["parameters"]["variant_quality"] < 0.95
    assert any("quality guard alert" in r.message for r in caplog.records)
    assert any(r.name == "wattgate.audit" and "int8" in r.message for r in caplog.records)
    text = render(plane.snapshot())
    assert 'wattgate_variant_excluded{model="digits",variant="int8"} 1' in text
    assert 'wattgate_quality_guard_samples_total{model="digits",variant="int8",outcome="compared"} 2' in text
    agreement = [ln for ln in text.splitlines() if ln.startswith('wattgate_variant_agreement{model="digits",variant="int8"}')]
    assert agreement and float(agreement[0].split()[-1]) < 0.95
    energy = [ln for ln in text.splitlines() if ln.startswith("wattgate_quality_guard_energy_joules_total")]
    assert energy and float(energy[0].split()[-1]) > 0, "the guard's own runs are metered"
    # The ledger holds every sample, with the guard's energy and the served request's.
    plane.ledger_sink.ledger.flush()
    rows = plane.ledger_sink.ledger.quality()
    assert [(r["variant"], r["reference"], r["samples"], r["rows"]) for r in rows] == [("int8", "fp32", 2, 8)]
    assert rows[0]["value_mean"] < 0.95 and rows[0]["guard_energy_j"] > 0 and rows[0]["served_energy_j"] > 0
    # An operator re-enables it: it serves again, on probation (its window starts afresh).
    assert plane.guard.enable("digits", "int8", actor="ops", reason="replaced the file")
    again = asyncio.run(_serve(plane, pixels, 1))
    assert again[0]["parameters"]["variant"] == "int8"
    assert [h["action"] for h in plane.exclusions.show()["history"]] == ["excluded", "enabled"]


def test_a_good_cheaper_variant_keeps_serving(make_plane, guarded_repository, pixels):
    plane = _plane(make_plane, guarded_repository)
    docs = asyncio.run(_serve(plane, pixels, 6, variant="copy"))
    assert {d["parameters"]["variant"] for d in docs} == {"copy"}
    assert plane.guard.tracker.value("digits", "copy", "top1_agreement") == 1.0
    assert not plane.exclusions.active()


def test_alert_only_keeps_routing_and_labels_give_accuracy(make_plane, guarded_repository, pixels, caplog):
    from sklearn.datasets import load_digits

    y = load_digits().target
    plane = _plane(make_plane, guarded_repository, action="alert")

    async def run():
        docs = []
        for i in range(4):
            body, _ = await plane.dataplane.infer("digits", None, _body(pixels[4 * i: 4 * i + 4],
                                                                        labels=[int(v) for v in y[4 * i: 4 * i + 4]]), {})
            docs.append(json.loads(body))
        # Labels in a wrong shape: still served, ignored by the guard and counted.
        body, _ = await plane.dataplane.infer("digits", None, _body(pixels[:2], labels=[1, 2, 3]), {})
        docs.append(json.loads(body))
        await plane.guard.join()
        return docs

    with caplog.at_level(logging.WARNING):
        docs = asyncio.run(run())
    assert {d["parameters"]["variant"] for d in docs} == {"int8"}, "alert only: routing is unchanged"
    assert any("quality guard alert" in r.message for r in caplog.records)
    rows = plane.ledger_sink.ledger.quality()
    assert rows[0]["reference_accuracy"] > 0.9 > rows[0]["accuracy"]
    assert plane.guard.samples.value(model="digits", variant="int8", outcome="labels_ignored") == 1


def test_sampling_never_waits_for_the_reference_and_a_full_queue_drops(make_plane, guarded_repository, pixels):
    plane = _plane(make_plane, guarded_repository, queue_size=1, min_rows=64)
    release = asyncio.Event()
    real_run = plane.guard._run

    async def slow_reference(loaded, job):
        await release.wait()
        return await real_run(loaded, job)

    plane.guard._run = slow_reference

    async def run():
        for i in range(4):  # the reference is stuck: answers still come back at once
            body, _ = await asyncio.wait_for(plane.dataplane.infer("digits", None, _body(pixels[i:i + 1]), {}), 5)
            assert json.loads(body)["parameters"]["variant"] == "int8"
        release.set()
        await plane.guard.join()

    asyncio.run(run())
    dropped = plane.guard.samples.value(model="digits", variant="int8", outcome="dropped")
    compared = plane.guard.samples.value(model="digits", variant="int8", outcome="compared")
    assert dropped >= 2 and compared >= 1 and dropped + compared == 4


def test_a_failing_reference_is_counted_never_a_client_error(make_plane, guarded_repository, pixels, caplog):
    from wattgate.errors import BackendError

    plane = _plane(make_plane, guarded_repository)

    async def broken(loaded, job):
        raise BackendError("reference runtime crashed")

    plane.guard._run = broken
    with caplog.at_level(logging.WARNING):
        docs = asyncio.run(_serve(plane, pixels, 3))
    assert [d["parameters"]["variant"] for d in docs] == ["int8"] * 3
    assert plane.guard.samples.value(model="digits", variant="int8", outcome="failed") == 3
    assert any("reference digits/fp32 failed" in r.message for r in caplog.records)


def test_an_energy_budget_stops_sampling(make_plane, guarded_repository, pixels):
    plane = _plane(make_plane, guarded_repository, budget_j_per_hour=1e-12, min_rows=64)
    asyncio.run(_serve(plane, pixels, 3))
    assert plane.guard.samples.value(model="digits", variant="int8", outcome="compared") == 1
    assert plane.guard.samples.value(model="digits", variant="int8", outcome="over_budget") == 2


def test_sampling_waits_for_a_clean_window(make_plane, guarded_repository, pixels):
    dirty = _plane(make_plane, guarded_repository, max_intensity_g_per_kwh=1.0)  # the static grid is far above 1 g/kWh
    asyncio.run(_serve(dirty, pixels, 2))
    assert dirty.guard.samples.value(model="digits", variant="int8", outcome="dirty_window") == 2
    assert dirty.guard.samples.value(model="digits", variant="int8", outcome="compared") == 0
    clean = _plane(make_plane, guarded_repository, max_intensity_g_per_kwh=10_000.0)
    asyncio.run(_serve(clean, pixels, 2))
    assert clean.guard.samples.value(model="digits", variant="int8", outcome="compared") == 2


def test_bad_guard_settings_fail_at_load(make_plane, guarded_repository):
    with pytest.raises(BadRequest, match="sample_rate"):
        _plane(make_plane, guarded_repository, sample_rate=1.5)
    with pytest.raises(BadRequest, match="reference variant 'fp16'"):
        _plane(make_plane, guarded_repository, reference_variant="fp16")


def test_a_tenant_past_its_cheaper_level_gets_the_cheapest_fallback_the_guard_has_not_excluded():
    import time
    from types import SimpleNamespace

    from routing.exclusions import VariantExclusions
    from serving.dataplane import DataPlane

    budget = SimpleNamespace(action="cheaper-variant", period_end_s=time.time() + 60, tenant="a", used_ratio=0.85,
                             budget_g=1.0, period="day")
    card = SimpleNamespace(name="m", fallback_variants=["int8", "copy", "gone"])  # cheapest first
    loaded = SimpleNamespace(variants={"fp32": object(), "int8": object(), "copy": object()})  # "gone" is not loaded
    excluded = VariantExclusions()
    assert DataPlane._budget_action(budget, card, loaded, "fp32", excluded) == "int8"
    excluded.exclude("m", "int8", "fp32", "agreement 0.4 < 0.95")
    # The router would swap an excluded int8 back to the dearer fp32: the budget goes to the next fallback.
    assert DataPlane._budget_action(budget, card, loaded, "fp32", excluded) == "copy"
    excluded.exclude("m", "copy", "fp32", "agreement 0.5 < 0.95")
    assert DataPlane._budget_action(budget, card, loaded, "fp32", excluded) == "fp32"  # nothing cheaper is fit
    assert DataPlane._budget_action(budget, card, loaded, None, None) == "int8"  # no guard: no exclusions
