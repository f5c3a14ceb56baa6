"""Live policy control: validation, history cap, serialisation; and the routing settings model."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from pydantic import ValidationError

from routing.control import RoutingControl
from routing.settings import RoutingSettings
from wattgate.errors import BadRequest


class Clock:
    def __init__(self):
        self.now = datetime(2020, 3, 2, 12, 0, tzinfo=timezone.utc)

    def __call__(self):
        self.now += timedelta(seconds=1)
        return self.now


def test_set_switches_the_active_policy_and_records_who_and_when():
    clock = Clock()
    ctl = RoutingControl(clock=clock)
    assert ctl.show()["policy"] == "lowest-carbon" and ctl.version == 0
    out = ctl.set("weighted", {"weights": {"carbon": 1, "latency": 0.5}}, actor="ops@example")
    assert out["policy"] == "weighted" and out["version"] == 1
    assert out["effective_params"]["weights"]["carbon"] == pytest.approx(2 / 3)
    assert ctl.policy.name == "weighted"
    (entry,) = out["history"]
    assert entry["actor"] == "ops@example"
    assert entry["at"] == "2020-03-02T12:00:01+00:00"
    assert entry["previous"] == {"policy": "lowest-carbon", "params": {}}


@pytest.mark.parametrize(
    "policy, params, message",
    [
        ("greenest", None, "unknown routing policy"),
        ("weighted", {"weights": {"carbon": -1}}, ">= 0"),
        ("weighted", {"weights": {"speed": 1}}, "unknown weight"),
        ("lowest-carbon", {"nonsense": 1}, "bad parameters"),
        ("lowest-carbon", "max_utilisation=0.9", "params must be an object"),
        ("lowest-carbon", {"max_utilisation": float("nan")}, "plain JSON"),
        (None, None, "non-empty string"),
    ],
)
def test_bad_changes_raise_bad_request_and_change_nothing(policy, params, message):
    ctl = RoutingControl("latency-first")
    with pytest.raises(BadRequest, match=message) as exc:
        ctl.set(policy, params, actor="ops")
    assert exc.value.status_code == 400
    assert ctl.show()["policy"] == "latency-first" and ctl.show()["history"] == [] and ctl.version == 0


def test_history_keeps_the_last_100_changes():
    ctl = RoutingControl(clock=Clock())
    for i in range(150):
        ctl.set("round-robin" if i % 2 else "lowest-carbon", {"max_utilisation": 0.5 + i / 1000}, actor=f"op{i}")
    history = ctl.show()["history"]
    assert len(history) == 100
    assert history[0]["actor"] == "op50" and history[-1]["actor"] == "op149"
    assert [h["at"] for h in history] == sorted(h["at"] for h in history)
    assert ctl.version == 150


def test_round_trips_through_json():
    ctl = RoutingControl(clock=Clock(), history_len=5)
    ctl.set("carbon-budget", {"threshold": 0.8}, actor="a")
    ctl.set("weighted", {"weights": {"energy": 1}}, actor="b")
    copy = RoutingControl.from_dict(json.loads(json.dumps(ctl.to_dict())))
    assert copy.show() == ctl.show()
    assert copy.policy.params() == ctl.policy.params()
    with pytest.raises(BadRequest):
        RoutingControl.from_dict({"policy": "greenest"})
    with pytest.raises(BadRequest):
        RoutingControl.from_dict({"params": {}})


def test_actor_is_required():
    with pytest.raises(BadRequest, match="actor"):
        RoutingControl().set("round-robin", actor="")


def test_settings_defaults_and_validation():
    s = RoutingSettings()
    assert (s.policy, s.slo_ms, s.history_len) == ("lowest-carbon", 100.0, 100)
    assert s.topology_file.name == "local-topology.yaml"
    assert RoutingSettings(policy="weighted", params={"weights": {"carbon": 1}}).params["weights"] == {"carbon": 1}
    with pytest.raises(ValidationError, match="unknown routing policy"):
        RoutingSettings(policy="greenest")
    with pytest.raises(ValidationError, match="unknown weight"):
        RoutingSettings(policy="weighted", params={"weights": {"speed": 1}})
    with pytest.raises(ValidationError):
        RoutingSettings(slo_ms=0)
    with pytest.raises(ValidationError):
        RoutingSettings(history_len=0)
