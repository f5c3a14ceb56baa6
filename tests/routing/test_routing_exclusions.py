"""Variants the quality guard takes out of routing, and the routers that honour it."""

from __future__ import annotations

import logging

import pytest

from routing.exclusions import VariantExclusions


def test_exclusion_substitutes_until_an_operator_enables_and_keeps_an_audit_trail(caplog):
    ex = VariantExclusions(clock=lambda: 100.0)
    assert ex.substitute("m", "int8") == ("int8", None)
    with caplog.at_level(logging.WARNING, logger="wattgate.audit"):
        assert ex.exclude("m", "int8", "fp32", "agreement 0.1 below 0.95")
        assert not ex.exclude("m", "int8", "fp32", "again"), "already excluded"
        served, entry = ex.substitute("m", "int8")
        assert served == "fp32" and entry.reason == "agreement 0.1 below 0.95" and entry.actor == "quality-guard"
        assert ex.substitute("other", "int8") == ("int8", None)
        assert ex.enable("m", "int8", actor="alice", reason="fixed")
        assert not ex.enable("m", "int8", actor="alice")
    assert ex.substitute("m", "int8") == ("int8", None)
    history = ex.show()["history"]
    assert [(h["action"], h["actor"]) for h in history] == [("excluded", "quality-guard"), ("enabled", "alice")]
    assert len([r for r in caplog.records if r.name == "wattgate.audit"]) == 2
    with pytest.raises(ValueError):
        ex.exclude("m", "fp32", "fp32", "self")


def test_chained_and_circular_stand_ins_end():
    ex = VariantExclusions()
    ex.exclude("m", "int4", "int8", "bad")
    ex.exclude("m", "int8", "fp32", "bad")
    assert ex.substitute("m", "int4")[0] == "fp32"
    ex.exclude("m", "fp32", "int4", "bad")  # a loop of stand-ins: stop before coming round again
    assert ex.substitute("m", "int4")[0] in {"int8", "fp32"}


def test_single_pool_router_serves_the_stand_in(digits_repository):
    from energy.coefficients import get_profile
    from models.registry import ModelRegistry
    from routing.live import ClientContext, SinglePoolRouter
    from routing.pools import PoolInfo

    card = ModelRegistry(digits_repository).show("digits")
    ex = VariantExclusions()
    router = SinglePoolRouter(PoolInfo("local", "DE", "x86", 1.2, get_profile("aws-x86")), executor=None, exclusions=ex)
    loaded = frozenset({"fp32", "int8"})
    assert router.route(card, "fp32", loaded, ClientContext()).variant == "fp32"
    card = card.model_copy(update={"default_variant": "fp32"})
    ex.exclude("digits", "fp32", "int8", "test")
    route = router.route(card, None, loaded, ClientContext())
    assert route.variant == "int8" and "excluded by the quality guard" in route.route_reason


def test_green_router_drops_an_excluded_variant_from_its_candidates(topology):
    from energy.coefficients import DEFAULT_PROFILE_FOR_CLASS, get_profile
    from models.card import ModelCard
    from routing.control import RoutingControl
    from routing.intensity.snapshot import IntensitySnapshot
    from routing.intensity.static import StaticProvider
    from routing.live import ClientContext, GreenRouter

    spec = {"name": "x", "datatype": "FP32", "shape": [-1, 1]}
    variant = {"file": "f.onnx", "sha256": "0", "size_bytes": 1, "inputs": [spec], "outputs": [spec]}
    # int8 is the default and the cheapest fallback: without the guard, every request goes there.
    card = ModelCard(name="minilm", version="1", default_variant="int8", inputs=[spec], outputs=[spec],
                     variants={"fp32": variant, "int8": variant}, fallback_variants=["int8"])
    intensity = {"FR": 50.0, "DE": 400.0, "GB": 200.0}
    ex = VariantExclusions()
    profiles = {cls: get_profile(name) for cls, name in DEFAULT_PROFILE_FOR_CLASS.items()}
    router = GreenRouter(topology, RoutingControl("lowest-carbon"), IntensitySnapshot(StaticProvider(intensity), sorted(intensity)),
                         {p.name: None for p in topology.pools}, profiles, 100.0, "FR", exclusions=ex)
    loaded = frozenset({"fp32", "int8"})
    assert router.route(card, None, loaded, ClientContext("FR")).variant == "int8"
    ex.exclude("minilm", "int8", "fp32", "agreement too low")
    for requested in (None, "int8"):
        route = router.route(card, requested, loaded, ClientContext("FR"))
        assert route.variant == "fp32" and "int8 excluded by the quality guard" in route.route_reason
        assert route.request.allowed_variants == ("fp32",)
