"""Merging ingress replicas' metrics: counters add up, gauges by what they hold."""

from wattgate.metrics import MetricsRegistry, merge


def _replica(intensity: float, share: float, anomaly: float, requests: float) -> dict:
    reg = MetricsRegistry()
    reg.gauge("intensity", "", ("region",), merge="mean").set(intensity, region="DE")
    reg.gauge("pending", "", ()).set(share)
    reg.gauge("anomaly", "", ("model",), merge="max").set(anomaly, model="m")
    reg.counter("requests", "", ()).inc(requests)
    return reg.snapshot()


def test_shared_values_are_not_multiplied_by_the_number_of_replicas():
    out = merge([_replica(200.0, 1.0, 0.0, 3), _replica(210.0, 2.0, 1.0, 4)])
    value = {name: fam["series"][0][1] for name, fam in out.items()}
    assert value == {"intensity": 205.0, "pending": 3.0, "anomaly": 1.0, "requests": 7.0}


def test_snapshots_without_a_merge_field_still_sum():
    old = _replica(1.0, 1.0, 0.0, 1)
    for fam in old.values():
        fam.pop("merge")
    assert merge([old, old])["intensity"]["series"][0][1] == 2.0
