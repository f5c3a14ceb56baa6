import numpy as np
import pytest

torch = pytest.importorskip("torch")

from optimizers.distill import DistillConfig, distill_classifier, kd_loss, onnx_teacher, shift_images  # noqa: E402
from optimizers.training import TrainConfig  # noqa: E402


def test_kd_loss_is_zero_when_the_student_matches_the_teacher_and_only_soft_labels_count():
    logits = torch.randn(8, 5)
    assert kd_loss(logits, logits, torch.zeros(8, dtype=torch.long), 4.0, 1.0).item() == pytest.approx(0.0, abs=1e-6)


def test_kd_loss_mixes_soft_and_hard_terms_by_alpha():
    s, t, y = torch.randn(8, 5), torch.randn(8, 5), torch.randint(0, 5, (8,))
    soft = kd_loss(s, t, y, 2.0, 1.0)
    hard = torch.nn.functional.cross_entropy(s, y)
    assert kd_loss(s, t, y, 2.0, 0.25).item() == pytest.approx(0.25 * soft.item() + 0.75 * hard.item(), rel=1e-5)


def test_shift_images_moves_pixels_and_fills_with_zeros():
    img = torch.zeros(1, 64)
    img[0, 3 * 8 + 3] = 1.0
    g = torch.Generator().manual_seed(0)
    shifted = [shift_images(img, (8, 8), g) for _ in range(30)]
    positions = {int(s.argmax()) for s in shifted}
    assert len(positions) > 3  # several different shifts happened
    assert all(s.sum().item() == 1.0 for s in shifted)  # the lit pixel stays inside for a 1-pixel move


def _linear_task(n=600, seed=0):
    rng = np.random.default_rng(seed)
    w = rng.normal(size=(6, 3)).astype(np.float32)
    x = rng.normal(size=(n, 6)).astype(np.float32)
    return x, (x @ w).argmax(1), w


def test_a_student_distilled_from_a_teacher_learns_the_teachers_function():
    x, y, w = _linear_task()
    teacher = lambda batch: batch @ w * 3.0  # noqa: E731
    student = torch.nn.Sequential(torch.nn.Linear(6, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    config = DistillConfig(temperature=2.0, alpha=1.0, batch_size=64,
                           train=TrainConfig(epochs=15, lr=2e-2, patience=10, amp="off"))
    student, report = distill_classifier(teacher, student, (x[:500], y[:500]), (x[500:], y[500:]), config, n_classes=3)
    with torch.no_grad():
        agree = (student(torch.from_numpy(x[500:])).argmax(1).numpy() == y[500:]).mean()
    assert agree > 0.9
    assert report.train.best_val == pytest.approx(agree, abs=1e-9)


def test_the_same_loop_trains_a_plain_student_without_a_teacher():
    x, y, _ = _linear_task()
    student = torch.nn.Linear(6, 3)
    config = DistillConfig(train=TrainConfig(epochs=20, lr=3e-2, patience=None, amp="off"))
    _, report = distill_classifier(None, student, (x[:500], y[:500]), (x[500:], y[500:]), config, n_classes=3)
    assert report.train.best_val > 0.9


def test_an_onnx_classifier_serves_as_teacher(tiny_mlp, pixels):
    from tests.optimizers.conftest import run_onnx

    path, _, _ = tiny_mlp
    logits = onnx_teacher(path)(pixels)
    probs, labels = run_onnx(path, {"pixels": pixels})
    assert (logits.argmax(1) == labels).all()
    np.testing.assert_allclose(np.exp(logits), np.clip(probs, 1e-12, None), rtol=1e-5)
