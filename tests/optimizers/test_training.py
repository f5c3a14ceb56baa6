import math

import pytest

torch = pytest.importorskip("torch")

from optimizers.training import TrainConfig, fit, lr_factor  # noqa: E402


def _problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(64, 4, generator=g)
    y = x @ torch.tensor([[1.0], [-2.0], [0.5], [3.0]])
    return x, y


def _batches(x, y, crash_at=None):
    def batches(epoch, g):
        if crash_at is not None and epoch == crash_at:
            raise KeyboardInterrupt("simulated crash")
        order = torch.randperm(len(x), generator=g)
        for i in range(0, len(x), 16):
            idx = order[i : i + 16]
            yield x[idx], y[idx]

    return batches


def _loss(model, batch):
    return torch.nn.functional.mse_loss(model(batch[0]), batch[1])


def test_lr_schedule_warms_up_then_decays_to_zero():
    c = TrainConfig(epochs=10, warmup_epochs=2)
    factors = [lr_factor(c, e) for e in range(10)]
    assert factors[0] < factors[1] < factors[2] == 1.0
    assert all(a >= b for a, b in zip(factors[2:], factors[3:]))
    assert factors[-1] < 0.05
    assert lr_factor(TrainConfig(epochs=10, schedule="constant"), 7) == 1.0


def test_unknown_schedule_is_refused():
    with pytest.raises(ValueError, match="schedule"):
        TrainConfig(schedule="linear-ish")


def test_early_stopping_stops_when_validation_stalls():
    x, y = _problem()
    model = torch.nn.Linear(4, 1)
    report = fit(model, _batches(x, y), _loss, lambda m: 0.5, TrainConfig(epochs=50, patience=3, amp="off"))
    assert report.stopped_early and report.epochs_run == 4  # best at epoch 0, then 3 without improvement
    assert report.best_epoch == 0


def test_best_weights_are_kept_not_the_last():
    x, y = _problem()
    model = torch.nn.Linear(4, 1)
    scores = iter([0.1, 0.9, 0.2, 0.3])
    snapshots = []

    def validate(m):
        snapshots.append(m.weight.detach().clone())
        return next(scores)

    fit(model, _batches(x, y), _loss, validate, TrainConfig(epochs=4, patience=None, amp="off"))
    assert torch.equal(model.weight, snapshots[1])


def test_a_restart_resumes_from_the_checkpoint_and_ends_where_an_uninterrupted_run_ends(tmp_path):
    x, y = _problem()
    config = TrainConfig(epochs=6, checkpoint_every=2, patience=None, lr=0.05, amp="off")

    def val(m):
        with torch.no_grad():
            return -float(_loss(m, (x, y)))

    torch.manual_seed(0)
    straight = torch.nn.Linear(4, 1)
    init = {k: v.clone() for k, v in straight.state_dict().items()}
    fit(straight, _batches(x, y), _loss, val, config)

    crashed = torch.nn.Linear(4, 1)
    crashed.load_state_dict(init)
    with pytest.raises(KeyboardInterrupt):
        fit(crashed, _batches(x, y, crash_at=5), _loss, val, config, checkpoint_dir=tmp_path)
    resumed = torch.nn.Linear(4, 1)  # fresh weights: everything must come from the checkpoint
    report = fit(resumed, _batches(x, y), _loss, val, config, checkpoint_dir=tmp_path)
    assert report.resumed_from_epoch == 4
    assert report.epochs_run == 6
    assert torch.allclose(resumed.weight, straight.weight, atol=1e-6)
    assert math.isclose(report.best_val, val(straight), rel_tol=1e-5)


def test_a_changed_config_does_not_resume_a_foreign_checkpoint(tmp_path):
    x, y = _problem()
    fit(torch.nn.Linear(4, 1), _batches(x, y), _loss, lambda m: 0.0, TrainConfig(epochs=2, checkpoint_every=1, amp="off"), tmp_path)
    report = fit(torch.nn.Linear(4, 1), _batches(x, y), _loss, lambda m: 0.0, TrainConfig(epochs=3, checkpoint_every=1, amp="off"), tmp_path)
    assert report.resumed_from_epoch is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="mixed precision needs CUDA")
def test_amp_trains_on_cuda_and_resumes_with_the_grad_scaler_state(tmp_path):
    x, y = _problem()
    config = TrainConfig(epochs=6, checkpoint_every=2, patience=None, lr=0.05, amp="auto")

    def val(m):
        with torch.no_grad():
            return -float(torch.nn.functional.mse_loss(m(x.to(next(m.parameters()).device)).float().cpu(), y))

    model = torch.nn.Linear(4, 1)
    start = val(model)
    with pytest.raises(KeyboardInterrupt):
        fit(model, _batches(x, y, crash_at=3), _loss, val, config, checkpoint_dir=tmp_path)
    resumed = torch.nn.Linear(4, 1)
    report = fit(resumed, _batches(x, y), _loss, val, config, checkpoint_dir=tmp_path)
    assert report.device == "cuda" and report.amp and report.resumed_from_epoch == 2
    assert report.best_val > start
    assert next(resumed.parameters()).device.type == "cpu"  # handed back on the CPU for export
