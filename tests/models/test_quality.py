"""The pure comparison and rolling verdict behind the live quality guard."""

from __future__ import annotations

import numpy as np
import pytest

from models.card import ModelCard, TensorSpec, VariantCard
from models.quality import AGREEMENT, COSINE, QualityTracker, accuracy, compare, guard_metric, live_floor, parse_labels


def _card(outputs, floor):
    spec = TensorSpec(name="x", datatype="FP32", shape=[-1, 4])
    v = VariantCard(file="fp32.onnx", sha256="0", size_bytes=1, inputs=[spec], outputs=outputs)
    return ModelCard(name="m", version="1", default_variant="fp32", variants={"fp32": v}, inputs=[spec], outputs=outputs,
                     quality_floor=floor)


def test_classifiers_compare_top1_answers_and_embedders_compare_cosine():
    clf = _card([TensorSpec(name="probabilities", datatype="FP32", shape=[-1, 10]),
                 TensorSpec(name="label", datatype="INT64", shape=[-1])], {"accuracy": 0.95})
    emb = _card([TensorSpec(name="embedding", datatype="FP32", shape=[-1, 8])], {"cosine_mean": 0.95})
    assert guard_metric(clf) == (AGREEMENT, "label") and guard_metric(emb) == (COSINE, "embedding")
    # Agreement on a classifier is held to the card's accuracy floor unless it names one of its own.
    assert live_floor(clf, AGREEMENT) == 0.95 and live_floor(clf, AGREEMENT, override=0.8) == 0.8
    assert live_floor(emb, COSINE) == 0.95 and live_floor(_card(emb.outputs, {}), COSINE) is None

    got = compare(AGREEMENT, "label", {"label": np.array([1, 2, 3, 4])}, {"label": np.array([1, 2, 0, 4])})
    assert got.values == (1.0, 1.0, 0.0, 1.0) and got.mean == 0.75
    rng = np.random.default_rng(0)
    ref = rng.normal(size=(5, 8))
    same = compare(COSINE, "embedding", {"embedding": ref}, {"embedding": 3 * ref})
    assert same.values == pytest.approx((1.0,) * 5)
    flipped = compare(COSINE, "embedding", {"embedding": ref}, {"embedding": -ref})
    assert flipped.mean == pytest.approx(-1.0)
    with pytest.raises(ValueError, match="shape"):
        compare(COSINE, "embedding", {"embedding": ref}, {"embedding": ref[:2]})


def test_labels_in_a_wrong_shape_are_ignored_not_errors():
    assert parse_labels([1, 2, 3], 3).tolist() == [1, 2, 3]
    for bad in ([1, 2], "123", [1, "2", 3], [1.5, 2, 3], [True, 2, 3], {"a": 1}, None):
        assert parse_labels(bad, 3) is None
    assert accuracy(np.array([1, 2, 3]), np.array([1, 0, 3])) == (1.0, 0.0, 1.0)


def test_tracker_trips_once_after_enough_rows_and_reset_starts_afresh():
    t = QualityTracker(window=10, min_rows=4)
    v = t.observe("m", "int8", AGREEMENT, [0.0, 0.0], floor=0.9)
    assert not v.below and not v.tripped, "two rows are not enough for a verdict"
    v = t.observe("m", "int8", AGREEMENT, [0.0, 1.0], floor=0.9)
    assert v.below and v.tripped and v.samples == 4 and v.value == 0.25
    assert "below the card's floor 0.9" in v.reason()
    assert not t.observe("m", "int8", AGREEMENT, [0.0], floor=0.9).tripped, "an alert fires once"
    # The window rolls: ten good rows wash the bad ones out.
    assert not t.observe("m", "int8", AGREEMENT, [1.0] * 10, floor=0.9).below
    t.reset("m", "int8")
    assert t.value("m", "int8", AGREEMENT) is None
    assert t.observe("m", "int8", AGREEMENT, [0.0] * 4, floor=0.9).tripped
    assert not t.observe("m", "other", AGREEMENT, [0.0] * 4, floor=None).below, "no floor: no alert"
    with pytest.raises(ValueError):
        QualityTracker(window=4, min_rows=5)
