import numpy as np
import pytest

from optimizers.prune import prune_mlp


def _forward(ws, bs, x):
    h = x
    for i, (w, b) in enumerate(zip(ws, bs)):
        h = h @ w + b
        if i < len(ws) - 1:
            h = np.maximum(h, 0)
    return h


def test_pruning_drops_the_lowest_l1_units_and_yields_a_smaller_dense_model():
    rng = np.random.default_rng(0)
    ws = [rng.normal(size=(8, 6)).astype(np.float32), rng.normal(size=(6, 4)).astype(np.float32),
          rng.normal(size=(4, 3)).astype(np.float32)]
    bs = [np.zeros(6, np.float32), np.zeros(4, np.float32), np.zeros(3, np.float32)]
    ws[0][:, [1, 4]] *= 0.01  # the two weakest units of layer 1
    pws, pbs, report = prune_mlp(ws, bs, [4, 4])
    assert report.kept_units[0] == (0, 2, 3, 5)
    assert [w.shape for w in pws] == [(8, 4), (4, 4), (4, 3)]
    assert report.sizes_after == (8, 4, 4, 3) and report.params_after < report.params_before


def test_units_with_no_weight_are_removed_without_changing_the_function():
    rng = np.random.default_rng(1)
    ws = [rng.normal(size=(5, 6)).astype(np.float32), rng.normal(size=(6, 2)).astype(np.float32)]
    bs = [np.zeros(6, np.float32), rng.normal(size=2).astype(np.float32)]
    ws[0][:, [0, 3, 5]] = 0.0  # dead units (zero in, zero bias): pruning them must be exact
    pws, pbs, _ = prune_mlp(ws, bs, 0.5)
    x = rng.normal(size=(20, 5)).astype(np.float32)
    np.testing.assert_allclose(_forward(pws, pbs, x), _forward(ws, bs, x), atol=1e-6)


def test_the_output_layer_is_never_pruned():
    ws = [np.ones((4, 8), np.float32), np.ones((8, 10), np.float32)]
    pws, _, report = prune_mlp(ws, [np.zeros(8), np.zeros(10)], 0.25)
    assert pws[-1].shape == (2, 10) and report.sizes_after[-1] == 10


@pytest.mark.parametrize("keep", [0.0, 1.5, [3, 3], [0]])
def test_bad_keep_values_are_refused(keep):
    with pytest.raises(ValueError):
        prune_mlp([np.ones((4, 8)), np.ones((8, 2))], [np.zeros(8), np.zeros(2)], keep)
