"""Where the guard's reference runs go: placed like deferrable work (spare capacity only, the cleanest
pool with room), this replica's own pool when none has room; priced on the pool that ran them. And
what a cheaper variant saves, in /metrics and in the response."""

from __future__ import annotations

import asyncio
import json

import pytest

from wattgate.metrics import render

# Three logical pools on this machine; the dirtiest is listed first, so it is the replica's own
# ("local") pool, where the guard used to run every reference.
TOPOLOGY = """
client_regions: [FR]
pools:
""" + "".join(f"""
  - name: {name}
    region: {region}
    hardware: x86
    pue: 1.2
    capacity_rps: 200
    service_ms: 4
    rtt_ms: {{FR: 2}}
    energy:
      "*": {{idle_w: 0.74, dynamic_j: 0.011, source: "modelled"}}
""" for name, region in (("de-x86", "DE"), ("fr-x86", "FR"), ("gb-x86", "GB")))
INTENSITY_G_PER_KWH = {"DE": 600.0, "FR": 20.0, "GB": 200.0}


@pytest.fixture
def plane(make_plane, guarded_repository, tmp_path):
    topology = tmp_path / "topology.yaml"
    topology.write_text(TOPOLOGY)
    return make_plane(
        models={"repository": str(guarded_repository), "defaults": {"max_batch_size": 32, "batch_wait_timeout_s": 0.001}},
        cache={"enabled": False}, routing={"topology_file": str(topology), "policy": "lowest-carbon"},
        intensity={"provider": "static", "static": {"table": INTENSITY_G_PER_KWH}},
        quality_guard={"enabled": True, "sample_rate": 1.0, "min_rows": 200, "action": "alert"},
    )


async def _serve(plane, pixels, n: int, variant: str = "copy") -> list[dict]:
    docs = []
    for i in range(n):
        x = pixels[4 * i:4 * i + 4]
        body = json.dumps({"inputs": [{"name": "pixels", "datatype": "FP32", "shape": list(x.shape),
                                       "data": x.reshape(-1).tolist()}], "parameters": {"variant": variant}}).encode()
        out, _ = await plane.dataplane.infer("digits", None, body, {})
        docs.append(json.loads(out)["parameters"])
        await plane.guard.join()
    return docs


def _guard_pools(plane) -> dict[str, float]:
    """pool -> the guard's energy there (J)."""
    family = plane.metrics.snapshot()["wattgate_quality_guard_energy_joules_total"]
    out: dict[str, float] = {}
    for values, joules in family["series"]:
        pool = dict(zip(family["labels"], values))["pool"]
        out[pool] = out.get(pool, 0.0) + joules
    return out


def _fill_deferrable(plane, pool: str) -> None:
    """Deferrable work (jobs) holding all of ``pool``'s spare capacity."""
    core = plane.router.core
    for _ in range(core.deferrable_bound(pool)):
        core.begin(pool, 0.0, deferrable=True)


def _record_runs(plane) -> list:
    """Every ReferenceRun the guard gets back (the real runner, watched)."""
    runs, real_run = [], plane.guard._run

    async def watched(loaded, job):
        runs.append(await real_run(loaded, job))
        return runs[-1]

    plane.guard._run = watched
    return runs


def _priced_on(plane, energy, pool: str) -> float:
    carbon, _, _ = plane.dataplane.accountant.carbon.carbon(energy, plane.dataplane.accountant.placements(plane.router.pools[pool]))
    return carbon.carbon_g


def test_the_reference_runs_on_the_cleanest_pool_with_room_else_the_local_one(plane, pixels):
    runs = _record_runs(plane)
    asyncio.run(_serve(plane, pixels, 2))
    assert set(_guard_pools(plane)) == {"fr-x86"}, "the cleanest pool, not the replica's own (de-x86)"
    assert [r.pool for r in runs] == ["fr-x86"] * 2
    # Its carbon is priced at FR's intensity, where it ran, not at DE's (the replica's own pool).
    for run in runs:
        assert run.carbon_g == pytest.approx(_priced_on(plane, run.result.energy, "fr-x86"))
        assert run.carbon_g < _priced_on(plane, run.result.energy, "de-x86")
    ledger = plane.ledger_sink.ledger
    ledger.flush()
    assert ledger.quality()[0]["guard_carbon_g"] == pytest.approx(sum(r.carbon_g for r in runs))
    assert {r.pool for r in ledger.records()} == {"fr-x86"}, "the client's requests went to the cleanest pool too"

    _fill_deferrable(plane, "fr-x86")  # spare capacity only: the next cleanest with room
    before = _guard_pools(plane)
    asyncio.run(_serve(plane, pixels, 1))
    after = _guard_pools(plane)
    assert after["gb-x86"] > before.get("gb-x86", 0.0) and after["fr-x86"] == before["fr-x86"]

    _fill_deferrable(plane, "gb-x86")
    _fill_deferrable(plane, "de-x86")  # no pool has room: this replica's own pool runs it
    docs = asyncio.run(_serve(plane, pixels, 1))
    assert docs[0]["variant"] == "copy", "the client's request is served as usual"
    assert _guard_pools(plane)["de-x86"] > 0
    assert plane.guard.samples.value(model="digits", variant="copy", outcome="compared") == 4


def test_the_guard_cost_is_labelled_by_pool_and_method_and_the_saving_is_exported(plane, pixels):
    docs, ratios = [], []
    for _ in range(3):
        ratios.append(plane.guard.energy_ratio("digits", "copy"))  # what the next request is priced with
        docs += asyncio.run(_serve(plane, pixels, 1))
    assert ratios[0] is None and "variant_carbon_saved_g_est" not in docs[0], "nothing compared before the first sample"
    for d, ratio in zip(docs[1:], ratios[1:]):
        assert ratio > 0 and d["variant_carbon_saved_g_est"] == pytest.approx(d["carbon_g"] * (ratio - 1))
    text = render(plane.snapshot())
    method = docs[0]["energy_method"]
    assert f'wattgate_quality_guard_carbon_grams_total{{model="digits",variant="copy",pool="fr-x86",method="{method}"}}' in text
    saved = next(ln for ln in text.splitlines() if ln.startswith('wattgate_variant_carbon_saved_grams{model="digits",variant="copy"}'))
    assert float(saved.split()[-1]) == pytest.approx(sum(d["variant_carbon_saved_g_est"] for d in docs[1:]))
    # The reference itself saves nothing against itself: no series, no parameter.
    ref = asyncio.run(_serve(plane, pixels, 1, variant="fp32"))
    assert "variant_carbon_saved_g_est" not in ref[0]
    assert 'wattgate_variant_carbon_saved_grams{model="digits",variant="fp32"}' not in render(plane.snapshot())
