"""Knowledge distillation: a teacher's softened outputs train a smaller student (Hinton et al., 2015)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch
import torch.nn.functional as F

from optimizers.training import TrainConfig, TrainReport, fit


@dataclass(frozen=True)
class DistillConfig:
    temperature: float = 4.0
    # Weight of the soft (teacher) term; 1 - alpha goes to the hard labels.
    alpha: float = 0.9
    batch_size: int = 64
    # Mixup of training inputs (Beta(m, m)); the teacher labels the mixed inputs, which is where KD
    # beats hard labels (Beyer et al., 2022, "a good teacher is patient and consistent"). 0 disables.
    mixup: float = 0.0
    # Random +-1 pixel shifts of the 8x8 digits images; None for non-image inputs.
    shift_image: tuple[int, int] | None = None
    train: TrainConfig = field(default_factory=TrainConfig)


@dataclass(frozen=True)
class DistillReport:
    temperature: float
    alpha: float
    mixup: float
    train: TrainReport

    def to_dict(self) -> dict[str, Any]:
        return {"temperature": self.temperature, "alpha": self.alpha, "mixup": self.mixup, **self.train.to_dict()}


def kd_loss(student_logits: torch.Tensor, teacher_logits: torch.Tensor, target: torch.Tensor, temperature: float, alpha: float) -> torch.Tensor:
    """alpha * T^2 * KL(teacher_T || student_T) + (1 - alpha) * CE(student, target).

    ``target`` is class indices or a probability row per example (mixup). T^2 keeps the soft
    term's gradient scale independent of T.
    """
    soft = F.kl_div(
        F.log_softmax(student_logits.float() / temperature, dim=1),
        F.log_softmax(teacher_logits.float() / temperature, dim=1),
        reduction="batchmean",
        log_target=True,
    ) * (temperature**2)
    if alpha >= 1.0:
        return soft
    hard = F.cross_entropy(student_logits.float(), target)
    return alpha * soft + (1 - alpha) * hard


def shift_images(x: torch.Tensor, side: tuple[int, int], generator: torch.Generator) -> torch.Tensor:
    """Shift each flattened ``side`` image by -1..1 pixels in each axis, filling with zeros."""
    h, w = side
    imgs = x.view(-1, h, w)
    out = torch.zeros_like(imgs)
    dy = torch.randint(-1, 2, (imgs.shape[0],), generator=generator)
    dx = torch.randint(-1, 2, (imgs.shape[0],), generator=generator)
    for sy in (-1, 0, 1):
        for sx in (-1, 0, 1):
            idx = ((dy == sy) & (dx == sx)).nonzero(as_tuple=True)[0]
            if idx.numel():
                out[idx] = torch.roll(imgs[idx], shifts=(sy, sx), dims=(1, 2))
                if sy:
                    out[idx, (0 if sy > 0 else h - 1), :] = 0
                if sx:
                    out[idx, :, (0 if sx > 0 else w - 1)] = 0
    return out.view(x.shape)


def _augment(x: torch.Tensor, y: torch.Tensor, n_classes: int, config: DistillConfig, g: torch.Generator):
    if config.shift_image is not None:
        x = shift_images(x, config.shift_image, g)
    target = F.one_hot(y, n_classes).float()
    if config.mixup > 0:
        lam = torch.distributions.Beta(config.mixup, config.mixup).sample((x.shape[0], 1))
        perm = torch.randperm(x.shape[0], generator=g)
        x = lam * x + (1 - lam) * x[perm]
        target = lam * target + (1 - lam) * target[perm]
    return x, target


def distill_classifier(
    teacher: Callable[[np.ndarray], np.ndarray] | None,
    student: torch.nn.Module,
    train: tuple[np.ndarray, np.ndarray],
    val: tuple[np.ndarray, np.ndarray],
    config: DistillConfig,
    n_classes: int,
    checkpoint_dir: str | Path | None = None,
) -> tuple[torch.nn.Module, DistillReport]:
    """Train ``student`` on the teacher's logits for the (augmented) inputs; early-stops on val accuracy.

    ``teacher`` maps a float32 batch to logits (or log-probabilities). With ``teacher=None`` the same
    loop trains on hard labels only, so a plain student differs from a KD one by the loss alone.
    """
    x_tr = torch.from_numpy(np.asarray(train[0], np.float32))
    y_tr = torch.from_numpy(np.asarray(train[1], np.int64))
    x_val, y_val = np.asarray(val[0], np.float32), np.asarray(val[1])

    def batches(epoch: int, g: torch.Generator):
        order = torch.randperm(len(x_tr), generator=g)
        torch.manual_seed(int(torch.randint(0, 2**31 - 1, (1,), generator=g)))  # Beta sampling
        for i in range(0, len(order), config.batch_size):
            idx = order[i : i + config.batch_size]
            x, target = _augment(x_tr[idx], y_tr[idx], n_classes, config, g)
            if teacher is None:
                yield x, target
            else:
                yield x, target, torch.from_numpy(np.asarray(teacher(x.numpy()), np.float32))

    def loss_fn(model, batch):
        out = model(batch[0])
        if teacher is None:
            return F.cross_entropy(out.float(), batch[1])
        return kd_loss(out, batch[2], batch[1], config.temperature, config.alpha)

    def validate(model):
        device = next(model.parameters()).device
        pred = model(torch.from_numpy(x_val).to(device)).argmax(1).cpu().numpy()
        return float((pred == y_val).mean())

    fp = {"kind": "kd" if teacher else "plain", "T": config.temperature, "alpha": config.alpha, "mixup": config.mixup,
          "shift": config.shift_image, "bs": config.batch_size, "n": len(x_tr)}
    report = fit(student, batches, loss_fn, validate, config.train, checkpoint_dir, fp)
    return student, DistillReport(config.temperature, config.alpha, config.mixup, report)


def onnx_teacher(path: str | Path) -> Callable[[np.ndarray], np.ndarray]:
    """An ONNX classifier with a ``probabilities`` output as a teacher: log-probabilities are logits up to a constant."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), sess_options=so, providers=["CPUExecutionProvider"])
    in_name = sess.get_inputs()[0].name

    def run(x: np.ndarray) -> np.ndarray:
        (probs,) = sess.run(["probabilities"], {in_name: np.asarray(x, np.float32)})
        return np.log(np.clip(probs, 1e-12, None))

    return run


def pad_rows(rows: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """Stack 1-D token rows into [batch, longest] arrays, padding with zeros (pad id, mask 0)."""
    longest = max(len(r["input_ids"]) for r in rows)
    out = {}
    for key in rows[0]:
        arr = np.zeros((len(rows), longest), np.int64)
        for i, r in enumerate(rows):
            arr[i, : len(r[key])] = r[key]
        out[key] = arr
    return out


@dataclass(frozen=True)
class EmbeddingDistillConfig:
    batch_size: int = 32
    # Batches are drawn from pools of this many batches sorted by length, so little compute goes to padding.
    bucket_batches: int = 8
    # Weight of the per-token term (1 - cosine of last hidden states, where the student has ``encode``):
    # thirty targets per sentence instead of one, which matters when sentences are few.
    token_weight: float = 1.0
    train: TrainConfig = field(default_factory=TrainConfig)


def distill_embeddings(
    student: torch.nn.Module,
    train_rows: list[dict[str, np.ndarray]],
    teacher_train: np.ndarray,
    val_rows: list[dict[str, np.ndarray]],
    teacher_val: np.ndarray,
    config: EmbeddingDistillConfig,
    checkpoint_dir: str | Path | None = None,
    teacher_tokens: list[np.ndarray] | None = None,
) -> tuple[torch.nn.Module, DistillReport]:
    """Train ``student`` so its (normalised) sentence embeddings match the teacher's: loss 1 - cosine.

    With ``teacher_tokens`` (the teacher's last hidden state, [length, dim] per training row) the
    student's own last hidden states are pulled towards them too. Early stopping watches the mean
    cosine of sentence embeddings to the teacher on ``val_rows``.
    """
    use_tokens = teacher_tokens is not None and config.token_weight > 0 and hasattr(student, "encode")
    t_train = torch.from_numpy(np.asarray(teacher_train, np.float32))
    lengths = np.array([len(r["input_ids"]) for r in train_rows])

    def batches(epoch: int, g: torch.Generator):
        order = torch.randperm(len(train_rows), generator=g).numpy()
        pool = config.batch_size * config.bucket_batches
        chunks = []
        for i in range(0, len(order), pool):
            part = order[i : i + pool]
            part = part[np.argsort(lengths[part], kind="stable")]
            chunks += [part[j : j + config.batch_size] for j in range(0, len(part), config.batch_size)]
        for k in torch.randperm(len(chunks), generator=g).tolist():
            idx = chunks[k]
            tokens = pad_rows([train_rows[i] for i in idx])
            batch = {key: torch.from_numpy(v) for key, v in tokens.items()}
            if not use_tokens:
                yield batch, t_train[idx]
                continue
            hidden = np.zeros((len(idx), tokens["input_ids"].shape[1], teacher_tokens[idx[0]].shape[1]), np.float32)
            for j, i in enumerate(idx):
                hidden[j, : len(teacher_tokens[i])] = teacher_tokens[i]
            yield batch, t_train[idx], torch.from_numpy(hidden)

    def loss_fn(model, batch):
        if not use_tokens:
            tokens, target = batch
            return 1.0 - F.cosine_similarity(model(**tokens).float(), target, dim=1).mean()
        tokens, target, target_hidden = batch
        hidden, emb = model.encode(**tokens)
        mask = tokens["attention_mask"].float()
        token_cos = (F.cosine_similarity(hidden.float(), target_hidden, dim=2) * mask).sum() / mask.sum()
        return (1.0 - F.cosine_similarity(emb.float(), target, dim=1).mean()) + config.token_weight * (1.0 - token_cos)

    def validate(model):
        device = next(model.parameters()).device
        sims = []
        for i in range(0, len(val_rows), 64):
            tokens = pad_rows(val_rows[i : i + 64])
            emb = model(**{k: torch.from_numpy(v).to(device) for k, v in tokens.items()}).float().cpu().numpy()
            sims.append((emb * teacher_val[i : i + 64]).sum(1))
        return float(np.concatenate(sims).mean())

    fp = {"kind": "embedding", "bs": config.batch_size, "bucket": config.bucket_batches, "n": len(train_rows),
          "tokens": use_tokens, "token_weight": config.token_weight}
    report = fit(student, batches, loss_fn, validate, config.train, checkpoint_dir, fp)
    return student, DistillReport(0.0, 1.0, 0.0, report)
